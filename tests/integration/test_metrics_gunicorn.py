"""/metrics under real Gunicorn (3 workers): exact across workers, a killed worker, a restart."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http import answered_by, predict_across_workers, predict_rows
from tests.support.prometheus import Exposition, promtool, scrape, scrape_text
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.server import GunicornServer

PREDICTIONS = 300  # per round
SCRAPES = 5
WORKERS = 3


@pytest.fixture
def server(demo_store: Path, tmp_path: Path) -> Iterator[GunicornServer]:
    with GunicornServer(demo_store, tmp_path / "server.log", workers=WORKERS) as running:
        running.wait_for_workers()
        yield running


def predict_all(server: GunicornServer, rows: list[list[float]]) -> list[tuple[int, str, str]]:
    """POST each row to /predict, 12 at a time: (status, prediction, request id) per row."""
    return [(a.status, a.body["prediction"], a.request_id) for a in predict_rows(server.url, rows)]


def assert_totals(metrics: Exposition, requests_sent: int, by_class: dict[str, int]) -> None:
    predict_route = {"route": "/predict", "method": "POST"}
    assert metrics.total("ml_app_http_requests_total", **predict_route) == requests_sent
    assert (
        metrics.total("ml_app_http_requests_total", **predict_route, status="200") == requests_sent
    )
    assert metrics.total("ml_app_http_request_duration_seconds_count", **predict_route) == (
        requests_sent
    )
    iris = {"model": "iris", "version": "1"}
    assert metrics.total("ml_app_predictions_total", **iris) == requests_sent
    for cls, count in by_class.items():
        assert metrics.total("ml_app_predictions_total", **iris, **{"class": cls}) == count
    assert metrics.total("ml_app_inference_duration_seconds_count", **iris) == requests_sent
    assert metrics.total("ml_app_prediction_rows_sum", **iris) == requests_sent
    assert metrics.total("ml_app_model_ready", **iris) == 1


def test_counts_are_exact_across_workers_and_a_killed_worker(server: GunicornServer):
    fresh = scrape(server.url)
    assert_totals(fresh, 0, {"setosa": 0, "versicolor": 0, "virginica": 0})

    rows = [IRIS_SETOSA, IRIS_VIRGINICA] * (PREDICTIONS // 2)
    # Rounds of PREDICTIONS until every worker took a share (one may miss a round when busy).
    replies = predict_across_workers(server, rows, WORKERS)
    sent = len(replies)
    assert [(a.status, a.body["prediction"]) for a in replies] == [
        (200, "setosa"),
        (200, "virginica"),
    ] * (sent // 2)
    expected = {"setosa": sent // 2, "versicolor": 0, "virginica": sent // 2}

    served = answered_by(server, replies)
    assert sum(served.values()) == sent
    assert set(served) == server.worker_pids()  # every worker took a share
    for _ in range(SCRAPES):
        assert_totals(scrape(server.url), sent, expected)

    victim, victim_share = served.most_common(1)[0]
    assert victim_share > 0
    os.kill(victim, signal.SIGKILL)
    server.wait_for_workers(gone={victim})
    # child_exit dropped the dead worker's gauges and folded its counters into the archive.
    assert not list(server.metrics_dir.glob(f"*_{victim}.db"))
    assert (server.metrics_dir / "counter_archive.db").exists()
    for _ in range(SCRAPES):  # the dead worker's counts are still in the merge: nothing drops
        assert_totals(scrape(server.url), sent, expected)

    more = predict_all(server, [IRIS_SETOSA] * 30)
    assert {status for status, _, _ in more} == {200}
    expected["setosa"] += 30
    final = scrape_text(server.url)
    assert_totals(Exposition.parse(final), sent + 30, expected)

    checked = promtool("check", "metrics", stdin=final)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_a_restart_counts_from_zero_not_from_the_last_run(demo_store: Path, tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with GunicornServer(demo_store, tmp_path / "first.log", workers=2, **env) as first:
        assert {status for status, _, _ in predict_all(first, [IRIS_SETOSA] * 5)} == {200}
        assert scrape(first.url).total("ml_app_predictions_total") == 5
    assert list(metrics_dir.glob("counter_*.db"))  # the first run left its samples behind

    with GunicornServer(demo_store, tmp_path / "second.log", workers=2, **env) as second:
        metrics = scrape(second.url)
        assert metrics.total("ml_app_predictions_total") == 0
        assert metrics.total("ml_app_http_requests_total", route="/predict") == 0
        # The preloading master's samples were wiped at start; the workers publish their own.
        for model in ("iris", "diabetes", "breast_cancer"):
            assert metrics.total("ml_app_model_ready", model=model, version="1") == 1
            assert metrics.total("ml_app_model_load_duration_seconds", model=model) > 0


def test_gunicorn_refuses_to_start_without_a_metrics_directory(demo_store: Path, tmp_path: Path):
    log = tmp_path / "refused.log"
    server = GunicornServer(demo_store, log, workers=1, PROMETHEUS_MULTIPROC_DIR="")
    with pytest.raises(RuntimeError, match="exited early"):
        server.start()
    assert "PROMETHEUS_MULTIPROC_DIR is not set" in log.read_text()
