"""Read what is left of a request body before answering, so the client gets the answer.

A route may answer before reading the body: 401 without a key, 404 for an unknown model, an
error found in the first part of a compressed body. Gunicorn's sync worker then closes the
connection with the rest of the body unread in the socket, and the kernel turns that close into
a reset, which can destroy the answer before the client (or nginx, which then says 502) reads it.
`drain` reads and drops the rest, up to the largest body the route would accept.
A body declared larger than that is not read: the 413 is sent and the reset accepted, so a
client cannot make a worker read more than an accepted request could. ml_app.web.request_body
calls it, after the app has answered.

`CheckedInput` stands in for the server's body stream, for the app and the drain alike: a body
that breaks off in the middle (a malformed chunk, a connection reset) fails the read with a
400 in the one JSON shape instead of whatever the server raised, which would be a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

from ml_app.core.errors import ApiError, BadRequest

_STEP = 64 * 1024


class CheckedInput:
    """The server's body stream, its failures in the middle of a body turned into a 400."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        """Read as the server's stream does."""
        return self._checked(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        """Read a line as the server's stream does."""
        return self._checked(self._stream.readline, size)

    @staticmethod
    def _checked(read: Callable[[int | None], bytes], size: int | None) -> bytes:
        # A reset or a malformed chunk (Gunicorn's ParseException); a client too slow is
        # already an answer (RequestTimeout, 408) and passes through.
        try:
            return read(size)
        except (ParseException, OSError, ValueError) as exc:
            raise _malformed(exc) from None


def _malformed(exc: Exception) -> BadRequest:
    return BadRequest(f"The request body is malformed: {exc}.")


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
    except (ApiError, ClientDisconnected, OSError, ValueError):
        pass  # the client is gone, too slow, or sent a malformed chunk: nothing left to protect
