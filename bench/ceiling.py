"""The ceiling: the least a WSGI app can do for a prediction request (parse the body, tiny reply).

Served by the same Gunicorn settings as ml_app, it measures what the server, the kernel and the
load generator cost on this machine; ml_app's figures are read as a fraction of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

_REPLY = b'{"prediction":"setosa"}'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_REPLY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read and parse the JSON body, answer a constant."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    json.loads(environ["wsgi.input"].read(length) or b"{}")
    start_response("200 OK", _HEADERS)
    return [_REPLY]
