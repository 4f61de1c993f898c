"""Compressed request bodies (`Content-Encoding: gzip` or `deflate`), decoded once for every route.

`decode_body` (called before the app runs by ml_app.web.request_body's middleware, which
works out the route's limit) only replaces `wsgi.input`; it never answers anything itself. The
body is inflated in bounded steps up to the route's body limit in decoded bytes
(`ML_APP_MAX_BODY_BYTES`; `ML_APP_ADMIN_MAX_UPLOAD_BYTES` under `/admin/`); within it, the
app reads the decoded body with its decoded `Content-Length`, so Werkzeug's own checks apply
as to any body. Otherwise `wsgi.input` becomes a stream that raises the reason when the
view reads it: 413 past the limit (a "zip bomb" costs at most the limit in memory), 415 for an
unknown coding, 400 for a corrupt or truncated stream; the one error renderer answers them.

Why not let Werkzeug's streaming limit (`LimitedStream(..., is_max=True)`) count the decoded
bytes: its `readall` stops at the limit and returns the truncated body without raising, so an
oversized body would reach the parser cut short (a 400 instead of the 413).
"""

from __future__ import annotations

import io
import zlib
from typing import Any

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream, get_content_length

from ml_app.core.errors import ApiError, BadRequest, UnsupportedMediaType

_COMPRESSED_STEP = 64 * 1024  # compressed bytes fed to the inflater per read
_DECODED_STEP = 64 * 1024  # decoded bytes made per read: the most a read can overshoot by
# zlib's window bits: gzip wrapper, zlib wrapper, or none (raw deflate).
_GZIP, _ZLIB, _RAW_DEFLATE = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


class InflatingStream(io.RawIOBase):
    """A readable stream of the decoded bytes of a gzip or deflate stream, inflated on demand."""

    def __init__(self, source: Any, coding: str) -> None:
        self._source = source
        self._coding = coding
        self._inflater: Any = None  # made from the first bytes (deflate: zlib-wrapped or raw)
        self._input = b""  # compressed bytes read from the source, not yet inflated
        self._finished = False

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` with at most its size of decoded bytes; 0 at the end of the body."""
        while not self._finished:
            decoded = self._inflate(len(buffer))
            if decoded:
                buffer[: len(decoded)] = decoded
                return len(decoded)
        return 0

    def _inflate(self, wanted: int) -> bytes:
        """At most `wanted` decoded bytes (maybe none yet), reading the source as needed."""
        exhausted = False
        if not self._input:
            self._input = self._source.read(_COMPRESSED_STEP)
            exhausted = not self._input
        if self._inflater is None:
            if exhausted:
                self._finished = True
                return b""
            self._inflater = zlib.decompressobj(self._window_bits(self._input))
        try:
            decoded = self._inflater.decompress(self._input, wanted)
        except zlib.error as exc:
            raise BadRequest(f"Request body is not valid {self._coding} data: {exc}.") from None
        self._input = self._inflater.unconsumed_tail
        if self._inflater.eof:
            self._end_member(self._inflater.unused_data)
        elif exhausted and not decoded:
            raise BadRequest(f"Request body ends before its {self._coding} stream does.")
        return decoded

    def _window_bits(self, first: bytes) -> int:
        if self._coding == "gzip":
            return _GZIP
        # RFC 9110's deflate is zlib-wrapped, but some clients send raw deflate: accept both.
        header = int.from_bytes(first[:2], "big")
        is_zlib = len(first) >= 2 and first[0] & 0x0F == 8 and header % 31 == 0
        return _ZLIB if is_zlib else _RAW_DEFLATE

    def _end_member(self, rest: bytes) -> None:
        """After one stream ends: gzip may hold more members; deflate holds one."""
        self._inflater, self._input = None, rest
        if self._coding == "gzip":
            return
        if rest:
            raise BadRequest("Request body has data after the end of its deflate stream.")
        self._finished = True


class RefusedStream(io.RawIOBase):
    """A body that cannot be read: reading it raises the error (inside the request)."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def readable(self) -> bool:
        """Readable, so that reading raises the error."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Raise the error the body is refused with."""
        raise self._error


def _codings(header: str) -> list[str] | None:
    """The codings applied, in order, without identity; None when one is not supported."""
    applied = [c.strip().lower() for c in header.split(",") if c.strip().lower() != "identity"]
    return None if any(c not in _CODINGS for c in applied) else [_CODINGS[c] for c in applied]


def decode_body(environ: dict[str, Any], limit: int | None) -> None:
    """Swap `wsgi.input` for the decoded body, or for a stream that raises why it cannot be."""
    header = environ["HTTP_CONTENT_ENCODING"]
    codings = _codings(header)
    length = get_content_length(environ)
    if codings is None:
        message = f"Content-Encoding {header!r} is not supported; send gzip or deflate."
        environ["wsgi.input"] = RefusedStream(UnsupportedMediaType(message))
        return
    if not codings or (length is not None and limit is not None and length > limit):
        return  # identity; or too large even compressed: Werkzeug answers 413 as usual
    if length is None and not environ.get("wsgi.input_terminated"):
        return  # no length and a server that does not end the stream: Werkzeug reads nothing
    source = environ["wsgi.input"]
    if length is not None:
        source = LimitedStream(source, length)
    decoded: Any = source
    for coding in reversed(codings):  # the last coding applied is undone first
        decoded = InflatingStream(decoded, coding)
    try:
        body = _read_at_most(decoded, limit)
    except (ApiError, HTTPException) as exc:
        # (RequestBodies drains the rest of what was sent, so the client sees the answer.)
        # Without its traceback, which holds the decoded part and would live as long as the
        # request does.
        environ["wsgi.input"] = RefusedStream(exc.with_traceback(None))
        return
    del environ["HTTP_CONTENT_ENCODING"]  # what the app reads is the decoded body
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _read_at_most(stream: Any, limit: int | None) -> bytes:
    """The whole stream, read in bounded steps; 413 as soon as it passes `limit` bytes."""
    # Steps kept apart and joined once: a growing buffer would be copied as it grows, and a
    # refused body leaves only step-sized blocks behind, which the next request reuses.
    chunks, size = [], 0
    while chunk := stream.read(_DECODED_STEP):
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            raise RequestEntityTooLarge()
    return b"".join(chunks)
