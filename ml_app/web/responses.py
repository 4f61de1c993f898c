"""The one JSON response builder: orjson bytes (numpy-aware) with a status."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from ml_app.core.logformat import encodable
from ml_app.web.json_provider import dump_bytes

JSON_MIMETYPE = "application/json"


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response rendered by orjson, numpy values included."""
    try:
        data = dump_bytes(body)
    except TypeError:
        # A string UTF-8 cannot hold (a lone surrogate) must not turn an answer into a 500:
        # parsers refuse such strings, and this keeps any other source from crashing the answer.
        data = dump_bytes(encodable(body))
    return current_app.response_class(data, status, content_type=JSON_MIMETYPE)
