"""Real Gunicorn with three workers on 127.0.0.1, real HTTP, real answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import requests

from tests.support.http import predict_across_workers
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.server import GunicornServer


def test_ready_with_every_demo_model(demo_server):
    response = requests.get(demo_server.url + "/health/ready", timeout=5)
    assert response.status_code == 200
    assert response.json()["models"] == {"breast_cancer": "1", "diabetes": "1", "iris": "1"}


def test_concurrent_predictions_are_answered_by_several_workers(demo_server):
    cases = [(IRIS_SETOSA, "setosa"), (IRIS_VIRGINICA, "virginica")] * 150
    # Rounds until two processes answered: the load really was spread over processes.
    answers = predict_across_workers(demo_server, [row for row, _ in cases], workers=2)
    rounds = len(answers) // len(cases)
    assert len(answers) == rounds * len(cases)
    assert [(a.status, a.body["prediction"]) for a in answers] == [
        (200, want) for _, want in cases
    ] * rounds

    request_ids = {a.request_id for a in answers}
    served = [e for e in demo_server.log_entries() if e.get("request_id") in request_ids]
    assert len(served) == len(answers)  # one log line per request
    assert len(Counter(entry["pid"] for entry in served)) >= 2


def test_batch_and_named_models_over_http(demo_server):
    rows = [IRIS_SETOSA, IRIS_VIRGINICA] * 50
    body = requests.post(
        demo_server.url + "/predict/batch", json={"instances": rows}, timeout=10
    ).json()
    assert body["predictions"] == ["setosa", "virginica"] * 50
    diabetes = requests.post(
        demo_server.url + "/models/diabetes/versions/1/predict",
        json={"features": [0.01] * 10},
        timeout=10,
    ).json()
    assert isinstance(diabetes["prediction"], float)
    assert diabetes["version"] == "1"


def test_errors_over_http_are_json(demo_server):
    oversized = requests.post(
        demo_server.url + "/predict",
        data=b'{"features": [' + b"1.0, " * 3_000_000 + b"1.0]}",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert oversized.status_code == 413
    assert oversized.json()["code"] == "payload_too_large"

    malformed = requests.post(
        demo_server.url + "/predict",
        data=b"{not json",
        headers={"Content-Type": "application/json", "X-Request-ID": "req-42"},
        timeout=5,
    )
    assert malformed.status_code == 400
    assert malformed.json()["request_id"] == "req-42"
    assert malformed.headers["X-Request-ID"] == "req-42"

    assert requests.get(demo_server.url + "/nope", timeout=5).json()["code"] == "not_found"
    still_up = requests.post(
        demo_server.url + "/predict", json={"features": IRIS_SETOSA}, timeout=5
    )
    assert still_up.json()["prediction"] == "setosa"


def test_broken_artifact_leaves_gunicorn_up_and_not_ready(store: Path, tmp_path: Path):
    artifact = store / "iris" / "1" / "model.skops"
    artifact.write_bytes(b"garbage" + artifact.read_bytes())
    with GunicornServer(store, tmp_path / "broken.log", workers=2) as server:
        assert requests.get(server.url + "/health/live", timeout=5).status_code == 200
        ready = requests.get(server.url + "/health/ready", timeout=5)
        assert ready.status_code == 503
        assert "integrity check" in ready.json()["reasons"][0]
        other = requests.post(
            server.url + "/models/diabetes/predict", json={"features": [0.0] * 10}, timeout=5
        )
        assert other.status_code == 200


def test_missing_store_leaves_gunicorn_up_and_not_ready(tmp_path: Path):
    with GunicornServer(tmp_path / "absent", tmp_path / "absent.log", workers=2) as server:
        assert requests.get(server.url + "/health", timeout=5).json()["live"] is True
        ready = requests.get(server.url + "/health/ready", timeout=5)
        assert ready.status_code == 503
        assert "does not exist" in ready.json()["reasons"][0]
