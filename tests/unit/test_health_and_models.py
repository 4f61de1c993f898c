"""Health, readiness and model metadata endpoints, including broken stores."""

from __future__ import annotations

import shutil

from ml_app import create_app
from tests.support.reference import IRIS_SETOSA


def test_live_and_health(client):
    for path in ("/health", "/health/live"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok", "live": True}


def test_ready_when_every_model_loaded(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "ready": True,
        "models": {"breast_cancer": "1", "diabetes": "1", "iris": "1"},
    }


def test_models_lists_the_store(client):
    body = client.get("/models").get_json()
    assert body["default_model"] == "iris"
    assert [m["name"] for m in body["models"]] == ["breast_cancer", "diabetes", "iris"]
    iris = body["models"][2]
    assert iris == {
        "name": "iris",
        "default_version": "1",
        "versions": ["1"],
        "aliases": {},
        "split": None,
        "shadow": [],
        "ready": True,
    }


def test_model_detail_shows_every_version_with_metadata(client):
    body = client.get("/models/breast_cancer").get_json()
    assert body["name"] == "breast_cancer"
    (version,) = body["versions"]
    assert version["state"] == "loaded"
    metadata = version["metadata"]
    assert metadata["task"] == "classification"
    assert len(metadata["feature_names"]) == 30
    assert metadata["target_names"] == ["malignant", "benign"]
    assert len(metadata["sha256"]) == 64
    assert metadata["training"]["metrics"]["accuracy"] > 0.9
    assert set(metadata["baseline"]) == set(metadata["feature_names"])
    assert "reference_sample" not in metadata


def test_model_info_is_the_default_model(client):
    body = client.get("/model/info").get_json()
    assert (body["name"], body["version"]) == ("iris", "1")
    assert body["metadata"]["feature_names"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert client.get("/models/nope").status_code == 404


def test_corrupt_artifact_leaves_server_up_and_not_ready(store):
    artifact = store / "iris" / "1" / "model.skops"
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    client = create_app({"store": store}).test_client()

    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    (reason,) = ready.get_json()["reasons"]
    assert "iris version 1" in reason and "integrity check" in reason

    predict = client.post("/predict", json={"features": IRIS_SETOSA})
    assert predict.status_code == 503
    assert predict.get_json()["code"] == "model_not_ready"
    detail = client.get("/models/iris").get_json()
    assert detail["versions"][0]["state"] == "failed"
    assert "sha256" in detail["versions"][0]["error"]
    # the other models keep serving
    other = client.post("/models/diabetes/predict", json={"features": [0.0] * 10})
    assert other.status_code == 200


def test_missing_store_leaves_server_up_and_not_ready(tmp_path):
    client = create_app({"store": tmp_path / "nowhere"}).test_client()
    assert client.get("/health").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "does not exist" in ready.get_json()["reasons"][0]
    assert client.post("/predict", json={"features": IRIS_SETOSA}).status_code == 404


def test_empty_store_is_not_ready(tmp_path):
    client = create_app({"store": tmp_path}).test_client()
    reasons = client.get("/health/ready").get_json()["reasons"]
    assert reasons == ["no models in the model store"]  # the server's paths stay private


def test_missing_default_model_is_not_ready(store):
    shutil.rmtree(store / "iris")
    ready = create_app({"store": store}).test_client().get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["reasons"] == ["default model 'iris' is not in the store"]
