"""HTTP/1.1 over a bare socket: requests no client library would send, and their answers."""

from __future__ import annotations

import select
import socket
import time
from typing import Any, NamedTuple

import orjson


class RawAnswer(NamedTuple):
    """A parsed answer: status, headers (lower-case names), raw body, seconds it took."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)


def exchange(port: int, *parts: bytes, pause: float = 0.0, timeout: float = 10.0) -> RawAnswer:
    """Send `parts` (`pause` seconds apart) on a new connection; read the answer to the end.

    Sending stops once an answer is waiting: the server may answer before the request is whole.
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for index, part in enumerate(parts):
            if index and select.select([sock], [], [], pause)[0]:
                break
            sock.sendall(part)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return parse_answer(received, time.monotonic() - started)


def parse_answer(received: bytes, seconds: float) -> RawAnswer:
    """Split one HTTP/1.1 answer (Connection: close) into status, headers and body."""
    head, separator, body = received.partition(b"\r\n\r\n")
    assert separator, f"no complete answer: {received[:300]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split(" ")[1]), headers, body, seconds)


def request_bytes(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    """A request with `headers` ("Name: value") and `body`, asking to close after it."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
