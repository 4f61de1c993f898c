"""KServe V1 routes through Flask's test client, checked against the models."""

from __future__ import annotations

import pytest

from ml_app import create_app
from tests.support import reference
from tests.support.reference import IRIS_FEATURES

ROWS = reference.sample_rows("iris", 5)


def test_root_models_and_readiness(client):
    assert client.get("/").get_json() == {"status": "alive"}
    assert client.get("/v1/models").get_json() == {"models": ["breast_cancer", "diabetes", "iris"]}
    assert client.get("/v1/models/iris").get_json() == {"name": "iris", "ready": True}
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404
    assert "'nope'" in missing.get_json()["error"]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_the_predict_path_asked_with_another_method_is_405_not_an_unknown_model(client, method):
    answer = getattr(client, method)("/v1/models/iris:predict")
    body = answer.get_json()
    assert (answer.status_code, body["code"]) == (405, "method_not_allowed"), body
    assert "POST" in answer.headers["Allow"]


def test_instances_as_lists_and_objects(client, demo_store):
    expected = reference.labels(demo_store, "iris", ROWS)
    lists = client.post("/v1/models/iris:predict", json={"instances": ROWS.tolist()})
    assert lists.get_json() == {"predictions": expected}
    named = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in ROWS.tolist()]
    assert client.post("/v1/models/iris:predict", json={"instances": named}).get_json() == {
        "predictions": expected
    }


def test_inputs_as_rows_or_named_columns(client, demo_store):
    rows = reference.sample_rows("diabetes", 4)
    expected = reference.estimator(demo_store, "diabetes").predict(rows)
    as_rows = client.post("/v1/models/diabetes:predict", json={"inputs": rows.tolist()}).get_json()
    assert as_rows["predictions"] == pytest.approx(expected, rel=1e-12)
    names = client.get("/models/diabetes").get_json()["versions"][0]["metadata"]["feature_names"]
    columns = {name: rows[:, i].tolist() for i, name in reversed(list(enumerate(names)))}
    as_columns = client.post("/v1/models/diabetes:predict", json={"inputs": columns}).get_json()
    assert as_columns == as_rows


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"instances": [[1.0, 2.0]]}, "instances.0: Expected 4 features, got 2."),
        ({"instances": [[1.0, 2.0, 3.0, "x"]]}, "instances.0.3: Must be a number, not str."),
        ({"instances": []}, "instances: Must contain at least one row."),
        ({"inputs": {"sepal_length": [1.0], "sepal_width": [1.0, 2.0]}}, "same number of values"),
        ({"inputs": {"sepal_length": 1.0}}, "inputs.sepal_length: Must be a list of values."),
        (
            {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
            "exactly one of instances, inputs",
        ),
        ({}, "exactly one of instances, inputs"),
        ({"rows": [[1, 2, 3, 4]]}, "rows: Unknown field."),
    ],
)
def test_bad_input_is_400_with_an_error_member(client, body, fragment):
    response = client.post("/v1/models/iris:predict", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]


def test_wrong_content_type_unknown_model_and_batch_limit(demo_store):
    client = create_app({"store": demo_store, "max_batch_rows": 2}).test_client()
    assert (
        client.post("/v1/models/iris:predict", data="x", content_type="text/plain").status_code
        == 415
    )
    assert client.post("/v1/models/nope:predict", json={"instances": [[1] * 4]}).status_code == 404
    too_many = client.post("/v1/models/iris:predict", json={"instances": ROWS.tolist()})
    assert too_many.status_code == 413
