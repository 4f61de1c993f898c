"""Open Inference Protocol (V2) routes through Flask's test client, checked against the models."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from ml_app import create_app
from tests.support import reference
from tests.support.reference import IRIS_FEATURES

ROWS = reference.sample_rows("iris", 6)


def _infer(client, body, model="iris", **kwargs):
    return client.post(f"/v2/models/{model}/infer", json=body, **kwargs)


def _json(response, status=200):
    """The JSON body of a response that has `status`."""
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _tensor(rows, datatype="FP64", name="input", nested=False):
    data = rows.tolist() if nested else rows.ravel().tolist()
    return {"name": name, "shape": list(rows.shape), "datatype": datatype, "data": data}


def test_server_metadata_health_and_model_metadata(client):
    assert _json(client.get("/v2")) == {
        "name": "ml_app",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    assert _json(client.get("/v2/health/live")) == {"live": True}
    assert _json(client.get("/v2/health/ready")) == {"ready": True}
    iris = _json(client.get("/v2/models/iris"))
    assert iris["versions"] == ["1"]
    assert iris["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert iris["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    diabetes = _json(client.get("/v2/models/diabetes/versions/1"))
    assert diabetes["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert _json(client.get("/v2/models/iris/versions/1/ready")) == {
        "name": "iris",
        "ready": True,
    }


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_infer_2d_tensor_matches_the_estimator(client, demo_store, nested, datatype):
    response = _infer(client, {"id": "req-1", "inputs": [_tensor(ROWS, datatype, nested=nested)]})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "req-1")
    predict, proba = body["outputs"]
    rows = ROWS.astype(np.float32).astype(np.float64) if datatype == "FP32" else ROWS
    assert predict == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [6],
        "data": reference.labels(demo_store, "iris", rows),
    }
    assert proba["shape"] == [6, 3]
    expected = reference.estimator(demo_store, "iris").predict_proba(rows)
    assert np.array(proba["data"]).reshape(6, 3) == pytest.approx(expected, abs=1e-12)


def test_integer_tensor_and_one_column_per_feature_give_the_same_answer(client, demo_store):
    whole_numbers = np.round(ROWS).astype(int)
    whole = _json(_infer(client, {"inputs": [_tensor(whole_numbers, "INT64")]}))
    expected = reference.labels(demo_store, "iris", whole_numbers.astype(np.float64))
    assert whole["outputs"][0]["data"] == expected
    columns = [
        {"name": name, "shape": [6], "datatype": "INT32", "data": whole_numbers[:, i].tolist()}
        for i, name in reversed(list(enumerate(IRIS_FEATURES)))
    ]
    per_feature = _json(_infer(client, {"inputs": columns}))
    assert per_feature["outputs"] == whole["outputs"]


def test_requested_outputs_are_honoured_in_order(client):
    body = {"inputs": [_tensor(ROWS)], "outputs": [{"name": "predict_proba"}, {"name": "predict"}]}
    outputs = _json(_infer(client, body))["outputs"]
    assert [o["name"] for o in outputs] == ["predict_proba", "predict"]
    only = _infer(client, {"inputs": [_tensor(ROWS)], "outputs": [{"name": "predict"}]})
    assert [o["name"] for o in _json(only)["outputs"]] == ["predict"]


def _binary_request(rows: np.ndarray, **extra) -> tuple[bytes, dict[str, str]]:
    raw = rows.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        **extra,
    }
    encoded = orjson.dumps(header)
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded))}


def _split_response(response) -> tuple[dict, bytes]:
    length = int(response.headers["Inference-Header-Content-Length"])
    raw = response.get_data()
    return orjson.loads(raw[:length]), raw[length:]


def _bytes_elements(raw: bytes) -> list[str]:
    values, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return values


def test_binary_inputs_and_outputs(client, demo_store):
    body, headers = _binary_request(ROWS, parameters={"binary_data_output": True})
    response = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    header, raw = _split_response(response)
    predict, proba = header["outputs"]
    assert "data" not in predict
    labels = raw[: predict["parameters"]["binary_data_size"]]
    probabilities = np.frombuffer(raw[len(labels) :], dtype="<f8").reshape(6, 3)
    rows = ROWS.astype(np.float32).astype(np.float64)
    assert _bytes_elements(labels) == reference.labels(demo_store, "iris", rows)
    expected = reference.estimator(demo_store, "iris").predict_proba(rows)
    assert probabilities == pytest.approx(expected, abs=1e-12)
    assert (
        len(raw)
        == predict["parameters"]["binary_data_size"] + proba["parameters"]["binary_data_size"]
    )


def test_per_output_binary_flag_overrides_the_request_default(client, demo_store):
    rows = reference.sample_rows("diabetes", 3)
    outputs = [{"name": "predict", "parameters": {"binary_data": False}}]
    body = {
        "inputs": [_tensor(rows)],
        "outputs": outputs,
        "parameters": {"binary_data_output": True},
    }
    response = _infer(client, body, model="diabetes")
    assert response.mimetype == "application/json"
    expected = reference.estimator(demo_store, "diabetes").predict(rows)
    assert _json(response)["outputs"][0]["data"] == pytest.approx(expected, rel=1e-12)
    binary = {
        "inputs": [_tensor(rows)],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
    binary_response = _infer(client, binary, model="diabetes")
    assert binary_response.status_code == 200
    _, raw = _split_response(binary_response)
    assert np.frombuffer(raw, dtype="<f8") == pytest.approx(expected, rel=1e-12)


def _tensor_with(**overrides):
    return {**_tensor(ROWS[:2]), **overrides}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [_tensor_with(shape=[2, 3])]}, "holds 6 values, but data has 8"),
        ({"inputs": [_tensor_with(shape=[4, 2])]}, "takes [rows, 4]"),
        ({"inputs": [_tensor_with(datatype="FP128")]}, "inputs.0.datatype"),
        ({"inputs": [_tensor_with(datatype="BYTES")]}, "not numeric"),
        ({"inputs": [_tensor_with(data=["a"] * 8)]}, "does not hold FP64"),
        ({"inputs": [_tensor_with(datatype="INT64")]}, "does not hold INT64"),
        ({"inputs": [_tensor_with(data=[[1, 2], [3]])]}, "(nested) list of numbers"),
        ({"inputs": [_tensor_with(data=None)]}, "inputs.0.data"),
        ({"inputs": [_tensor_with(shape=[0, 4], data=[])]}, "no rows"),
        ({"inputs": [_tensor_with(shape=[2, -4])]}, "inputs.0.shape"),
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]}, "neither data"),
        ({"inputs": [_tensor(ROWS[:, 0], name="sepal_length")]}, "one 1-D input per feature"),
        ({"inputs": [_tensor_with(), _tensor_with()]}, "one 1-D input per feature"),
        ({"inputs": [_tensor_with()], "outputs": [{"name": "decision"}]}, "Unknown output"),
        (
            {"inputs": [_tensor_with()], "parameters": {"binary_data_output": "yes"}},
            "true or false",
        ),
    ],
)
def test_bad_tensors_are_400_with_an_error_member(client, body, fragment):
    response = _infer(client, body)
    assert response.status_code == 400, response.get_json()
    assert fragment in response.get_json()["error"]


def test_feature_columns_must_have_equal_lengths_and_be_1d(client):
    columns = [
        {"name": n, "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]} for n in IRIS_FEATURES
    ]
    columns[0] = {**columns[0], "shape": [1], "data": [1.0]}
    assert "same number of rows" in _json(_infer(client, {"inputs": columns}), 400)["error"]
    columns[0] = {**columns[0], "shape": [1, 2], "data": [1.0, 2.0]}
    assert "[rows] or [rows, 1]" in _json(_infer(client, {"inputs": columns}), 400)["error"]


def test_non_finite_and_malformed_bodies(client):
    tensor = b'{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 1e999]}'
    infinite = b'{"inputs": [' + tensor + b"]}"
    response = client.post("/v2/models/iris/infer", data=infinite, content_type="application/json")
    assert response.status_code == 400
    assert client.post("/v2/models/iris/infer", data=b"{oops").status_code == 400
    assert client.post("/v2/models/iris/infer", data=b"[1, 2]").status_code == 400


@pytest.mark.parametrize("length", ["-1", "abc", "99999"])
def test_bad_header_length_is_400(client, length):
    body, _ = _binary_request(ROWS)
    response = client.post(
        "/v2/models/iris/infer", data=body, headers={"Inference-Header-Content-Length": length}
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.get_json()["error"]


def test_binary_sizes_must_match_shape_and_body(client):
    body, headers = _binary_request(ROWS)
    short = client.post("/v2/models/iris/infer", data=body[:-4], headers=headers)
    assert "does not fit" in _json(short, 400)["error"]
    extra = client.post("/v2/models/iris/infer", data=body + b"\0" * 8, headers=headers)
    assert "belong to no input" in _json(extra, 400)["error"]
    header = orjson.loads(body[: int(headers["Inference-Header-Content-Length"])])
    header["inputs"][0]["shape"] = [5, 4]
    encoded = orjson.dumps(header)
    raw = body[int(headers["Inference-Header-Content-Length"]) :]
    mismatch = client.post(
        "/v2/models/iris/infer",
        data=encoded + raw,
        headers={"Inference-Header-Content-Length": str(len(encoded))},
    )
    assert mismatch.status_code == 400
    assert "needs 80" in mismatch.get_json()["error"]


def test_unknown_model_or_version_is_404(client):
    assert _infer(client, {"inputs": [_tensor(ROWS)]}, model="nope").status_code == 404
    response = client.post("/v2/models/iris/versions/9/infer", json={"inputs": [_tensor(ROWS)]})
    assert response.status_code == 404
    assert "no version or alias '9'" in response.get_json()["error"]
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_too_many_rows_is_413(demo_store):
    client = create_app({"store": demo_store, "max_batch_rows": 5}).test_client()
    response = _infer(client, {"inputs": [_tensor(ROWS)]})
    assert response.status_code == 413
    assert "limit is 5" in response.get_json()["error"]


def test_broken_model_is_503_on_ready_and_infer(store):
    artifact = store / "iris" / "1" / "model.skops"
    artifact.write_bytes(b"garbage" + artifact.read_bytes())
    client = create_app({"store": store}).test_client()
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/iris/ready").status_code == 503
    response = _infer(client, {"inputs": [_tensor(ROWS)]})
    assert response.status_code == 503
    assert "integrity check" in response.get_json()["error"]
    assert client.get("/v2/models/diabetes/ready").status_code == 200
