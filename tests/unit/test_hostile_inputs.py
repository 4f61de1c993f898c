"""Hostile and unusual inputs: every one is a clean 4xx in the route's error shape, never a 500."""

from __future__ import annotations

import logging

import orjson
import pytest

from ml_app import create_app
from ml_app.core.logformat import JsonFormatter
from ml_app.web.errors import error_response
from tests.support import reference
from tests.support.reference import IRIS_FEATURES

ROWS = reference.sample_rows("iris", 3)
ADMIN_TOKEN = "hostile-inputs-admin-token"
# JSON texts with a lone surrogate escape: orjson refuses them, Python's json accepts them.
LONE_SURROGATE = "\\ud800"


@pytest.fixture
def admin_client(demo_store):
    app = create_app({"store": demo_store, "reload_interval": 0, "admin_token": ADMIN_TOKEN})
    return app.test_client()


def _error(response, status, code):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == code
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/predict", '{"features": {"%s": 1}}'),
        ("/predict", '{"features": {"sepal_length": NaN, "%s": 1}}'),
        ("/predict/batch", '{"instances": [[1, 2, 3, "%s"]]}'),
        ("/v1/models/iris:predict", '{"instances": [{"%s": 1}]}'),
        ("/v1/models/iris:predict", '{"inputs": {"%s": [1]}}'),
        ("/v2/models/iris/infer", '{"id": "%s", "inputs": []}'),
    ],
)
def test_lone_surrogates_are_400_in_the_error_shape(client, path, text):
    raw = text.replace("%s", LONE_SURROGATE).encode()
    body = _error(client.post(path, data=raw, content_type="application/json"), 400, "bad_request")
    assert body["error"].startswith("Malformed JSON")


@pytest.mark.parametrize(
    "text",
    [
        '{"dataframe_split": {"columns": ["%s"], "data": [[1]]}}',
        '{"dataframe_records": [{"%s": 1}]}',
        '{"inputs": {"%s": [1, 2]}}',
    ],
)
def test_lone_surrogates_on_mlflow_are_400_in_its_shape(client, text):
    raw = text.replace("%s", LONE_SURROGATE).encode()
    response = client.post("/invocations", data=raw, content_type="application/json")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error_code"] == "BAD_REQUEST"
    assert body["message"].startswith("Malformed JSON")


def test_lone_surrogates_on_admin_are_400(admin_client):
    raw = ('{"version": "%s"}'.replace("%s", LONE_SURROGATE)).encode()
    response = admin_client.put(
        "/admin/models/iris/aliases/production",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert _error(response, 400, "bad_request")["error"].startswith("Malformed JSON")


def _v2_binary_request(rows):
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ]
        }
    )
    return header, header + rows.astype("<f8").tobytes()


@pytest.mark.parametrize(
    "digits",
    [
        "0123456789",  # ASCII: the control case, answered 200
        "".join(map(chr, range(0x660, 0x66A))),  # Arabic-Indic
        "".join(map(chr, range(0xFF10, 0xFF1A))),  # fullwidth
        "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",  # superscripts
    ],
)
def test_header_length_takes_ascii_digits_only(client, digits):
    header, raw = _v2_binary_request(ROWS)
    length = "".join(digits[int(d)] for d in str(len(header)))
    response = client.post(
        "/v2/models/iris/infer",
        data=raw,
        headers={"Inference-Header-Content-Length": length},
        content_type="application/octet-stream",
    )
    if digits.isascii():
        assert response.status_code == 200
        expected = reference.labels(_store(client), "iris", ROWS)
        assert response.get_json()["outputs"][0]["data"] == expected
        return
    body = _error(response, 400, "invalid_input")
    assert "Inference-Header-Content-Length must be a whole number" in body["error"]


def _store(client):
    return client.application.extensions["ml_app"].settings.store


@pytest.mark.parametrize(
    ("shape", "data", "fragment"),
    [
        ([1] * 65, [1.0], "65 dimensions; at most 64"),
        ([1] * 1000, [1.0], "1000 dimensions; at most 64"),
        ([0, 2**63], [], "too large for an array"),
        ([2**62, 0], [], "too large for an array"),
        ([2**62, 4, 0], [], "too large for an array"),
        ([0, 2**40, 2**40], [], "too large for an array"),
        ([2**40, 2**40], [1.0], "too large for an array"),
    ],
)
def test_v2_shapes_numpy_cannot_hold_are_400_naming_the_input(client, shape, data, fragment):
    tensor = {"name": "wide", "shape": shape, "datatype": "FP64", "data": data}
    response = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    body = _error(response, 400, "invalid_input")
    assert body["error"].startswith("Input 'wide': ")
    assert fragment in body["error"]


