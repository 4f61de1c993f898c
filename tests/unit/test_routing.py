"""Traffic split: proportions within statistical bounds, stickiness, and routing.json parsing."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest

from ml_app.core.errors import StoreError
from ml_app.core.routing import HISTORY_LIMIT, RoutingConfig, TrafficSplit, sticky_point

KEYS = [f"user-{i}" for i in range(20_000)]


def _within_bounds(count: int, total: int, share: float) -> bool:
    """True when `count` is within 5 standard deviations of a binomial(total, share) mean."""
    sigma = math.sqrt(total * share * (1 - share))
    return abs(count - total * share) <= 5 * sigma


@pytest.mark.parametrize(
    ("weights", "shares"),
    [
        ({"3": 90, "4": 10}, {"3": 0.9, "4": 0.1}),
        ({"1": 1, "2": 1, "10": 2}, {"1": 0.25, "2": 0.25, "10": 0.5}),
        ({"7": 99.5, "8": 0.5}, {"7": 0.995, "8": 0.005}),
    ],
)
def test_keyed_assignment_follows_the_weights(weights, shares):
    split = TrafficSplit.from_weights(weights.items())
    assert split.shares() == pytest.approx(shares)
    counts = Counter(split.choose("iris", key) for key in KEYS)
    assert set(counts) == set(shares)
    for version, share in shares.items():
        assert _within_bounds(counts[version], len(KEYS), share), (version, counts)


def test_random_assignment_follows_the_weights():
    split = TrafficSplit.from_weights([("3", 90.0), ("4", 10.0)])
    counts = Counter(split.choose("iris", None) for _ in range(20_000))
    assert _within_bounds(counts["4"], 20_000, 0.1), counts


def test_assignment_is_sticky_per_key_and_independent_per_model():
    split = TrafficSplit.from_weights([("3", 50.0), ("4", 50.0)])
    first = [split.choose("iris", key) for key in KEYS[:500]]
    assert [split.choose("iris", key) for key in KEYS[:500]] == first
    # the same caller is not tied to the same side of every model's experiment
    other = [split.choose("diabetes", key) for key in KEYS[:500]]
    assert other != first


def test_sticky_points_are_the_same_in_another_process():
    """Workers are separate processes: a salted hash() would send a key to different versions."""
    script = (
        "from ml_app.core.routing import sticky_point; print(repr(sticky_point('iris', 'alice')))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(out.stdout) == sticky_point("iris", "alice")
    assert 0.0 <= sticky_point("iris", "alice") < 1.0


def test_growing_a_canary_moves_only_keys_towards_it():
    before = TrafficSplit.from_weights([("3", 90.0), ("4", 10.0)])
    after = TrafficSplit.from_weights([("3", 80.0), ("4", 20.0)])
    moved = Counter((before.choose("iris", key), after.choose("iris", key)) for key in KEYS)
    assert moved[("4", "3")] == 0  # nobody already on the canary is sent back
    assert _within_bounds(moved[("3", "4")], len(KEYS), 0.1)


def test_zero_weights_and_aliases_merge():
    split = TrafficSplit.from_weights([("2", 1.0), ("2", 1.0), ("3", 0.0), ("5", 2.0)])
    assert split.versions == ("2", "5")
    assert split.shares() == {"2": 0.5, "5": 0.5}


def test_routing_config_round_trips_and_bounds_history():
    config = RoutingConfig()
    for version in range(HISTORY_LIMIT + 5):
        config = config.with_alias_target("production", str(version))
    config = config.with_alias_target("production", "3")  # a rollback moves it to the end
    history = config.history["production"]
    assert len(history) == HISTORY_LIMIT
    assert history[-1] == "3" and history.count("3") == 1
    again = RoutingConfig.from_json(config.to_json())
    assert again == config


@pytest.mark.parametrize(
    "raw",
    [
        {"split": {"1": -1}},
        {"split": {"1": 0, "2": 0}},
        {"split": {"1": "ten"}},
        {"split": {"1": True}},
        {"split": {"1": float("inf")}},
        {"split": [1, 2]},
        {"shadow": "2"},
        {"history": {"production": "2"}},
    ],
)
def test_bad_routing_files_are_store_errors(raw):
    with pytest.raises(StoreError, match=r"routing\.json"):
        RoutingConfig.from_json(raw)
