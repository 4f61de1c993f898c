"""One pipeline: hooks a user adds to a built app run for every prediction route and protocol."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from flask import g, request

from tests.support.reference import IRIS_SETOSA

ROW = IRIS_SETOSA
_V2_JSON = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
_V2_BINARY_HEADER = (
    b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64",'
    b'"parameters":{"binary_data_size":32}}]}'
)


def _v2_binary(client):
    body = _V2_BINARY_HEADER + struct.pack("<4d", *ROW)
    return client.post(
        "/v2/models/iris/infer",
        data=body,
        content_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(_V2_BINARY_HEADER))},
    )


# Every prediction route of every protocol, each with a request that succeeds.
PREDICTIONS = {
    "native one row": lambda c: c.post("/predict", json={"features": ROW}),
    "native batch": lambda c: c.post("/predict/batch", json={"instances": [ROW, ROW]}),
    "native by model": lambda c: c.post("/models/iris/predict", json={"features": ROW}),
    "native by version": lambda c: c.post(
        "/models/iris/versions/1/predict/batch", json={"instances": [ROW]}
    ),
    "V2 JSON": lambda c: c.post("/v2/models/iris/infer", json=_V2_JSON),
    "V2 binary": _v2_binary,
    "V1": lambda c: c.post("/v1/models/iris:predict", json={"instances": [ROW]}),
    "MLflow": lambda c: c.post("/invocations", json={"instances": [ROW]}),
}


@pytest.mark.parametrize("route", PREDICTIONS)
def test_user_hooks_run_for_every_prediction_route(app, route):
    seen: list[str] = []

    @app.before_request
    def _user_auth():  # what a user's own auth or tracing hook would do
        seen.append(request.path)
        g.user_mark = "checked"

    @app.after_request
    def _user_header(response):
        response.headers["X-User-Hook"] = g.get("user_mark", "missing")
        return response

    response = PREDICTIONS[route](app.test_client())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(seen) == 1
    assert response.headers["X-User-Hook"] == "checked"
    # the pipeline's own headers are there too, whichever protocol answered
    assert len(response.headers["X-Request-ID"]) == 32
    assert response.headers["X-Model-Version"] == "1"


@pytest.mark.parametrize("route", PREDICTIONS)
def test_a_user_hook_can_refuse_a_prediction(app, route):
    @app.before_request
    def _deny():
        if request.method == "POST":
            return {"error": "denied by the user's hook"}, 403
        return None

    response = PREDICTIONS[route](app.test_client())
    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "denied by the user's hook"},
    )
    assert len(response.headers["X-Request-ID"]) == 32


def test_v2_binary_request_predicts_like_json(client):
    binary = _v2_binary(client)
    as_json = client.post("/v2/models/iris/infer", json=_V2_JSON)
    assert binary.get_json()["outputs"] == as_json.get_json()["outputs"]
    assert np.isclose(sum(binary.get_json()["outputs"][1]["data"]), 1.0)
