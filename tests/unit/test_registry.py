"""Resolution (version, alias, newest, split, shadow), reload, and fallbacks for broken versions."""

from __future__ import annotations

import logging
import shutil
import time

import pytest

from ml_app.core import lifecycle
from ml_app.core.errors import ModelNotFound, ModelNotReady
from ml_app.core.registry import ModelRegistry
from ml_app.core.store import LoadPolicy, ModelStore
from tests.support.store import add_version


def _registry(root) -> ModelRegistry:
    registry = ModelRegistry(ModelStore(root), LoadPolicy(), "iris")
    registry.load_all()
    return registry


def _served(registry, *args, **kwargs) -> str:
    return registry.resolve(*args, **kwargs).version


def test_resolution_by_version_alias_and_newest(store):
    add_version(store, "iris", "2")
    add_version(store, "iris", "10")
    registry = _registry(store)
    assert _served(registry) == "10"  # newest, numerically
    assert _served(registry, "iris") == "10"
    assert _served(registry, "iris", "2") == "2"

    lifecycle.set_alias(ModelStore(store), "iris", "production", "2")
    lifecycle.set_alias(ModelStore(store), "iris", "staging", "1")
    assert registry.refresh()
    assert _served(registry) == "2"
    assert _served(registry, "iris", "production") == "2"
    assert _served(registry, "iris", "staging") == "1"
    assert _served(registry, "iris", "10") == "10"
    with pytest.raises(ModelNotFound, match="no version or alias 'canary'"):
        registry.resolve("iris", "canary")
    with pytest.raises(ModelNotFound, match="'nope' is not in the store"):
        registry.resolve("nope")


def test_refresh_swaps_a_new_snapshot_and_reuses_loaded_versions(store):
    registry = _registry(store)
    before = registry.snapshot()
    assert registry.refresh() is False  # nothing changed: nothing rebuilt
    assert registry.snapshot() is before

    add_version(store, "iris", "2")
    assert registry.refresh() is True
    after = registry.snapshot()
    assert after is not before
    assert after.models["iris"].default == "2"
    # the old snapshot is untouched: a request holding it sees the old state whole
    assert before.models["iris"].default == "1"
    assert list(before.models["iris"].versions) == ["1"]
    # version 1 was not loaded again
    assert after.models["iris"].versions["1"].model is before.models["iris"].versions["1"].model


def test_alias_moved_to_a_broken_version_keeps_serving_the_previous_one(store):
    add_version(store, "iris", "2")
    add_version(store, "iris", "3", sklearn="0.20.0")
    models = ModelStore(store)
    lifecycle.set_alias(models, "iris", "production", "2")
    registry = _registry(store)
    lifecycle.set_alias(models, "iris", "production", "3")
    registry.refresh()

    assert _served(registry) == "2"
    assert _served(registry, "iris", "production") == "2"
    with pytest.raises(ModelNotReady, match=r"scikit-learn 0\.20\.0"):
        registry.resolve("iris", "3")
    entry = registry.entry("iris")
    assert entry.aliases == {"production": "3"}  # configured
    assert entry.serving == {"production": "2"}  # in force
    assert "alias production -> 3 is not in force" in entry.problems[0]
    assert registry.not_ready_reasons() == []
    # a worker started now (fresh load, no memory of the past) arrives at the same answer
    assert _served(_registry(store)) == "2"


def test_broken_newest_version_does_not_replace_the_working_one(store):
    registry = _registry(store)
    add_version(store, "iris", "2", corrupt=True)
    registry.refresh()
    assert _served(registry) == "1"
    entry = registry.entry("iris")
    assert "newest version 2 is not served" in entry.problems[0]
    assert "integrity check" in entry.versions["2"].error


