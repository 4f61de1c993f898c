"""The one JSON response builder: orjson bytes (numpy-aware) with a status."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from ml_app.web.json_provider import dump_bytes

JSON_MIMETYPE = "application/json"


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response rendered by orjson, numpy values included."""
    return current_app.response_class(dump_bytes(body), status, content_type=JSON_MIMETYPE)
