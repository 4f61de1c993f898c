"""KServe V1 (TensorFlow Serving style) REST: `{"instances": [...]}` -> `{"predictions": [...]}`."""

from __future__ import annotations

from flask import Blueprint, Response
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter

from ml_app.web.body import batch_limits, read_json_object
from ml_app.web.openapi.operations import IRIS_ROWS, answer, failures, json_content, operation
from ml_app.web.payload_log import prediction_endpoint
from ml_app.web.protocols.common import answer_invalid_input_with_400, load_rows
from ml_app.web.protocols.wire import Readiness, V1ModelList, V1Predictions, V1Request, V1Status
from ml_app.web.responses import json_response
from ml_app.web.serving import predict_matrix, resolve_model
from ml_app.web.state import app_state

bp = Blueprint("v1", __name__)
answer_invalid_input_with_400(bp)
_REQUEST = V1Request()


class ModelName(BaseConverter):
    """A model name in a V1 path: never holds a colon (no store name does; see core.store), so
    `GET /v1/models/iris:predict` is the predict route asked with the wrong method (405), not
    the readiness of a model called "iris:predict"."""

    regex = "[^/:]+"


@bp.record_once
def _add_model_name_converter(state: BlueprintSetupState) -> None:
    # Recorded before the routes, so it runs before their rules are added to the app.
    state.app.url_map.converters.setdefault("model", ModelName)


@bp.get("/")
def server_live() -> Response:
    """KServe's liveness answer at the root."""
    return json_response({"status": "alive"})


@bp.get("/v1/models")
def list_models() -> Response:
    """Names of the models in the store."""
    return json_response({"models": [entry.name for entry in app_state().registry.entries()]})


@bp.get("/v1/models/<model:name>")
def model_ready(name: str) -> Response:
    """200 `{"ready": true}` when the model can serve; 404 unknown, 503 failed to load."""
    model = app_state().registry.resolve(name)
    return json_response({"name": model.name, "ready": True})


@bp.post("/v1/models/<model:name>:predict")
@prediction_endpoint
def predict(name: str) -> Response:
    """Predict `instances` (rows) or `inputs` (rows or named columns)."""
    model = resolve_model(name)
    limits = batch_limits(model)
    matrix = load_rows(_REQUEST, read_json_object(limits), limits)
    outputs = predict_matrix(matrix)
    predictions = outputs.values if outputs.values is not None else outputs.labels
    return json_response({"predictions": predictions})


# --- OpenAPI ---------------------------------------------------------------------------------

_TAG = "KServe V1"
OPERATIONS = {
    "v1.server_live": operation("Server liveness", _TAG, answer("Alive", json_content(V1Status))),
    "v1.list_models": operation("Model names", _TAG, answer("Names", json_content(V1ModelList))),
    "v1.model_ready": operation(
        "Model readiness",
        _TAG,
        {**answer("Ready", json_content(Readiness)), **failures(404, 503)},
    ),
    "v1.predict": operation(
        "Predict",
        _TAG,
        {
            **answer("One prediction per row, in order", json_content(V1Predictions)),
            **failures(400, 404, 413, 415, 429, 503),
        },
        body=json_content(V1Request, {"instances": IRIS_ROWS}),
    ),
}
