"""OpenAPI descriptions of the native routes (predict, models, health, metrics, docs)."""

from __future__ import annotations

from marshmallow import Schema, fields

from ml_app.core.validation import BatchPredictRequest, PredictRequest
from ml_app.web.openapi.operations import IRIS_ROWS, answer, failures, json_content, operation

_ANY = {"description": "Any JSON value: a class label (string) or a number"}
_PER_CLASS = {"description": "Probability of every class, by class label"}


class SinglePrediction(Schema):
    """The answer for one row (`features`)."""

    prediction = fields.Raw(required=True, metadata=_ANY)
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float(), metadata=_PER_CLASS)
    model = fields.String(required=True)
    version = fields.String(required=True)


class EntitiesRequest(Schema):
    """Entities by id, for a version that declares a feature source; the rest is looked up."""

    entities = fields.List(
        fields.Dict(keys=fields.String()),
        required=True,
        metadata={
            "description": "Objects with the version's entity key (e.g. customer_id) and, "
            "optionally, some of the model's features"
        },
    )


class BatchPrediction(Schema):
    """The answers for a batch (`instances`), in input order."""

    predictions = fields.List(fields.Raw(metadata=_ANY), required=True)
    probabilities = fields.List(fields.Dict(keys=fields.String(), values=fields.Float()))
    model = fields.String(required=True)
    version = fields.String(required=True)


_SPLIT = {"description": "Traffic split in force: each version's share (null when none)"}
_SHADOW = {"description": "Versions that receive a copy of the traffic (answers never returned)"}


class ModelSummary(Schema):
    """One model of the store."""

    name = fields.String(required=True)
    default_version = fields.String(required=True, allow_none=True)
    versions = fields.List(fields.String(), required=True)
    aliases = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    split = fields.Dict(
        keys=fields.String(), values=fields.Float(), required=True, allow_none=True, metadata=_SPLIT
    )
    shadow = fields.List(fields.String(), required=True, metadata=_SHADOW)
    ready = fields.Boolean(required=True)


class ModelList(Schema):
    """Every model of the store."""

    default_model = fields.String(required=True)
    models = fields.List(fields.Nested(ModelSummary), required=True)


class VersionDetail(Schema):
    """One version's load state and metadata."""

    version = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": ["loaded", "failed"]})
    load_seconds = fields.Float(required=True)
    error = fields.String()
    metadata = fields.Dict(required=True)


class ModelDetail(Schema):
    """One model: aliases, readiness and every version."""

    name = fields.String(required=True)
    default_version = fields.String(required=True, allow_none=True)
    aliases = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    serving = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Alias -> the version it really serves (after fallbacks)"},
    )
    split = fields.Dict(
        keys=fields.String(), values=fields.Float(), required=True, allow_none=True, metadata=_SPLIT
    )
    shadow = fields.List(fields.String(), required=True, metadata=_SHADOW)
    ready = fields.Boolean(required=True)
    problems = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Configured routing not in force, and why"},
    )
    versions = fields.List(fields.Nested(VersionDetail), required=True)
    error = fields.String()


class ModelInfo(Schema):
    """The default model's served version and metadata."""

    name = fields.String(required=True)
    version = fields.String(required=True)
    metadata = fields.Dict(required=True)


class Live(Schema):
    """The process answers."""

    status = fields.String(required=True)
    live = fields.Boolean(required=True)


class Ready(Schema):
    """Readiness, each model's default version, and the reasons when not ready."""

    status = fields.String(required=True)
    ready = fields.Boolean(required=True)
    models = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), required=True)
    reasons = fields.List(fields.String())


_PREDICT_ERRORS = failures(400, 404, 413, 415, 422, 429, 503, 504)
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_ONE_OR_BATCH = {"oneOf": [SinglePrediction, BatchPrediction]}
OPERATIONS = {
    "predict.predict": operation(
        "Predict one row (`features`), a batch (`instances`) or entities by id (`entities`)",
        "predict",
        {**answer("A prediction, or one per row", json_content(_ONE_OR_BATCH)), **_PREDICT_ERRORS},
        body=json_content({"oneOf": [PredictRequest, EntitiesRequest]}, {"features": IRIS_ROWS[0]}),
    ),
    "predict.predict_batch": operation(
        "Predict a batch of rows (`instances`) or entities by id (`entities`)",
        "predict",
        {**answer("One prediction per row", json_content(BatchPrediction)), **_PREDICT_ERRORS},
        body=json_content(
            {"oneOf": [BatchPredictRequest, EntitiesRequest]}, {"instances": IRIS_ROWS}
        ),
    ),
    "models.list_models": operation(
        "Every model with its versions", "models", answer("Models", json_content(ModelList))
    ),
    "models.show_model": operation(
        "One model's versions and metadata",
        "models",
        {**answer("Model", json_content(ModelDetail)), **failures(404)},
    ),
    "models.default_model_info": operation(
        "The default model's served version",
        "models",
        {**answer("Model", json_content(ModelInfo)), **failures(404, 503)},
    ),
    "health.live": operation("Liveness", "health", answer("Live", json_content(Live))),
    "health.ready": operation(
        "Readiness",
        "health",
        {
            **answer("Every model's default version is loaded", json_content(Ready)),
            **answer("Some model cannot serve; reasons listed", json_content(Ready), 503),
        },
    ),
    # prometheus-flask-exporter's endpoint name for /metrics.
    "prometheus_metrics": operation(
        "Prometheus metrics (all workers)",
        "metrics",
        {**answer("Exposition format", _TEXT), **failures(401)},
    ),
    "openapi.document": operation(
        "This OpenAPI document", "docs", answer("OpenAPI 3", json_content({"type": "object"}))
    ),
    "swagger_ui.show": operation(
        "Swagger UI and its assets (served by the app, no internet needed)",
        "docs",
        {
            **answer("Page or asset", {"*/*": {"schema": {"type": "string", "format": "binary"}}}),
            **failures(404),
        },
    ),
}
