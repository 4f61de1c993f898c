"""The one renderer that turns any failure into the JSON error shape, and its handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ml_app.core.errors import ApiError, clipped, clipped_details
from ml_app.web.context import request_context
from ml_app.web.responses import json_response

log = logging.getLogger("ml_app.errors")


# HTTP errors raised by Flask/Werkzeug itself (routing, methods, body limit), mapped to codes.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
# Blueprints whose protocol wraps the one error shape in its own (GraphQL's `errors`).
_ERROR_SHAPES_KEY = "ml_app.error_shapes"


def register_error_shape(
    app: Flask, blueprint: str, reshape: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Answer errors on a blueprint's routes as `reshape` wraps the one shape (hooks' too)."""
    app.extensions.setdefault(_ERROR_SHAPES_KEY, {})[blueprint] = reshape


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    """Render the one JSON error shape; the request id ties the body to the log line."""
    context = request_context()
    message = clipped(message)
    context.error_code, context.error_message = code, message
    body: dict[str, Any] = {
        "error": message,
        "code": code,
        "status": status,
        "request_id": context.request_id,
        # Always there, one shape for every error.
        "details": clipped_details(details) if details else {},
    }
    reshape = current_app.extensions.get(_ERROR_SHAPES_KEY, {}).get(request.blueprint)
    if reshape is not None:
        body = reshape(body)
    return json_response(body, status)


def unauthorized(message: str, realm: str) -> Response:
    """401 in the one shape, with the challenge a client needs to retry."""
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response


def _render_api_error(exc: ApiError) -> Response:
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    response.headers.update(exc.headers)
    return response


def validation_summary(exc: ValidationError) -> tuple[str, dict[str, list[str]]]:
    """A one-line message naming the first bad field, and every field's messages."""
    details = _flatten(exc.normalized_messages())
    first = next(iter(details.items()), ("body", ["Invalid input."]))
    return f"Invalid input: {first[0]}: {first[1][0]}", details


def render_validation_error(exc: ValidationError, status: int = 422) -> Response:
    """Validation failures in the one shape; protocols that say 400 for bad input pass it."""
    message, details = validation_summary(exc)
    return error_response(status, "invalid_input", message, details)


def _render_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 404:
        message = f"No route for {request.method} {request.path}."
    elif status == 405:
        message = f"{request.method} is not allowed here; use {', '.join(exc.valid_methods or [])}."
    elif status == 413:
        message = _body_limit_message()
    response = error_response(status, HTTP_CODES.get(status, "http_error"), message)
    if getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _body_limit_message() -> str:
    # The admin blueprint raises the limit for artifact uploads: name the one in force.
    limit = request.max_content_length
    setting = (
        "ML_APP_ADMIN_MAX_UPLOAD_BYTES" if request.blueprint == "admin" else "ML_APP_MAX_BODY_BYTES"
    )
    return f"Request body is larger than the {limit}-byte limit ({setting})."


def _render_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": request_context().request_id})
    return error_response(500, "internal_error", "Internal server error.")


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested {field: {index: [msg]}} into {"field.index": [msg]}."""
    if isinstance(messages, dict):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            path = str(key) if key != "_schema" else ""
            joined = f"{prefix}.{path}" if prefix and path else prefix or path
            flat.update(_flatten(value, joined))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "body": messages}
    return {prefix or "body": [str(messages)]}


def register_error_handlers(app: Flask) -> None:
    """Route every kind of failure through the one JSON renderer."""
    app.register_error_handler(ApiError, _render_api_error)
    app.register_error_handler(ValidationError, render_validation_error)
    app.register_error_handler(HTTPException, _render_http_error)
    app.register_error_handler(Exception, _render_unexpected)
