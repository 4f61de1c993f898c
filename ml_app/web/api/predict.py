"""Native prediction endpoints: one row or a batch, for the default or a chosen model."""

from __future__ import annotations

from flask import Blueprint, Response
from marshmallow import Schema

from ml_app.core.dataplane import render_native
from ml_app.core.features import ENTITIES_FIELD, entities_of
from ml_app.core.validation import BatchPredictRequest, PredictRequest, validate_matrix
from ml_app.web.body import batch_limits, read_json_object
from ml_app.web.payload_log import prediction_endpoint
from ml_app.web.responses import json_response
from ml_app.web.serving import predict_matrix, resolve_model, rows_for_entities

bp = Blueprint("predict", __name__)

# URL rules and the schema each validates with: one row (`features`) or a batch (`instances`),
# or a batch only.
ANY_SHAPE_RULES = (
    "/predict",
    "/models/<name>/predict",
    "/models/<name>/versions/<version>/predict",
)
BATCH_RULES = (
    "/predict/batch",
    "/models/<name>/predict/batch",
    "/models/<name>/versions/<version>/predict/batch",
)
ANY_SHAPE = PredictRequest()
BATCH_ONLY = BatchPredictRequest()


@prediction_endpoint
def predict(name: str | None = None, version: str | None = None) -> Response:
    """Predict one row (`features`), a batch (`instances`) or entities by id (`entities`)."""
    return _serve(ANY_SHAPE, name, version)


@prediction_endpoint
def predict_batch(name: str | None = None, version: str | None = None) -> Response:
    """Predict a batch (`instances` or `entities`); answers keep the input order."""
    return _serve(BATCH_ONLY, name, version)


for _rule in ANY_SHAPE_RULES:
    bp.add_url_rule(_rule, view_func=predict, methods=["POST"])
for _rule in BATCH_RULES:
    bp.add_url_rule(_rule, view_func=predict_batch, methods=["POST"])


def _serve(schema: Schema, name: str | None, version: str | None) -> Response:
    model = resolve_model(name, version)
    limits = batch_limits(model)
    body = read_json_object(limits)
    if ENTITIES_FIELD in body:  # by entity id: features looked up in the version's source
        matrix, single_row = rows_for_entities(model, entities_of(body)), False
    else:
        matrix, single_row = validate_matrix(schema, body, model, limits.max_rows)
    outputs = predict_matrix(matrix)
    return json_response(render_native(model, outputs, single_row))
