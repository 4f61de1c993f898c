"""ONNX Runtime behind real Gunicorn: sessions made after fork, answers equal scikit-learn's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn import datasets

from ml_app.core.model import PARITY_TOLERANCE
from tests.support import reference
from tests.support.http import predict_across_workers
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer, ready_gunicorn


@pytest.fixture(scope="module")
def onnx_server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory):
    with ready_gunicorn(
        demo_store, tmp_path_factory.mktemp("onnx"), ML_APP_BACKEND="onnx"
    ) as running:
        yield running


def test_every_worker_answers_the_forest_like_scikit_learn(onnx_server, demo_store):
    described = requests.get(onnx_server.url + "/models/breast_cancer", timeout=10).json()
    assert described["versions"][0]["metadata"]["backend"]["name"] == "onnx"
    rows = datasets.load_breast_cancer().data[:60]
    fitted = reference.estimator(demo_store, "breast_cancer")
    expected_probabilities = fitted.predict_proba(rows)
    expected_labels = reference.labels(demo_store, "breast_cancer", rows)
    assert set(expected_labels) == {"malignant", "benign"}  # both classes are compared

    asked = [rows[i % len(rows)].tolist() for i in range(240)]
    # Rounds until two processes answered: several forked workers, each with its own session.
    path = "/models/breast_cancer/predict"
    answers = predict_across_workers(onnx_server, asked, workers=2, path=path)
    for index, answer in enumerate(answers):
        assert answer.status == 200, answer.body
        assert answer.body["prediction"] == expected_labels[index % len(rows)], index
        assert (answer.body["model"], answer.body["version"]) == ("breast_cancer", "1")
        got = [answer.body["probabilities"][label] for label in ("malignant", "benign")]
        want = expected_probabilities[index % len(rows)]
        assert np.abs(np.array(got) - want).max() <= PARITY_TOLERANCE
    ids = {answer.request_id for answer in answers}
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
        answer = requests.post(server.url + "/predict", json={"features": IRIS_SETOSA}, timeout=10)
        assert answer.status_code == 200
        assert (answer.json()["prediction"], answer.json()["version"]) == ("setosa", "1")
    assert server.process.returncode == 0
    assert log.read_text().count("Worker exiting") == 2
    assert "Shutting down: Master" in log.read_text()
