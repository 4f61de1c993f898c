"""Every kind of bad input gets the one JSON error shape with the right status and field."""

from __future__ import annotations

import pytest

from ml_app import create_app
from tests.support.reference import IRIS_SETOSA

CASES = [
    # (body, status, code, field named in details, message fragment)
    ({"features": [5.1, 3.5, 1.4]}, 422, "invalid_input", "features", "Expected 4 features, got 3"),
    ({"features": [5.1, "3.5", 1.4, 0.2]}, 422, "invalid_input", "features.1", "not str"),
    ({"features": [5.1, None, 1.4, 0.2]}, 422, "invalid_input", "features.1", "not null"),
    ({"features": [5.1, True, 1.4, 0.2]}, 422, "invalid_input", "features.1", "not bool"),
    ({"features": [5.1, [3.5], 1.4, 0.2]}, 422, "invalid_input", "features.1", "not list"),
    ({"features": "5.1,3.5"}, 422, "invalid_input", "features", "list of numbers or an object"),
    ({"features": None}, 422, "invalid_input", "features", "may not be null"),
    ({"features": {"sepal_length": 5.1}}, 422, "invalid_input", "features.petal_width", "Missing"),
    (
        {
            "features": dict(
                zip(["a", "sepal_width", "petal_length", "petal_width"], IRIS_SETOSA, strict=True)
            )
        },
        422,
        "invalid_input",
        "features.a",
        "Unknown feature",
    ),
    ({"instances": []}, 422, "invalid_input", "instances", "at least one row"),
    ({"instances": {"a": 1}}, 422, "invalid_input", "instances", "list of rows"),
    ({"instances": [IRIS_SETOSA, [1, 2]]}, 422, "invalid_input", "instances.1", "got 2"),
    ({"instances": [IRIS_SETOSA, 7]}, 422, "invalid_input", "instances.1", "list of numbers"),
    ({"instances": [IRIS_SETOSA, [1, 2, "x", 4]]}, 422, "invalid_input", "instances.1.2", "str"),
    ({}, 422, "invalid_input", "body", "exactly one"),
    ({"features": IRIS_SETOSA, "extra": 1}, 422, "invalid_input", "extra", "Unknown field"),
]


@pytest.mark.parametrize(("body", "status", "code", "field", "fragment"), CASES)
def test_invalid_payloads(client, body, status, code, field, fragment):
    response = client.post("/predict", json=body)
    assert response.status_code == status
    error = response.get_json()
    assert error["code"] == code
    assert error["status"] == status
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert field in error["details"], error
    assert any(fragment in message for message in error["details"][field]), error
    assert field in error["error"] or fragment in error["error"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"features": [NaN, 3.5, 1.4, 0.2]}', "features.0"),
        (b'{"features": [5.1, Infinity, 1.4, 0.2]}', "features.1"),
        (b'{"features": [5.1, 3.5, -Infinity, 0.2]}', "features.2"),
        (b'{"features": [5.1, 3.5, 1.4, 1e999]}', "features.3"),
        (b'{"instances": [[5.1, 3.5, 1.4, 0.2], [1, 2, 3, NaN]]}', "instances.1.3"),
        # an integer beyond float64's range, in one row and in a batch
        (b'{"features": [5.1, 3.5, 1.4, 1' + b"0" * 400 + b"]}", "features.3"),
        (
            b'{"instances": [[5.1, 3.5, 1.4, 0.2], [1' + b"0" * 400 + b", 2, 3, 4]]}",
            "instances.1.0",
        ),
        # batches past the size where numpy, not Python, checks the numbers
        (
            b'{"instances": [' + b"[5.1, 3.5, 1.4, 0.2], " * 99 + b"[1, 2, 3, NaN]]}",
            "instances.99.3",
        ),
        (
            b'{"instances": [' + b"[5.1, 3.5, 1.4, 0.2], " * 99 + b"[1e999, 2, 3, 4]]}",
            "instances.99.0",
        ),
        (
            b'{"instances": ['
            + b"[5.1, 3.5, 1.4, 0.2], " * 99
            + b"[1"
            + b"0" * 400
            + b", 2, 3, 4]]}",
            "instances.99.0",
        ),
    ],
)
def test_non_finite_numbers_are_422_naming_the_field(client, raw, field):
    response = client.post("/predict", data=raw, content_type="application/json")
    assert response.status_code == 422
    assert response.get_json()["details"] == {field: ["Not a finite number."]}


