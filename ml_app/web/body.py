"""Reading a request's body as the JSON object a route expects."""

from __future__ import annotations

from typing import Any

from flask import Request, request

from ml_app.core.errors import UnsupportedMediaType
from ml_app.core.model import LoadedModel
from ml_app.core.validation import MatrixContext, parse_json_object
from ml_app.web.context import request_context
from ml_app.web.responses import JSON_MIMETYPE


def batch_limits(model: LoadedModel) -> MatrixContext:
    """The model and the row limit a prediction body is checked against."""
    return MatrixContext(model=model, max_rows=request_context().state.settings.max_batch_rows)


def read_json_object(limits: MatrixContext | None = None) -> dict[str, Any]:
    """The request body as a JSON object; 415/400 when it is not one.

    With the batch limits of the model that will predict, a body too large for any batch within
    them is refused (413) before it is parsed.
    """
    current = require_json()
    return parse_json_object(current.get_data(cache=False), limits)


def require_json() -> Request:
    """The current request, once its Content-Type is JSON; 415 otherwise."""
    current = request._get_current_object()  # one proxy lookup, not one per attribute
    # The exact type most clients send is recognised without parsing the header.
    if current.environ.get("CONTENT_TYPE") != JSON_MIMETYPE and not current.is_json:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {current.mimetype or 'missing'}."
        )
    return current
