"""A damaged or unreadable store on real Gunicorn (3 workers, recycled by max_requests).

The master preloads the store once; workers recycle every few dozen requests, so workers forked
after the damage (from the master's state at start) serve beside ones that watched it happen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from ml_app.core import lifecycle
from ml_app.core.store import ModelStore
from tests.integration.test_lifecycle import Load
from tests.support.polling import wait_until
from tests.support.prometheus import Exposition
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer
from tests.support.store import add_version
from tests.unit.test_damaged_store import make_unreadable

WORKERS = 3
RECYCLE_AFTER = 40  # GUNICORN_MAX_REQUESTS: many workers are forked during each test
SETTLE = 30.0  # longest wait for every serving worker to agree (far past one interval)


@pytest.fixture
def recycling(store: Path, tmp_path: Path) -> Iterator[GunicornServer]:
    """Gunicorn on the store whose workers recycle often and poll the store twice a second."""
    with _server(store, tmp_path / "server.log") as running:
        yield running


def _server(store: Path, log: Path) -> GunicornServer:
    return GunicornServer(
        store,
        log,
        workers=WORKERS,
        wait_for="/health/ready",
        ML_APP_RELOAD_INTERVAL="0.5",
        GUNICORN_MAX_REQUESTS=str(RECYCLE_AFTER),
        GUNICORN_MAX_REQUESTS_JITTER="0",
    )


def _versions(url: str, path: str, count: int) -> list[tuple[int, str | None]]:
    """(status, version) of `count` predictions posted to `path`, one connection each."""
    answers = []
    for _ in range(count):
        response = requests.post(url + path, json={"features": IRIS_SETOSA}, timeout=10)
        answers.append((response.status_code, response.json().get("version")))
    return answers


def _settle(url: str, path: str, version: str) -> None:
    """Wait until 2 * RECYCLE_AFTER answers in a row (old and new workers) come from `version`."""
    deadline = time.monotonic() + SETTLE
    while _versions(url, path, 2 * RECYCLE_AFTER) != [(200, version)] * (2 * RECYCLE_AFTER):
        assert time.monotonic() < deadline, f"workers never agreed on version {version} at {path}"


def _first_report(server: GunicornServer, problem: str) -> float:
    """When the first process logged `problem` (waits for it)."""
    deadline = time.monotonic() + SETTLE
    while True:
        for entry in server.log_entries():
            if problem in entry.get("problem", ""):
                return datetime.fromisoformat(entry["time"]).timestamp()
        assert time.monotonic() < deadline, f"nobody reported {problem!r}"
        time.sleep(0.1)


def _master_loaded(server: GunicornServer, version: str) -> bool:
    """Whether the Gunicorn master (which polls the store too) has loaded iris `version`."""
    return any(
        entry.get("pid") == server.process.pid
        and entry.get("model") == "iris"
        and entry.get("version") == version
        and "load_seconds" in entry
        and not entry.get("error")
        for entry in server.log_entries()
    )


def _forked_after(server: GunicornServer, moment: float) -> set[int]:
    """Workers whose first request was served after `moment`."""
    first: dict[int, float] = {}
    for entry in server.log_entries():
        if entry["logger"] == "ml_app.access":
            first.setdefault(entry["pid"], datetime.fromisoformat(entry["time"]).timestamp())
    return {pid for pid, served_at in first.items() if served_at > moment}


def test_damaged_serving_version_keeps_serving_on_every_worker(recycling, store):
    artifact = store / "iris" / "1" / "model.skops"
    healthy = artifact.read_bytes()
    with Load(recycling.url) as load:
        load.wait_for_more(30)
        with artifact.open("r+b") as handle:  # truncated in place, as the operator's issue did
            handle.truncate(100)
        reported_at = _first_report(recycling, "version 1 failed re-verification")
        load.wait_for_more(10 * RECYCLE_AFTER)
    failures = [(a.status, a.error) for a in load.answers if a.status != 200 or a.error]
    assert failures == [], failures[:5]
    assert {a.version for a in load.answers} == {"1"}
    assert _forked_after(recycling, reported_at), "no worker was forked after the damage"

    for _ in range(2 * RECYCLE_AFTER):  # across recycled workers: each one reports it
        ready = requests.get(recycling.url + "/health/ready", timeout=5)
        assert (ready.status_code, ready.json()["ready"]) == (200, True)
        detail = requests.get(recycling.url + "/models/iris", timeout=5).json()
        assert detail["default_version"] == "1"
        assert detail["versions"][0]["state"] == "loaded"
        assert "iris/1/model.skops failed its integrity check" in detail["problems"][0]
        assert str(store) not in str(detail)
    scrape = Exposition.parse(requests.get(recycling.url + "/metrics", timeout=5).text)
    assert scrape.total("ml_app_model_routing_problems", model="iris") == 1

    artifact.write_bytes(healthy)  # restored: the problem clears everywhere
    deadline = time.monotonic() + SETTLE
    while any(
        requests.get(recycling.url + "/models/iris", timeout=5).json()["problems"]
        for _ in range(2 * RECYCLE_AFTER)
    ):
        assert time.monotonic() < deadline, "the restored version is still reported"
    _settle(recycling.url, "/predict", "1")


def test_version_loaded_after_start_then_damaged_serves_on_workers_forked_later(recycling, store):
    add_version(store, "iris", "2")  # the master loaded the store before this version existed
    lifecycle.set_alias(ModelStore(store), "iris", "production", "2")
    _settle(recycling.url, "/predict", "2")
    # Workers forked later inherit the master's copy: the damage must come after the master's
    # own poll loaded version 2 (before it, nothing verified is left to inherit; README).
    wait_until(lambda: _master_loaded(recycling, "2"), SETTLE, "the master to load iris version 2")
    with (store / "iris" / "2" / "model.skops").open("r+b") as handle:
        handle.truncate(100)
    reported_at = _first_report(recycling, "version 2 failed re-verification")
    with Load(recycling.url) as load:
        load.wait_for_more(10 * RECYCLE_AFTER)
    assert {(a.status, a.version, a.error) for a in load.answers} == {(200, "2", None)}
    assert _forked_after(recycling, reported_at), "no worker was forked after the damage"


def test_unreadable_folder_fails_alone_and_every_worker_converges(recycling, store, tmp_path):
    models = ModelStore(store)
    add_version(store, "iris", "2")  # after the master loaded: new workers must catch up
    lifecycle.set_alias(models, "iris", "production", "2")
    _settle(recycling.url, "/predict", "2")

    make_unreadable(add_version(store, "iris", "3"))
    (add_version(store, "iris", "4") / "metadata.json").write_bytes(b"{not json")
    lifecycle.set_alias(models, "iris", "staging", "1")  # a change after the bad folders
    _settle(recycling.url, "/models/iris/versions/staging/predict", "1")
    with Load(recycling.url) as load:
        load.wait_for_more(10 * RECYCLE_AFTER)
    assert {(a.status, a.version, a.error) for a in load.answers} == {(200, "2", None)}

    for _ in range(WORKERS * 2):
        ready = requests.get(recycling.url + "/health/ready", timeout=5)
        assert (ready.status_code, ready.json()["ready"]) == (200, True)
        detail = requests.get(recycling.url + "/models/iris", timeout=5).json()
        states = {v["version"]: (v["state"], v.get("error", "")) for v in detail["versions"]}
        assert states["3"][0] == states["4"][0] == "failed"
        assert "iris/3/loop cannot be read" in states["3"][1]
        assert "iris/4/metadata.json is not valid JSON" in states["4"][1]
        assert str(store) not in str(detail)

    recycling.stop()  # a restart with the bad folders serves the rest and reports them
    with _server(store, tmp_path / "restart.log") as restarted:
        assert _versions(restarted.url, "/predict", 10) == [(200, "2")] * 10
        detail = requests.get(restarted.url + "/models/iris", timeout=5).json()
        assert [v["state"] for v in detail["versions"]] == ["loaded", "loaded", "failed", "failed"]
