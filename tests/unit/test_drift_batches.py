"""Counting a batch row by row (bisect) or all at once (EdgeTable): the same counts either way."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from ml_app.core import drift
from ml_app.core.drift import PREDICTION_FEATURE, VersionBins
from ml_app.core.drift_bins import slot_counts, slot_labels
from ml_app.core.drift_reference import BINS, PREDICTIONS_KEY
from ml_app.core.metrics import DRIFT_ROWS
from ml_app.core.model import LoadedModel, Outputs
from tests.support.random_bins import random_edges, random_matrix

COUNTS = "ml_app_drift_rows_total"
# Either path forced, or left to the measured threshold.
PATHS = {"bisect": 10**9, "table": 0, "chosen": drift.BISECT_SEARCHES}


def regressor(edges: list[np.ndarray], prediction_edges: np.ndarray) -> LoadedModel:
    """A regressor under a new name whose features and predictions have these edges."""
    features = [f"f{i}" for i in range(len(edges))]

    def reference(feature_edges: np.ndarray) -> dict:
        bins = len(feature_edges) - 1
        return {"bin_edges": feature_edges.tolist(), "proportions": [1 / bins] * bins}

    metadata = {
        "feature_names": features,
        "baseline": {f: reference(e) for f, e in zip(features, edges, strict=True)},
        PREDICTIONS_KEY: {"kind": BINS, **reference(prediction_edges)},
    }
    estimator = DummyRegressor().fit(np.zeros((2, len(features))), [0.0, 1.0])
    return LoadedModel(f"batches_{uuid.uuid4().hex[:8]}", "1", estimator, metadata)


def counters(model: LoadedModel) -> dict[tuple[str, str], float]:
    """(feature, bin) -> the version's drift counter (one collection: the registry is big)."""
    return {
        (sample.labels["feature"], sample.labels["bin"]): sample.value
        for metric in DRIFT_ROWS.collect()
        for sample in metric.samples
        if sample.name == COUNTS and sample.labels["model"] == model.name
    }


def counted(found: dict, feature: str, edges: np.ndarray) -> list[float | None]:
    return [found.get((feature, slot)) for slot in slot_labels(edges)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rows", [1, 3, 100])
@pytest.mark.parametrize("features", [1, 30])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_counts_as_slot_counts(monkeypatch, path, features, rows, seed):
    """NaN, infinities, values on edges and outside the range, merged bins: the same slots."""
    monkeypatch.setattr(drift, "BISECT_SEARCHES", PATHS[path])
    random = np.random.default_rng(seed)
    edges = random_edges(random, features, most=11)
    prediction_edges = random_edges(random, 1, most=11)[0]
    model = regressor(edges, prediction_edges)
    bins = VersionBins(model, (), 10)
    matrix = random_matrix(random, rows, edges)
    predictions = random_matrix(random, rows, [prediction_edges])[:, 0]
    bins.count(matrix, Outputs(values=predictions.tolist()))
    bins.count(matrix[:1], Outputs(values=predictions[:1].tolist()))  # a lone row on top
    bins.flush()

    found = counters(model)
    for column, feature_edges in enumerate(edges):
        values = np.concatenate((matrix[:, column], matrix[:1, column]))
        want = slot_counts(feature_edges, values).astype(float).tolist()
        assert counted(found, f"f{column}", feature_edges) == want
    values = np.concatenate((predictions, predictions[:1]))
    want = slot_counts(prediction_edges, values).astype(float).tolist()
    assert counted(found, PREDICTION_FEATURE, prediction_edges) == want


def test_a_batch_costs_the_same_numpy_calls_for_1_or_30_features(monkeypatch):
    """No search or count per feature: a wide batch makes as many numpy calls as a narrow one."""
    calls = []
    for name in ("searchsorted", "bincount", "histogram", "digitize"):
        original = getattr(np, name)

        def counting(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(np, name, counting)
    made = {}
    for features in (1, 30):
        random = np.random.default_rng(features)
        edges = random_edges(random, features)
        bins = VersionBins(regressor(edges, edges[0]), (), 10)
        calls.clear()
        bins.count(random_matrix(random, 100, edges), Outputs(values=[0.5] * 100))
        made[features] = list(calls)
    assert made[30] == made[1]
    assert made[1]  # the counting went through numpy at all
