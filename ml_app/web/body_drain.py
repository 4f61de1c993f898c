"""Read what is left of a request body before answering, so the client gets the answer.

A route may answer before reading the body: 401 without a key, 404 for an unknown model, an
error found in the first part of a compressed body. Gunicorn's sync worker then closes the
connection with the rest of the body unread in the socket, and the kernel turns that close into
a reset, which can destroy the answer before the client (or nginx, which then says 502) reads it.
`UnreadBodyDrain` reads and drops the rest, up to the largest body the route would accept.
A body declared larger than that is not read: the 413 is sent and the reset accepted, so a
client cannot make a worker read more than an accepted request could.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import get_content_length

_STEP = 64 * 1024


class UnreadBodyDrain:
    """WSGI middleware: after the app has answered, drop the unread rest of the request body."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], limit_for_path: Callable[[str], int]
    ) -> None:
        self.app = app
        self.limit_for_path = limit_for_path

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Call the app, then drain the body it left unread (the answer is not sent yet)."""
        source = environ.get("wsgi.input")  # the raw body, before any middleware swaps it
        answer = self.app(environ, start_response)
        if source is not None and _has_body(environ):
            limit = self.limit_for_path(environ.get("PATH_INFO", ""))
            length = get_content_length(environ)
            if length is None or length <= limit:
                drain(source, limit)
        return answer


def _has_body(environ: dict[str, Any]) -> bool:
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
