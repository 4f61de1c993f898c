"""Native prediction endpoints through Flask's test client, with exact expected values."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from sklearn import datasets

from ml_app.core.loading import load_estimator
from ml_app.core.store import LoadPolicy, ModelStore
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


def _expected_proba(store_root, name: str, rows: list[list[float]]) -> np.ndarray:
    """The estimator's own answer, loaded straight from the store."""
    store = ModelStore(store_root)
    metadata = store.read_metadata(name, "1")
    estimator = load_estimator(store, name, "1", metadata, LoadPolicy())
    return estimator.predict_proba(np.array(rows))


def test_iris_single_row_answers_setosa_with_probabilities(client, demo_store):
    response = client.post("/predict", json={"features": IRIS_SETOSA})
    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == "setosa"
    assert body["model"] == "iris"
    assert body["version"] == "1"
    assert list(body["probabilities"]) == IRIS_CLASSES
    expected = _expected_proba(demo_store, "iris", [IRIS_SETOSA])[0]
    assert [body["probabilities"][c] for c in IRIS_CLASSES] == pytest.approx(expected, abs=1e-12)
    assert body["probabilities"]["setosa"] > 0.9


def test_named_features_are_order_independent(client):
    named = dict(zip(IRIS_NAMES, IRIS_SETOSA, strict=True))
    reversed_order = dict(reversed(list(named.items())))
    positional = client.post("/predict", json={"features": IRIS_SETOSA}).get_json()
    for body in (named, reversed_order):
        answer = client.post("/predict", json={"features": body}).get_json()
        assert answer == positional


def test_batch_keeps_input_order_and_accepts_mixed_row_shapes(client):
    named_virginica = dict(zip(IRIS_NAMES, IRIS_VIRGINICA, strict=True))
    rows = [IRIS_SETOSA, named_virginica, IRIS_SETOSA, IRIS_VIRGINICA]
    response = client.post("/predict/batch", json={"instances": rows})
    assert response.status_code == 200
    body = response.get_json()
    assert body["predictions"] == ["setosa", "virginica", "setosa", "virginica"]
    assert len(body["probabilities"]) == 4
    for probabilities in body["probabilities"]:
        assert sum(probabilities.values()) == pytest.approx(1.0)
    assert body["probabilities"][0] == body["probabilities"][2]


def test_predict_accepts_a_batch_under_instances(client):
    body = client.post("/predict", json={"instances": [IRIS_VIRGINICA]}).get_json()
    assert body["predictions"] == ["virginica"]


def test_regressor_answers_a_number(client, demo_store):
    data = datasets.load_diabetes()
    row = data.data[0].tolist()
    store = ModelStore(demo_store)
    estimator = load_estimator(
        store, "diabetes", "1", store.read_metadata("diabetes", "1"), LoadPolicy()
    )
    expected = float(estimator.predict(np.array([row]))[0])
    body = client.post("/models/diabetes/predict", json={"features": row}).get_json()
    assert body == {
        "prediction": pytest.approx(expected, rel=1e-12),
        "model": "diabetes",
        "version": "1",
    }
    assert "probabilities" not in body


def test_forest_matches_the_dataset_label(client):
    data = datasets.load_breast_cancer()
    rows = data.data[:5].tolist()
    expected = [str(data.target_names[t]) for t in data.target[:5]]
    body = client.post("/models/breast_cancer/predict/batch", json={"instances": rows}).get_json()
    assert body["predictions"] == expected  # these rows are far from the decision boundary
    assert set(body["probabilities"][0]) == {"malignant", "benign"}


def test_versioned_route_and_alias(client, store):
    (store / "iris" / "aliases.json").write_bytes(orjson.dumps({"production": "1", "stable": "1"}))
    from ml_app import create_app

    aliased = create_app({"store": store}).test_client()
    for path in ("/models/iris/versions/1/predict", "/models/iris/versions/stable/predict"):
        body = aliased.post(path, json={"features": IRIS_SETOSA}).get_json()
        assert (body["prediction"], body["version"]) == ("setosa", "1")


def test_unknown_version_is_404(client):
    response = client.post("/models/iris/versions/9/predict", json={"features": IRIS_SETOSA})
    assert response.status_code == 404
    assert response.get_json()["code"] == "model_not_found"
    assert "'9'" in response.get_json()["error"]
