"""Read what is left of a request body before answering, so the client gets the answer.

A route may answer before reading the body: 401 without a key, 404 for an unknown model, an
error found in the first part of a compressed body. Gunicorn's sync worker then closes the
connection with the rest of the body unread in the socket, and the kernel turns that close into
a reset, which can destroy the answer before the client (or nginx, which then says 502) reads it.
`drain` reads and drops the rest, up to the largest body the route would accept.
A body declared larger than that is not read: the 413 is sent and the reset accepted, so a
client cannot make a worker read more than an accepted request could. ml_app.web.request_body
calls it, after the app has answered.
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import ClientDisconnected

_STEP = 64 * 1024


def has_body(environ: dict[str, Any]) -> bool:
    """Whether the request says it sends a body (a length above 0, or chunked)."""
    return environ.get("CONTENT_LENGTH", "0") not in ("", "0") or "chunked" in environ.get(
        "HTTP_TRANSFER_ENCODING", ""
    )


def drain(stream: Any, limit: int) -> None:
    """Read and drop what is left of a body, up to `limit` bytes."""
    left = limit
    try:
        while left > 0 and (chunk := stream.read(min(_STEP, left))):
            left -= len(chunk)
    except (ClientDisconnected, OSError, ValueError):
        pass  # the client is gone, or sent a malformed chunk: nothing is left to protect
