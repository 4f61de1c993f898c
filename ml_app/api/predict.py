"""Native prediction endpoints: one row or a batch, for the default or a chosen model."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, request
from marshmallow import Schema

from ml_app.inference import LoadedModel, Outputs
from ml_app.metrics import observed_predict
from ml_app.schemas import BatchPredictRequest, PredictRequest, load_matrix
from ml_app.shadow import ShadowJob
from ml_app.state import app_state

bp = Blueprint("predict", __name__)
# Requests with the same key get the same version of a traffic split (per model).
ROUTING_KEY_HEADER = "X-Routing-Key"
_ANY_SHAPE = PredictRequest()
_BATCH_ONLY = BatchPredictRequest()


@bp.post("/predict")
@bp.post("/models/<name>/predict")
@bp.post("/models/<name>/versions/<version>/predict")
def predict(name: str | None = None, version: str | None = None) -> Response:
    """Predict one row (`features`) or a batch (`instances`)."""
    return _serve(_ANY_SHAPE, name, version)


@bp.post("/predict/batch")
@bp.post("/models/<name>/predict/batch")
@bp.post("/models/<name>/versions/<version>/predict/batch")
def predict_batch(name: str | None = None, version: str | None = None) -> Response:
    """Predict a batch of rows (`instances`); answers keep the input order."""
    return _serve(_BATCH_ONLY, name, version)


def _serve(schema: Schema, name: str | None, version: str | None) -> Response:
    state = app_state()
    route = state.registry.route(name, version, request.headers.get(ROUTING_KEY_HEADER) or None)
    model = route.model
    request_state = g._get_current_object()  # one proxy lookup, not one per attribute
    request_state.model, request_state.version = model.name, model.version
    matrix, single_row = load_matrix(schema, model, state.settings.max_batch_rows)
    request_state.rows = len(matrix)
    outputs = observed_predict(model, matrix)
    body = _render_one(model, outputs) if single_row else _render_batch(model, outputs)
    response = current_app.json.response(body)
    if route.shadows and state.shadow is not None:
        # Queued once the answer has been sent: the shadow never delays or changes it.
        job = ShadowJob(route.shadows, matrix, model, outputs, g.get("request_id"))
        response.call_on_close(lambda: state.shadow.submit(job))
    return response


def _render_one(model: LoadedModel, outputs: Outputs) -> dict[str, Any]:
    if outputs.values is not None:
        body: dict[str, Any] = {"prediction": outputs.values[0]}
    else:
        body = {"prediction": outputs.labels[0]}
        if outputs.probabilities is not None:
            body["probabilities"] = dict(
                zip(model.class_labels, outputs.probabilities[0].tolist(), strict=True)
            )
    body.update(model=model.name, version=model.version)
    return body


def _render_batch(model: LoadedModel, outputs: Outputs) -> dict[str, Any]:
    if outputs.values is not None:
        body: dict[str, Any] = {"predictions": outputs.values}
    else:
        body = {"predictions": outputs.labels}
        if outputs.probabilities is not None:
            labels = model.class_labels
            body["probabilities"] = [
                dict(zip(labels, row, strict=True)) for row in outputs.probabilities.tolist()
            ]
    body.update(model=model.name, version=model.version)
    return body
