"""Metrics files under real Gunicorn: recycled workers fold away, a full disk is survived."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.test_metrics_gunicorn import assert_totals, predict_all
from tests.support.polling import wait_until
from tests.support.prometheus import scrape
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.server import GunicornServer
from tests.support.tmpfs import fill, small_tmpfs

WORKERS = 3
PREDICTIONS = 600
SCRAPED_CHUNKS = 12  # the predictions go in chunks, one more scrape finished after each
CHUNK = PREDICTIONS // SCRAPED_CHUNKS
PREDICT_ROUTE = {"route": "/predict", "method": "POST"}


class Scraper(threading.Thread):
    """Scrapes /metrics back to back and keeps every /predict request total it saw."""

    def __init__(self, server: GunicornServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.totals: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.totals.append(
                scrape(self.server.url).total("ml_app_http_requests_total", **PREDICT_ROUTE)
            )

    def stop(self) -> list[float]:
        self.stopped.set()
        self.join(timeout=30)
        return self.totals


@pytest.fixture
def recycling_server(demo_store: Path, tmp_path: Path) -> Iterator[GunicornServer]:
    """Three workers, each replaced after 10-13 requests."""
    server = GunicornServer(
        demo_store,
        tmp_path / "server.log",
        workers=WORKERS,
        GUNICORN_MAX_REQUESTS="10",
        GUNICORN_MAX_REQUESTS_JITTER="3",
    )
    with server as running:
        running.wait_for_workers()
        yield running


def test_recycled_workers_leave_no_files_and_totals_stay_exact(recycling_server: GunicornServer):
    server = recycling_server
    scraper = Scraper(server)
    scraper.start()
    answers = []
    # In chunks, each followed by one more finished scrape at least: how many scrapes see the
    # churn must not depend on how fast a loaded machine serves the predictions.
    for _ in range(SCRAPED_CHUNKS):
        scraped = len(scraper.totals)
        answers += predict_all(server, [IRIS_SETOSA, IRIS_VIRGINICA] * (CHUNK // 2))
        wait_until(lambda n=scraped: len(scraper.totals) > n, 60, "one more scrape")
    seen = scraper.stop()
    assert [(status, label) for status, label, _ in answers] == [
        (200, "setosa"),
        (200, "virginica"),
    ] * (PREDICTIONS // 2)

    request_ids = {rid for _, _, rid in answers}
    served_by = Counter(
        e["pid"] for e in server.log_entries() if e.get("request_id") in request_ids
    )
    assert len(served_by) > 30  # dozens of workers came and went
    # Every scrape during the churn saw totals that only grow: no fold half seen, none twice.
    assert len(seen) > 10
    assert seen == sorted(seen)
    assert seen[-1] <= PREDICTIONS

    half = PREDICTIONS // 2
    assert_totals(
        scrape(server.url), PREDICTIONS, {"setosa": half, "versicolor": 0, "virginica": half}
    )
    # At most one file per live worker and type, plus the archive (a worker may be exiting).
    files = Counter(path.name.split("_")[0] for path in server.metrics_dir.glob("*.db"))
    assert (server.metrics_dir / "counter_archive.db").exists()
    assert (server.metrics_dir / "histogram_archive.db").exists()
    assert files["counter"] <= WORKERS + 2
    assert files["histogram"] <= WORKERS + 2
    assert files["gauge"] <= WORKERS + 1
    assert set(files) == {"counter", "histogram", "gauge"}


@pytest.fixture
def full_metrics_disk(demo_store: Path, tmp_path: Path) -> Iterator[GunicornServer]:
    """Two workers whose metrics directory is a 512 KiB tmpfs, full before the server starts."""
    server = GunicornServer(demo_store, tmp_path / "server.log", workers=2)
    with small_tmpfs(server.metrics_dir, size_kib=512) as metrics_dir:
        fill(metrics_dir)
        with server as running:
            yield running


def test_a_full_metrics_disk_kills_no_worker_and_fails_no_prediction(
    full_metrics_disk: GunicornServer,
):
    server = full_metrics_disk
    workers = server.wait_for_workers()
    answers = predict_all(server, [IRIS_SETOSA, IRIS_VIRGINICA] * 50)
    assert [(status, label) for status, label, _ in answers] == [
        (200, "setosa"),
        (200, "virginica"),
    ] * 50
    assert server.worker_pids() == workers  # no worker died and was replaced
    scraped = requests.get(server.url + "/metrics", timeout=10)
    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"].startswith("text/plain")
    log = server.log_path.read_text()
    assert "cannot grow (No space left on device)" in log
    assert "Worker (pid" not in log and "SIGBUS" not in log
