"""Workers forked after a store change (recycled by max_requests, or after a SIGKILL) serve it.

With `preload_app` the master keeps the state it loaded at start. The store is polled only
once an hour here, so the workers that were running never see the change: whatever the new
workers serve they learnt when they caught up with the store, before their first request.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ml_app.core import lifecycle
from ml_app.core.store import ModelStore
from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer
from tests.support.store import add_version

WORKERS = 3
MAX_REQUESTS = 15  # GUNICORN_MAX_REQUESTS: a worker is replaced after this many requests


@pytest.fixture
def server(store: Path, tmp_path: Path) -> Iterator[GunicornServer]:
    add_version(store, "iris", "2")
    lifecycle.set_alias(ModelStore(store), "iris", "production", "1")
    with GunicornServer(
        store,
        tmp_path / "server.log",
        workers=WORKERS,
        wait_for="/health/ready",
        ML_APP_RELOAD_INTERVAL="3600",
        GUNICORN_MAX_REQUESTS=str(MAX_REQUESTS),
        GUNICORN_MAX_REQUESTS_JITTER="0",
    ) as running:
        running.wait_for_workers()
        yield running


def _served(server: GunicornServer) -> list[tuple[int, str]]:
    """(pid, version) of every prediction the server logged, in order."""
    return [
        (e["pid"], e["version"])
        for e in server.log_entries()
        if e["logger"] == "ml_app.access" and e["route"] == "/predict"
    ]


def _caught_up(server: GunicornServer) -> set[int]:
    """Workers that finished catching up with the store (post_worker_init) and now poll it."""
    return {
        e["pid"]
        for e in server.log_entries()
        if e["logger"] == "ml_app.reload" and e["message"].startswith("watching the model store")
    }


def _predict(server: GunicornServer) -> str:
    response = requests.post(server.url + "/predict", json={"features": IRIS_SETOSA}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "setosa"
    return response.json()["version"]


def test_replaced_workers_serve_the_store_not_the_masters_state(server: GunicornServer):
    first_workers = server.wait_for_workers()
    # A worker is listed as soon as it is forked, but reads the store only at the end of its
    # start; change the store once every first worker has read it, so none can see the change.
    wait_until(lambda: first_workers <= _caught_up(server), 30, "every first worker caught up")
    lifecycle.set_alias(ModelStore(server.env["ML_APP_STORE"]), "iris", "production", "2")
    victim = min(first_workers)
    os.kill(victim, signal.SIGKILL)
    server.wait_for_workers(gone={victim})

    def every_first_worker_replaced() -> bool:
        _predict(server)
        return not server.worker_pids() & first_workers

    wait_until(every_first_worker_replaced, 60, "max_requests to replace the first workers")
    for _ in range(MAX_REQUESTS * 2):
        _predict(server)

    served = _served(server)
    by_first = [version for pid, version in served if pid in first_workers]
    by_later = Counter((pid, version) for pid, version in served if pid not in first_workers)
    # The first workers never polled: they kept version 1 to the end.
    assert by_first and set(by_first) == {"1"}
    # Every worker forked after the change served version 2 from its first request on.
    assert {version for _, version in by_later} == {"2"}
    assert len(by_later) >= WORKERS, by_later
    # Recycled workers answered exactly GUNICORN_MAX_REQUESTS requests each (probes included).
    answered = Counter(e["pid"] for e in server.log_entries() if e["logger"] == "ml_app.access")
    per_first_worker = {pid: answered[pid] for pid in first_workers - {victim}}
    assert list(per_first_worker.values()) == [MAX_REQUESTS] * (WORKERS - 1), per_first_worker
    assert set(server.worker_pids()) & first_workers == set()
