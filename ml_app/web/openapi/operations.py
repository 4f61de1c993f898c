"""How routes describe themselves for the OpenAPI document: one dict per endpoint."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

# What each error status means, worded for every route that can answer it.
ERROR_MEANINGS = {
    400: "Malformed request: not JSON, not the expected object, or (protocols) invalid input",
    401: "ML_APP_METRICS_TOKEN is set and the bearer token is missing or wrong",
    403: "The API key is valid but may not call this model (its `models` list)",
    404: "No such model, version, alias or route",
    413: "Body (compressed or decoded) larger than ML_APP_MAX_BODY_BYTES (under /admin/: "
    "ML_APP_ADMIN_MAX_UPLOAD_BYTES), or more rows than ML_APP_MAX_BATCH_ROWS",
    415: "Content-Type not accepted by this route, or a Content-Encoding other than gzip or "
    "deflate",
    422: "Valid JSON that fails validation (feature count, names, types, finiteness), or an "
    "entity or feature the version's feature source does not have",
    429: "The client's rate limit (its API key's own, else ML_APP_RATE_LIMIT) is used up: "
    "Retry-After says when to try again",
    503: "The model's artifact failed to load, the server is not ready, (fail closed) the "
    "rate-limit store is unreachable, or the version's feature source is unavailable",
    504: "The version's feature source did not answer within ML_APP_FEATURE_STORE_TIMEOUT",
}


# With ML_APP_API_KEYS_FILE set, a key goes in either header (ml_app.web.auth).
SECURITY_SCHEMES = {
    "apiKeyBearer": {"type": "http", "scheme": "bearer", "description": "API key as a bearer"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    # For clients that can only send Basic auth (MLflow's scoring client through netrc, curl -u).
    "apiKeyBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "API key as the Basic password (the user name is not checked)",
    },
}
# An operation that answers errors in its own body, refusals of a model included (GraphQL: a
# model the key may not call is an error inside a 200): the content of its 401, and no 403.
OWN_ERROR_BODY = "x-error-body"
# Headers of every answer whose rows were charged to a rate limit (ml_app.web.rate_limits).
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Rows the client may predict in the current window",
    "X-RateLimit-Remaining": "Rows left in the current window",
    "X-RateLimit-Reset": "When the current window ends (Unix time, seconds)",
}
RETRY_AFTER = "Seconds until the window ends and the client may predict again"
MISSING_KEY = "No API key, or one that is not in ML_APP_API_KEYS_FILE (WWW-Authenticate says how)"


class ErrorBody(Schema):
    """The one error shape of every native route (its `error` member also satisfies V2 and V1)."""

    error = fields.String(required=True, metadata={"description": "Human-readable message"})
    code = fields.String(required=True, metadata={"example": "invalid_input"})
    status = fields.Integer(required=True)
    request_id = fields.String(allow_none=True, metadata={"description": "Also in X-Request-ID"})
    details = fields.Dict(
        required=True,
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Messages by field path, e.g. features.3"},
    )


IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def json_content(schema: Any, example: Any = None) -> dict[str, Any]:
    """A content map with one JSON schema and, for request bodies, an example (the demo iris)."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


def answer(description: str, content: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """One documented answer: {"200": {description, content}}."""
    return {str(status): {"description": description, "content": content}}


def failures(*statuses: int, schema: Any = ErrorBody) -> dict[str, Any]:
    """The error answers a route can give, each in the route's error shape."""
    return {
        str(status): {"description": ERROR_MEANINGS[status], "content": json_content(schema)}
        for status in statuses
    }


def operation(
    summary: str,
    tag: str,
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An OpenAPI operation: its answers (see answer/failures) and, for POSTs, its body."""
    described: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses, **extra}
    if body is not None:
        described["requestBody"] = {"required": True, "content": body}
    return described
