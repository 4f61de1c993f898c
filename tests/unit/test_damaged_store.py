"""A damaged or unreadable store: loaded versions keep serving, one bad folder fails alone."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from ml_app import create_app
from ml_app.core import lifecycle, metrics
from ml_app.core.registry import ModelRegistry
from ml_app.core.store import LoadPolicy, ModelStore
from tests.support.reference import IRIS_SETOSA
from tests.support.store import add_version


def _registry(root) -> ModelRegistry:
    registry = ModelRegistry(ModelStore(root), LoadPolicy(), "iris")
    registry.load_all()
    return registry


def _failures(version: str) -> float:
    return metrics.VERSION_LOAD_FAILURES.labels(model="iris", version=version)._value.get()


def make_unreadable(folder) -> None:
    """Make a version folder fail to list (as chmod 000 does for a non-root server).

    Tests run as root, which reads through chmod 000; an entry that is a symlink loop makes
    listing the folder's stats fail with an OSError other than "not found", the same path.
    """
    os.symlink("loop", folder / "loop")
    os.replace(folder / "loop", folder / "loop")  # no-op: keeps the loop pointing at itself
    assert not (folder / "loop").exists()


def test_damaged_serving_version_keeps_serving_until_a_replacement_verifies(store):
    registry = _registry(store)
    loaded = registry.resolve()
    artifact = store / "iris" / "1" / "model.skops"
    healthy = artifact.read_bytes()
    failures = _failures("1")
    with artifact.open("r+b") as handle:  # truncated in place, as the operator's issue did
        handle.truncate(100)

    assert registry.refresh()
    assert registry.resolve() is loaded  # the verified model serves on, not the damaged file
    entry = registry.entry("iris")
    assert entry.versions["1"].describe()["state"] == "loaded"
    assert "version 1 failed re-verification" in entry.problems[0]
    assert "integrity check" in entry.problems[0]
    assert _failures("1") == failures + 1
    assert metrics.ROUTING_PROBLEMS.labels("iris")._value.get() == 1
    assert registry.not_ready_reasons() == []
    assert registry.refresh() is False  # reported once, not retried on every poll

    artifact.write_bytes(healthy)
    assert registry.refresh()
    assert registry.entry("iris").problems == ()
    assert registry.resolve().version == "1"


def test_unreadable_version_folder_fails_only_that_version(store):
    registry = _registry(store)
    add_version(store, "iris", "2")
    make_unreadable(add_version(store, "iris", "3"))
    lifecycle.set_alias(ModelStore(store), "iris", "production", "2")
    other = f"iris_{uuid.uuid4().hex[:8]}"  # a model new to this process (metrics are global)
    shutil.copytree(store / "iris" / "1", store / other / "1")

    assert registry.refresh()  # one bad folder does not freeze reload for every model
    assert registry.resolve().version == "2"
    assert registry.resolve(other).version == "1"
    state = registry.entry("iris").versions["3"]
    assert state.model is None
    assert "iris/3/loop cannot be read" in state.error


def test_start_up_with_an_unreadable_folder_serves_the_rest(store):
    make_unreadable(add_version(store, "iris", "2"))
    registry = _registry(store)
    assert registry.resolve().version == "1"
    assert registry.resolve("diabetes").version == "1"
    assert "newest version 2 is not served" in registry.entry("iris").problems[0]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/health/ready"),
        ("post", "/predict"),
        ("get", "/models/iris"),
        ("get", "/v2/health/ready"),
        ("get", "/v2/models/iris/ready"),
        ("get", "/v1/models/iris"),
        ("get", "/ping"),
    ],
)
def test_answers_name_store_files_relative_to_the_store(store, method, path):
    add_version(store, "iris", "2", corrupt=True)
    lifecycle.set_alias(ModelStore(store), "iris", "production", "2")
    client = create_app({"store": store, "reload_interval": 0}).test_client()
    response = getattr(client, method)(path, json={"features": IRIS_SETOSA})
    body = response.get_data(as_text=True)
    assert "iris/2/model.skops failed its integrity check" in body, body
    assert str(store) not in body
    assert str(store.parent) not in body


def test_start_up_with_an_unreadable_store_is_not_ready_and_says_why(store, monkeypatch):
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == store:  # what listing a store the server may not read raises
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    client = create_app({"store": store, "reload_interval": 0}).test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["reasons"] == ["the model store cannot be read: Permission denied"]