def test_v2_binary_shapes_numpy_cannot_hold_are_400(client):
    spec = {"name": "wide", "shape": [0, 2**63], "datatype": "FP64"}
    header = orjson.dumps({"inputs": [{**spec, "parameters": {"binary_data_size": 0}}]})
    response = client.post(
        "/v2/models/iris/infer",
        data=header,
        headers={"Inference-Header-Content-Length": str(len(header))},
        content_type="application/octet-stream",
    )
    assert "Input 'wide': shape" in _error(response, 400, "invalid_input")["error"]


def _v2_json(**extra):
    tensor = {"name": "input", "shape": list(ROWS.shape), "datatype": "FP64"}
    return {"inputs": [{**tensor, "data": ROWS.ravel().tolist(), **extra}]}


@pytest.mark.parametrize(
    "body",
    [
        {**_v2_json(), "parameters": None},
        {**_v2_json(), "outputs": None},
        {**_v2_json(), "id": None},
        _v2_json(parameters=None),
        {**_v2_json(), "outputs": [{"name": "predict", "parameters": None}]},
        {**_v2_json(), "id": None, "parameters": None, "outputs": None},
    ],
)
def test_v2_optional_fields_sent_as_null_are_absent(client, body):
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert "id" not in answer
    assert answer["outputs"][0]["name"] == "predict"
    assert answer["outputs"][0]["data"] == reference.labels(_store(client), "iris", ROWS)


def test_v2_required_fields_sent_as_null_stay_invalid(client):
    response = client.post("/v2/models/iris/infer", json={"inputs": None})
    assert _error(response, 400, "invalid_input")["details"] == {
        "inputs": ["Field may not be null."]
    }


def test_mlflow_params_sent_as_null_are_absent(client):
    body = {"dataframe_split": {"columns": IRIS_FEATURES, "data": ROWS.tolist()}, "params": None}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"predictions": reference.labels(_store(client), "iris", ROWS)}


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_mlflow_csv_with_a_byte_order_mark(client, line_end):
    lines = [",".join(IRIS_FEATURES), *(",".join(map(str, row)) for row in ROWS.tolist())]
    text = "\ufeff" + line_end.join(lines) + line_end
    response = client.post("/invocations", data=text.encode(), content_type="text/csv")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"predictions": reference.labels(_store(client), "iris", ROWS)}


def _raw_binary(client, raw: bytes, model: str = "iris"):
    return client.post(
        f"/v2/models/{model}/infer",
        data=raw,
        headers={"Inference-Header-Content-Length": "0"},
        content_type="application/octet-stream",
    )


@pytest.mark.parametrize("name", ["iris", "breast_cancer"])
def test_v2_raw_binary_request_is_the_single_input(client, name):
    rows = reference.sample_rows(name, 7)
    metadata = client.get(f"/v2/models/{name}").get_json()["inputs"]
    assert metadata == [{"name": "input", "datatype": "FP64", "shape": [-1, rows.shape[1]]}]
    response = _raw_binary(client, rows.astype("<f8").tobytes(), name)
    assert response.status_code == 200, response.get_json()
    outputs = {output["name"]: output for output in response.get_json()["outputs"]}
    assert outputs["predict"]["shape"] == [7]
    assert outputs["predict"]["data"] == reference.labels(_store(client), name, rows)


@pytest.mark.parametrize("size", [0, 8, 31, 33])
def test_v2_raw_binary_of_a_wrong_size_is_400(client, size):
    body = _error(_raw_binary(client, bytes(size)), 400, "invalid_input")
    assert body["error"] == (
        f"Raw binary body of {size} bytes is not a whole number of rows of input 'input' "
        "(4 FP64 values, 32 bytes per row)."
    )


def test_an_answer_holding_a_lone_surrogate_still_renders(app):
    with app.test_request_context("/predict"):
        response = error_response(400, "bad_request", "name \ud800", {"\ud800": ["Unknown."]})
    assert response.status_code == 400
    assert orjson.loads(response.data)["error"] == "name \\ud800"
    assert orjson.loads(response.data)["details"] == {"\\ud800": ["Unknown."]}


def test_a_log_line_holding_a_lone_surrogate_is_still_json():
    record = logging.LogRecord("ml_app.test", logging.WARNING, "", 0, "model %s", ("\ud800",), None)
    record.fields = {"model": "\ud800"}
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["message"], line["model"]) == ("model \\ud800", "\\ud800")