def test_split_routes_unversioned_traffic_only(store):
    add_version(store, "iris", "2")
    models = ModelStore(store)
    lifecycle.set_alias(models, "iris", "production", "1")
    lifecycle.set_split(models, "iris", {"production": 1, "2": 1})
    registry = _registry(store)
    entry = registry.entry("iris")
    assert entry.split.shares() == {"1": 0.5, "2": 0.5}
    keyed = {key: _served(registry, routing_key=key) for key in map(str, range(200))}
    assert set(keyed.values()) == {"1", "2"}
    assert all(_served(registry, routing_key=key) == v for key, v in keyed.items())
    assert {_served(registry, "iris", "2", routing_key=key) for key in keyed} == {"2"}
    assert {_served(registry, "iris", "production", routing_key=key) for key in keyed} == {"1"}

    lifecycle.set_split(models, "iris", {})
    registry.refresh()
    assert {_served(registry, routing_key=key) for key in keyed} == {"1"}


def test_split_with_a_broken_member_is_not_in_force(store):
    add_version(store, "iris", "2", corrupt=True)
    lifecycle.set_split(ModelStore(store), "iris", {"1": 90, "2": 10})
    registry = _registry(store)
    entry = registry.entry("iris")
    assert entry.split is None
    assert "traffic split is not in force" in entry.problems[-1]
    assert {_served(registry, routing_key=str(k)) for k in range(100)} == {"1"}


def test_shadow_gets_unversioned_traffic_except_its_own(store):
    add_version(store, "iris", "2")
    add_version(store, "iris", "3", corrupt=True)
    models = ModelStore(store)
    lifecycle.set_alias(models, "iris", "production", "1")
    lifecycle.set_shadow(models, "iris", ["2", "3"])
    registry = _registry(store)
    route = registry.route()
    assert route.model.version == "1"
    assert [m.version for m in route.shadows] == ["2"]  # 3 failed to load: skipped, reported
    assert "shadow 3 is off" in registry.entry("iris").problems[0]
    assert registry.route("iris", "1").shadows == ()  # named versions are not mirrored
    lifecycle.set_alias(models, "iris", "production", "2")
    registry.refresh()
    assert registry.route().shadows == ()  # a version does not shadow itself


def test_unreadable_control_file_on_reload_keeps_the_last_good_state(store):
    lifecycle.set_alias(ModelStore(store), "iris", "production", "1")
    registry = _registry(store)
    (store / "iris" / "aliases.json").write_text("{half-written")
    assert registry.refresh()
    assert _served(registry) == "1"
    entry = registry.entry("iris")
    assert "still serving the last good state" in entry.problems[-1]
    assert registry.not_ready_reasons() == []
    # at start there is no good state to keep: the model is reported not ready
    assert "not valid JSON" in _registry(store).not_ready_reasons()[0]


def test_store_gone_on_reload_keeps_serving(store, tmp_path):
    registry = _registry(store)
    shutil.move(store, tmp_path / "elsewhere")
    assert registry.refresh()
    assert _served(registry) == "1"
    assert registry.not_ready_reasons() == []
    assert registry.refresh() is False  # reported once, not on every poll
    shutil.move(tmp_path / "elsewhere", store)
    add_version(store, "iris", "2")
    assert registry.refresh()
    assert _served(registry) == "2"


def test_model_folder_without_versions_is_not_a_model_yet(store):
    (store / "fresh").mkdir()
    (store / "fresh" / ".lock").touch()
    registry = _registry(store)
    assert "fresh" not in registry.snapshot().models
    assert registry.not_ready_reasons() == []


def test_a_change_is_logged_with_when_the_store_was_last_looked_at(store, caplog):
    registry = _registry(store)
    unchanged_from = time.time()
    assert registry.refresh() is False  # a look that found nothing new
    unchanged_until = time.time()
    add_version(store, "iris", "2")
    with caplog.at_level(logging.INFO, logger="ml_app.registry"):
        assert registry.refresh() is True
    (changed,) = [r for r in caplog.records if r.getMessage() == "model iris routing changed"]
    # the change landed after that look: an operator sees how late it was noticed at most
    assert unchanged_from <= changed.fields["previous_check_at"] <= unchanged_until
    assert changed.fields["default_version"] == "2"
