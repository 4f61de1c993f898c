"""Reading a request's body as the JSON object a route expects."""

from __future__ import annotations

from typing import Any

from flask import request

from ml_app.core.errors import UnsupportedMediaType
from ml_app.core.validation import parse_json_object
from ml_app.web.responses import JSON_MIMETYPE


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415/400 when it is not one."""
    current = request._get_current_object()  # one proxy lookup, not one per attribute
    # The exact type most clients send is recognised without parsing the header.
    if current.environ.get("CONTENT_TYPE") != JSON_MIMETYPE and not current.is_json:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {current.mimetype or 'missing'}."
        )
    return parse_json_object(current.get_data(cache=False))
