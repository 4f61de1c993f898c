"""Build the OpenAPI 3 document from the app's URL map and the marshmallow schemas.

apispec + its marshmallow plugin, rather than flask-smorest: the routes already exist as plain
Flask blueprints with their own parsing and error handling; flask-smorest would have them rewritten
around its own decorators and error shapes. apispec only describes: every rule of the URL map is
listed, described by its endpoint's entry in the operations tables (or flagged as undocumented).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import fields
from werkzeug.routing import Rule

from ml_app.core.tabular import SplitFrame, TabularRows
from ml_app.core.validation import FeatureRows
from ml_app.version import VERSION
from ml_app.web.auth import requires_api_key
from ml_app.web.openapi.operations import (
    ERROR_MEANINGS,
    MISSING_KEY,
    OWN_ERROR_BODY,
    RATE_LIMIT_HEADERS,
    RETRY_AFTER,
    SECURITY_SCHEMES,
    ErrorBody,
    json_content,
)
from ml_app.web.state import state_of

UNDOCUMENTED = "x-undocumented"
_SKIPPED_METHODS = {"HEAD", "OPTIONS"}
# Path parameter -> (description, example); the examples name the demo model.
_PATH_PARAMETERS = {
    "name": ("Model name", "iris"),
    "version": ("Version number or alias (e.g. production)", "1"),
    "path": ("File of the Swagger UI bundle", "swagger-ui.css"),
}
# Tags in the order the docs list them, each with what its routes are for.
TAGS = {
    "predict": "Native predictions: one row or a batch, for the default or a chosen model",
    "models": "What the store holds and what each version is",
    "health": "Liveness and readiness for load balancers and orchestrators",
    "Open Inference Protocol V2": "Triton / KServe V2 / MLServer REST, with binary tensor data",
    "KServe V1": "TensorFlow Serving style: instances in, predictions out",
    "MLflow": "MLflow's scoring server: /invocations serves the default model",
    "GraphQL": "One POST: models, model(name) and predict; errors carry the REST codes",
    "metrics": "Prometheus exposition",
    "docs": "This document and Swagger UI",
    "feedback": "Ground truth for earlier predictions, written to the payload log",
    "admin": "Store changes behind ML_APP_ADMIN_TOKEN (routes exist only when it is set)",
}
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_NUMBERS = {"type": "array", "items": {"type": "number"}, "example": [5.1, 3.5, 1.4, 0.2]}
_NAMED = {
    "type": "object",
    "additionalProperties": {"type": "number"},
    "example": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
}
_ROW = {"oneOf": [_NUMBERS, _NAMED]}
_ROWS = {"type": "array", "minItems": 1, "items": _ROW}
_COLUMNS = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "number"}},
}
_SPLIT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "columns": {"type": "array", "items": {"type": "string"}},
        "data": {"type": "array", "minItems": 1, "items": _NUMBERS},
        "index": {"type": "array", "items": {}},
    },
}


def _feature_rows_property(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """What the numpy-backed row fields accept, which apispec cannot infer from a custom field."""
    if isinstance(field, SplitFrame):
        return copy.deepcopy(_SPLIT)
    if isinstance(field, TabularRows):
        return {"oneOf": [copy.deepcopy(_ROWS), copy.deepcopy(_COLUMNS)]}
    if isinstance(field, FeatureRows):
        return copy.deepcopy(_ROW if field.single_row else _ROWS)
    return {}


def openapi_path(rule: Rule) -> str:
    """/models/<name>/versions/<version> -> /models/{name}/versions/{version}."""
    return _CONVERTER.sub(r"{\1}", rule.rule)


def build_document(app: Flask, operations: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI document of every route of the app."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="ml_app",
        version=VERSION,
        openapi_version="3.0.3",
        plugins=[plugin],
        info={
            "description": "scikit-learn model server: native, Open Inference V2, KServe V1, MLflow"
        },
    )
    plugin.converter.add_attribute_function(_feature_rows_property)
    for name, description in TAGS.items():
        spec.tag({"name": name, "description": description})
    state = state_of(app)
    keys_on = state is not None and state.api_keys is not None
    if keys_on:
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        described = operations.get(rule.endpoint) or _undocumented(app, rule)
        for method in sorted((rule.methods or set()) - _SKIPPED_METHODS):
            op = _for_rule(described, rule, method)
            keyed = keys_on and requires_api_key(rule.endpoint)
            _declare_shared_answers(op, method, described, keyed)
            paths.setdefault(openapi_path(rule), {})[method.lower()] = op
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path])
    return spec.to_dict()


def _for_rule(described: dict[str, Any], rule: Rule, method: str) -> dict[str, Any]:
    op = copy.deepcopy(described)
    op.pop(OWN_ERROR_BODY, None)  # read by _declare_api_key from the operation as described
    slug = re.sub(r"[^A-Za-z0-9]+", "_", openapi_path(rule)).strip("_") or "root"
    op["operationId"] = f"{method.lower()}_{slug}"
    path_parameters = [
        {
            "name": argument,
            "in": "path",
            "required": True,
            "description": _PATH_PARAMETERS.get(argument, (argument, ""))[0],
            "schema": {"type": "string"},
            "example": _PATH_PARAMETERS.get(argument, ("", "x"))[1],
        }
        for argument in _CONVERTER.findall(rule.rule)
    ]
    op["parameters"] = path_parameters + op.get("parameters", [])
    return op


def _declare_shared_answers(
    op: dict[str, Any], method: str, described: dict[str, Any], keyed: bool
) -> None:
    """What the pipeline answers for a route, beyond its view: key, body and rate refusals."""
    if keyed:
        _declare_api_key(op, method, described.get(OWN_ERROR_BODY))
    if "requestBody" in op:
        _declare_body_refusals(op["responses"])
    if "429" in op["responses"]:
        _declare_rate_limit_headers(op["responses"])


def _declare_api_key(
    op: dict[str, Any], method: str, own_error_body: dict[str, Any] | None = None
) -> None:
    """Either key header will do; without one 401, and (predictions) 403 for another model."""
    op["security"] = [{name: []} for name in SECURITY_SCHEMES]
    responses = op["responses"]
    responses["401"] = {
        "description": MISSING_KEY,
        "content": own_error_body or json_content(ErrorBody),
    }
    if (
        method == "POST" and own_error_body is None
    ):  # a prediction: the model it names may be outside the key's list
        # The route's own error body (MLflow's differs), as its other model errors use.
        content = responses.get("404", {}).get("content") or json_content(ErrorBody)
        responses["403"] = {"description": ERROR_MEANINGS[403], "content": content}


def _declare_body_refusals(responses: dict[str, Any]) -> None:
    """413 and 415, which any route with a body can answer, in the route's own error body.

    Every body is held to its route's limit and decoded (Content-Encoding) before its view runs
    (ml_app.web.request_body), so no operation may leave them out.
    """
    errors = [response for status, response in responses.items() if status.startswith("4")]
    content = errors[0]["content"] if errors else json_content(ErrorBody)
    for status in (413, 415):
        responses.setdefault(
            str(status),
            {"description": ERROR_MEANINGS[status], "content": copy.deepcopy(content)},
        )


def _declare_rate_limit_headers(responses: dict[str, Any]) -> None:
    """A rate-limited route's answers say what is left; its 429 also says when to retry."""
    headers = {
        name: {"description": description, "schema": {"type": "integer"}}
        for name, description in RATE_LIMIT_HEADERS.items()
    }
    for status, response in responses.items():
        if status.startswith("2"):
            response["headers"] = copy.deepcopy(headers)
    retry_after = {"description": RETRY_AFTER, "schema": {"type": "integer", "minimum": 1}}
    responses["429"]["headers"] = {"Retry-After": retry_after, **copy.deepcopy(headers)}


def _undocumented(app: Flask, rule: Rule) -> dict[str, Any]:
    """A route nobody described yet: listed all the same, and marked so a test can catch it."""
    view = app.view_functions[rule.endpoint]
    summary = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
    return {
        "summary": summary,
        "responses": {"default": {"description": "Not described yet"}},
        UNDOCUMENTED: True,
    }
