"""ONNX Runtime behind real Gunicorn: sessions made after fork, answers equal scikit-learn's."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn import datasets

from ml_app.core.loading import load_estimator
from ml_app.core.model import PARITY_TOLERANCE
from ml_app.core.store import LoadPolicy, ModelStore
from tests.support.server import GunicornServer


@pytest.fixture(scope="module")
def onnx_server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("gunicorn-onnx") / "server.log"
    with GunicornServer(
        demo_store, log, workers=3, wait_for="/health/ready", ML_APP_BACKEND="onnx"
    ) as running:
        yield running


def test_every_worker_answers_the_forest_like_scikit_learn(onnx_server, demo_store):
    described = requests.get(onnx_server.url + "/models/breast_cancer", timeout=10).json()
    assert described["versions"][0]["metadata"]["backend"]["name"] == "onnx"
    rows = datasets.load_breast_cancer().data[:60]
    store = ModelStore(demo_store)
    metadata = store.read_metadata("breast_cancer", "1")
    estimator = load_estimator(store, "breast_cancer", "1", metadata, LoadPolicy())
    expected = estimator.predict_proba(rows)

    def ask(index: int) -> tuple[int, dict, str]:
        with requests.Session() as session:
            response = session.post(
                onnx_server.url + "/models/breast_cancer/predict",
                json={"features": rows[index % len(rows)].tolist()},
                timeout=10,
            )
        return index, response.json(), response.headers["X-Request-ID"]

    with ThreadPoolExecutor(max_workers=9) as pool:
        answers = list(pool.map(ask, range(240)))
    for index, body, _ in answers:
        got = [body["probabilities"][label] for label in ("malignant", "benign")]
        assert np.abs(np.array(got) - expected[index % len(rows)]).max() <= PARITY_TOLERANCE
    ids = {request_id for _, _, request_id in answers}
    pids = Counter(e["pid"] for e in onnx_server.log_entries() if e.get("request_id") in ids)
    assert len(pids) >= 2, pids  # several forked workers, each with its own session


def test_workers_stop_on_their_own(demo_store, tmp_path):
    # A worker that inherited ONNX Runtime from the master must still exit when told to; if it
    # hangs, the master kills it at the graceful timeout and logs nothing, so count exits.
    log = tmp_path / "server.log"
    server = GunicornServer(
        demo_store, log, workers=2, wait_for="/health/ready", GUNICORN_GRACEFUL_TIMEOUT="120"
    )
    with server:
        requests.post(server.url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=10)
    assert server.process.returncode == 0
    assert log.read_text().count("Worker exiting") == 2
    assert "Shutting down: Master" in log.read_text()