def test_batch_rows_are_validated_only_by_predict_batch(client):
    response = client.post("/predict/batch", json={"features": IRIS_SETOSA})
    assert response.status_code == 422
    assert response.get_json()["details"]["instances"] == ["Missing data for required field."]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code", "fragment"),
    [
        (b'{"features": [5.1, 3.5', "application/json", 400, "bad_request", "Malformed JSON"),
        (b"", "application/json", 400, "bad_request", "empty"),
        (b"[5.1, 3.5, 1.4, 0.2]", "application/json", 400, "bad_request", "not an array"),
        (b'"hello"', "application/json", 400, "bad_request", "not a string"),
        (b"\xff\xfe", "application/json", 400, "bad_request", "Malformed JSON"),
        (b"[" * 100_000, "application/json", 400, "bad_request", "Malformed JSON"),
        (
            b'{"features": [5.1, 3.5, 1.4, 0.2]}',
            "text/plain",
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        (b"features=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", "form"),
    ],
)
def test_malformed_bodies(client, raw, content_type, status, code, fragment):
    response = client.post("/predict", data=raw, content_type=content_type)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert (body["code"], body["status"]) == (code, status)
    assert fragment in body["error"]


def test_missing_content_type_is_415(client):
    response = client.post("/predict", data=b'{"features": [1, 2, 3, 4]}')
    assert response.status_code == 415
    assert "missing" in response.get_json()["error"]


def test_body_over_the_limit_is_413_before_parsing(demo_store):
    client = create_app({"store": demo_store, "max_body_bytes": 100}).test_client()
    response = client.post(
        "/predict", data=b"{" + b" " * 200 + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    body = response.get_json()
    assert body["code"] == "payload_too_large"
    assert "100-byte limit" in body["error"]


def test_batch_over_the_row_limit_is_413(demo_store):
    client = create_app({"store": demo_store, "max_batch_rows": 3}).test_client()
    response = client.post("/predict/batch", json={"instances": [IRIS_SETOSA] * 4})
    assert response.status_code == 413
    assert "4 rows; the limit is 3" in response.get_json()["error"]
    ok = client.post("/predict/batch", json={"instances": [IRIS_SETOSA] * 3})
    assert ok.get_json()["predictions"] == ["setosa"] * 3


def test_unknown_route_and_wrong_method_are_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.get_json()["code"] == "not_found"
    assert "/nope" in missing.get_json()["error"]
    wrong = client.get("/predict")
    assert wrong.status_code == 405
    assert wrong.get_json()["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_unknown_model_is_404(client):
    response = client.post("/models/nope/predict", json={"features": [1]})
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "Model 'nope' is not in the store.",
        "code": "model_not_found",
        "status": 404,
        "request_id": response.headers["X-Request-ID"],
        "details": {},
    }


def test_large_batch_validates_and_predicts(client):
    rows = [IRIS_SETOSA] * 10_000
    response = client.post("/predict/batch", json={"instances": rows})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == ["setosa"] * 10_000


def test_unexpected_exception_is_a_generic_json_500(app, monkeypatch):
    from ml_app.core.model import LoadedModel

    def explode(self, matrix):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(LoadedModel, "predict", explode)
    response = app.test_client().post("/predict", json={"features": IRIS_SETOSA})
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "Internal server error."
    assert "secret" not in response.get_data(as_text=True)
