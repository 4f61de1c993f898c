"""Drift under real Gunicorn (2 workers): exact bin counts across workers, PSI from the scrape."""

from __future__ import annotations

import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sklearn import datasets

from ml_app.core.drift import PREDICTION_FEATURE
from ml_app.core.drift_bins import psi, slot_counts, slot_labels
from ml_app.core.store import ModelStore
from tests.support.polling import wait_until
from tests.support.prometheus import Exposition, scrape
from tests.support.reference import IRIS_FEATURES
from tests.support.server import GunicornServer

COUNTS = "ml_app_drift_rows_total"
SHARES = "ml_app_drift_reference_share"
SHIFTED_FEATURE = "petal_length"


def send(url: str, model: str, rows: np.ndarray) -> list[str]:
    """Rows one by one and in batches of 10, from 6 threads; the predicted classes, in order."""
    singles, batches = rows[:30], [rows[i : i + 10] for i in range(30, len(rows), 10)]

    def one(row: np.ndarray) -> list[str]:
        answer = requests.post(f"{url}/models/{model}/predict", json={"features": row.tolist()})
        assert answer.status_code == 200, answer.text
        return [answer.json()["prediction"]]

    def batch(part: np.ndarray) -> list[str]:
        body = {"instances": part.tolist()}
        answer = requests.post(f"{url}/models/{model}/predict/batch", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = [*pool.map(one, singles), *pool.map(batch, batches)]
    return [label for answer in answers for label in answer]


def bin_counts(metrics: Exposition, model: str, feature: str, slots: tuple[str, ...]) -> list:
    return [metrics.total(COUNTS, model=model, feature=feature, bin=slot) for slot in slots]


def scraped_psi(metrics: Exposition, model: str, feature: str) -> float:
    """PSI of a feature from the scraped counters and reference gauges alone."""
    slots = tuple(s["bin"] for s in metrics.series(SHARES, model=model, feature=feature))
    reference = [metrics.total(SHARES, model=model, feature=feature, bin=slot) for slot in slots]
    return psi(reference, bin_counts(metrics, model, feature, slots))


def counted(url: str, model: str, rows: int) -> Exposition | None:
    """The scrape once every worker has flushed `rows` rows of every feature, else None."""
    metrics = scrape(url)
    total = sum(metrics.total(COUNTS, model=model, feature=f) for f in IRIS_FEATURES)
    assert total <= rows * len(IRIS_FEATURES)
    return metrics if total == rows * len(IRIS_FEATURES) else None


@pytest.fixture(scope="module")
def drift_store(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(shutil.copytree(demo_store, tmp_path_factory.mktemp("drift") / "store"))
    shutil.copytree(root / "iris", root / "iris_shifted")
    return root


@pytest.fixture(scope="module")
def server(drift_store: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("drift-server") / "server.log"
    with GunicornServer(drift_store, log, workers=2, ML_APP_DRIFT_FLUSH_SECONDS="0.5") as running:
        running.wait_for_workers()
        yield running


def test_reference_rows_count_exactly_in_their_bins_with_low_psi(server, drift_store):
    rows = datasets.load_iris().data
    predicted = send(server.url, "iris", rows)
    metrics = wait_until(lambda: counted(server.url, "iris", len(rows)), 30, "drift counts")

    baseline = ModelStore(drift_store).read_metadata("iris", "1")["baseline"]
    for column, feature in enumerate(IRIS_FEATURES):
        edges = baseline[feature]["bin_edges"]
        want = slot_counts(np.asarray(edges), rows[:, column]).tolist()
        assert bin_counts(metrics, "iris", feature, slot_labels(edges)) == want
        assert scraped_psi(metrics, "iris", feature) < 0.1
    classes = ("setosa", "versicolor", "virginica")
    by_class = Counter(predicted)
    assert bin_counts(metrics, "iris", PREDICTION_FEATURE, classes) == [
        by_class[c] for c in classes
    ]
    assert scraped_psi(metrics, "iris", PREDICTION_FEATURE) < 0.1


def test_one_feature_shifted_by_two_deviations_drifts_alone(server, drift_store):
    rows = datasets.load_iris().data.copy()
    baseline = ModelStore(drift_store).read_metadata("iris_shifted", "1")["baseline"]
    rows[:, IRIS_FEATURES.index(SHIFTED_FEATURE)] += 2 * baseline[SHIFTED_FEATURE]["std"]
    send(server.url, "iris_shifted", rows)
    metrics = wait_until(lambda: counted(server.url, "iris_shifted", len(rows)), 30, "counts")

    drift = {f: scraped_psi(metrics, "iris_shifted", f) for f in IRIS_FEATURES}
    assert drift[SHIFTED_FEATURE] > 0.25, drift
    assert all(value < 0.1 for f, value in drift.items() if f != SHIFTED_FEATURE), drift


def test_counts_still_in_memory_reach_the_counters_when_workers_exit(demo_store, tmp_path):
    rows = datasets.load_iris().data[:50]
    log = tmp_path / "server.log"
    with GunicornServer(demo_store, log, workers=2, ML_APP_DRIFT_FLUSH_SECONDS="3600") as running:
        running.wait_for_workers()
        send(running.url, "iris", rows)
        assert scrape(running.url).total(COUNTS, model="iris") == 0  # all pending in memory
    # Stopped (SIGTERM): each worker flushed on exit, and the master folded its files.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(running.metrics_dir))
    total = sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == COUNTS and sample.labels["model"] == "iris"
    )
    assert total == len(rows) * (len(IRIS_FEATURES) + 1)  # every feature, and the prediction
