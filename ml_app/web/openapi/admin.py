"""OpenAPI descriptions of the admin routes (present only when ML_APP_ADMIN_TOKEN is set)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from ml_app.web.openapi.operations import ErrorBody, answer, failures, json_content, operation

_TAG = "admin"
_UNAUTHORIZED = {
    "401": {
        "description": "The bearer token is missing or is not ML_APP_ADMIN_TOKEN",
        "content": json_content(ErrorBody),
    }
}
_STORE_VIEW = {
    "type": "object",
    "description": "What the store now says about the model: versions, aliases, split, shadow",
}


_ROUTING_VIEW = {
    "type": "object",
    "description": "The store view, and warnings when the versions compared run on different "
    "backends (ONNX Runtime against scikit-learn)",
    "required": ["warnings"],
    "properties": {"warnings": {"type": "array", "items": {"type": "string"}}},
}


class Backend(Schema):
    """What serves the version: ONNX Runtime (and its input dtype), or scikit-learn and why."""

    name = fields.String(required=True, metadata={"enum": ["onnx", "sklearn"]})
    input_dtype = fields.String(metadata={"description": "onnx: float32 or float64"})
    reason = fields.String(metadata={"description": "sklearn: why there is no ONNX model"})


class Registered(Schema):
    """A version written to the store."""

    name = fields.String(required=True)
    version = fields.String(required=True)
    sha256 = fields.String(required=True)
    backend = fields.Nested(Backend, required=True)


class Upload(Schema):
    """A multipart upload of a .skops artifact."""

    artifact = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    version = fields.String(metadata={"description": "Default: the next number"})
    alias = fields.String(metadata={"description": "Point this alias at the new version"})
    metadata = fields.String(metadata={"description": "JSON object merged into metadata.json"})


def _change(
    summary: str, body: dict[str, Any] | None = None, view: dict[str, Any] = _STORE_VIEW
) -> dict[str, Any]:
    responses = {
        **answer("The model as the store now has it", json_content(view)),
        **_UNAUTHORIZED,
        **failures(400, 404, 415, 422),
    }
    return operation(summary, _TAG, responses, body=body)


def _json(properties: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return json_content(schema, example)


OPERATIONS = {
    "admin.show": operation(
        "What the store says about a model (workers apply it on their next poll)",
        _TAG,
        {
            **answer("The model", json_content(_STORE_VIEW)),
            **_UNAUTHORIZED,
            **failures(404),
        },
    ),
    "admin.register": operation(
        "Register a .skops artifact as a new version",
        _TAG,
        {
            **answer("Registered", json_content(Registered), status=201),
            **_UNAUTHORIZED,
            **failures(400, 404, 413, 422, 503),
        },
        body={"multipart/form-data": {"schema": Upload}},
    ),
    "admin.set_alias": _change(
        "Point an alias at a version",
        _json({"version": {"type": "string"}}, {"version": "1"}),
    ),
    "admin.remove_alias": _change("Remove an alias"),
    "admin.set_split": _change(
        "Split unversioned traffic between versions by weight",
        _json(
            {"weights": {"type": "object", "additionalProperties": {"type": "number"}}},
            {"weights": {"1": 90, "2": 10}},
        ),
        _ROUTING_VIEW,
    ),
    "admin.clear_split": _change("Remove the traffic split", view=_ROUTING_VIEW),
    "admin.set_shadow": _change(
        "Send a copy of unversioned traffic to versions",
        _json({"versions": {"type": "array", "items": {"type": "string"}}}, {"versions": ["2"]}),
        _ROUTING_VIEW,
    ),
    "admin.clear_shadow": _change("Turn shadow traffic off", view=_ROUTING_VIEW),
}
