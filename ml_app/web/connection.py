"""A client connection in a Gunicorn worker, around the app: a deadline on reading the request,
and the answers Gunicorn gives without the app (a malformed request line or header, a line or
header block over its limit, a malformed chunked body, a client too slow) in the one JSON shape.

A sync worker serves one connection at a time and blocks while reading it; the master kills a
worker that has not checked in for GUNICORN_TIMEOUT seconds. Without a deadline, a client that
sends its headers (or part of its body) and stalls holds the worker until it is killed, and a
few such clients take the whole server down. `ReadDeadlineSocket` bounds the time the request
may take to arrive (a third of the worker timeout): past it, the client gets a 408.
"""

from __future__ import annotations

import http
import logging
import time
from typing import Any

import orjson
from gunicorn import util
from gunicorn.http import errors as parse_errors

from ml_app.core.errors import ApiError, RequestTimeout, clipped
from ml_app.core.logformat import encodable, log_access

# Not ml_app.web.context: gunicorn.conf.py imports this module before the metrics directory
# exists, and the context's imports define the metrics.
from ml_app.core.payload_events import REQUEST_ID_HEADER, request_id_from

log = logging.getLogger("ml_app.errors")

# Gunicorn's parse errors by the answer they get; the first match wins (subclasses first).
# A response header the app made is the app's fault, not the client's.
_PARSE_ERRORS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str], ...] = (
    (
        (parse_errors.InvalidResponseHeader, parse_errors.InvalidResponseHeaderName),
        500,
        "internal_error",
    ),
    (parse_errors.ConfigurationProblem, 500, "internal_error"),
    (parse_errors.LimitRequestLine, 414, "uri_too_long"),
    (parse_errors.LimitRequestHeaders, 431, "request_header_fields_too_large"),
    (parse_errors.ExpectationFailed, 417, "expectation_failed"),
    (parse_errors.UnsupportedTransferCoding, 501, "not_implemented"),
    (parse_errors.ForbiddenProxyRequest, 403, "forbidden"),
    (parse_errors.ParseException, 400, "bad_request"),
)


def read_deadline(worker_timeout: float) -> float | None:
    """Seconds a request may take to arrive: a third of the worker timeout (none without one)."""
    return worker_timeout / 3 if worker_timeout > 0 else None


class ReadDeadlineSocket:
    """A client socket whose reads must be done by a deadline; sends wait `seconds` at most.

    A read past the deadline raises RequestTimeout (408), which Gunicorn hands to the worker's
    `handle_error` while it reads the request head, and the app renders while it reads the body.
    A read may wait at most half again the time left, so the request is cut off by 1.5 times
    `seconds`; a request that arrives in time changes the socket's timeout once, at the start.
    Once Gunicorn starts closing (shutdown), reads are its own lingering close: no deadline.
    """

    def __init__(self, sock: Any, seconds: float) -> None:
        self._sock = sock
        self._seconds = self._wait = seconds
        self._deadline: float | None = time.monotonic() + seconds
        sock.settimeout(seconds)

    def recv(self, size: int, *flags: int) -> bytes:
        """Read as the socket does, but fail with RequestTimeout past the deadline."""
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout()
            if remaining < self._wait / 2:  # a slow request: waits shrink as the deadline nears
                self._wait = remaining
                self._sock.settimeout(remaining)
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            if self._deadline is None:
                raise
            raise self._timeout() from None

    def shutdown(self, how: int) -> None:
        """Start closing; Gunicorn's lingering close reads with its own timeout from here."""
        self._deadline = None
        self._sock.shutdown(how)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def _timeout(self) -> RequestTimeout:
        return RequestTimeout(f"The request did not arrive within {self._seconds:g} seconds.")


def error_status(exc: BaseException) -> tuple[int, str]:
    """The status and error code of an error Gunicorn meets outside the app."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    for kinds, status, code in _PARSE_ERRORS:
        if isinstance(exc, kinds):
            return status, code
    return 500, "internal_error"


def answer_error(client: Any, req: Any, exc: BaseException, started: float) -> None:
    """Write the one JSON error shape for `exc` to the client, and the request's access line."""
    req = req or getattr(exc, "req", None)  # a bad header: Gunicorn keeps what it had read
    status, code = error_status(exc)
    message = "Internal server error." if status == 500 else clipped(_message(exc))
    request_id = request_id_from(_header(req, REQUEST_ID_HEADER.upper()))
    if status == 500:
        log.error("error outside the app", exc_info=exc, extra={"request_id": request_id})
    body = {"error": message, "code": code, "status": status, "request_id": request_id}
    data = orjson.dumps(encodable({**body, "details": {}}))
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        f"{REQUEST_ID_HEADER}: {request_id}\r\n\r\n"
    )
    fields = {
        "method": getattr(req, "method", None),
        "route": None,
        "path": getattr(req, "path", None),
        "status": status,
        "client": _client_address(client),
        "error_code": code,
    }
    log_access(request_id, started, encodable(fields))
    try:
        util.write_nonblock(client, head.encode("latin-1") + data)
    except OSError:
        pass  # the client is gone: nobody is left to answer


def _message(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return f"Malformed request: {exc}."


def _header(req: Any, name: str) -> str:
    for key, value in getattr(req, "headers", None) or ():
        if key == name:
            return value
    return ""


def _client_address(client: Any) -> str | None:
    try:
        peer = client.getpeername()
    except OSError:
        return None
    return peer[0] if isinstance(peer, tuple) else None
