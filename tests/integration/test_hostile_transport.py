"""Hostile clients at the transport level against real Gunicorn (2 workers): malformed request
lines and headers, bodies that break off, clients that stall. Every answer is the one JSON error
shape with a fitting status, never HTML, a reset, a hang or a dead worker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.hostile import (
    ADMIN_TOKEN,
    ROW,
    access_line,
    assert_error_shape,
    hostile_gunicorn,
)
from tests.support.raw_http import exchange, request_bytes
from tests.support.server import GunicornServer

WORKER_TIMEOUT = 6  # GUNICORN_TIMEOUT: a request must arrive within a third of it
DEADLINE = WORKER_TIMEOUT / 3
JSON = "Content-Type: application/json"


@pytest.fixture(scope="module")
def server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """A short worker timeout, so a short read deadline."""
    folder = tmp_path_factory.mktemp("hostile-transport")
    with hostile_gunicorn(demo_store, folder, GUNICORN_TIMEOUT=str(WORKER_TIMEOUT)) as running:
        yield running


# Requests Gunicorn refuses before the app sees them: (request bytes, status, code).
MALFORMED_REQUESTS = {
    "garbage request line": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "lower-case method": (request_bytes("get", "/health"), 400, "bad_request"),
    "HTTP/2.0 in plain text": (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "non-UTF-8 bytes in the path": (
        b"GET /models/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "bad_request",
    ),
    "bare LF line ends": (b"GET /health HTTP/1.1\nHost: x\n\n", 400, "bad_request"),
    "9 KiB path": (request_bytes("GET", "/" + "a" * 9000), 414, "uri_too_long"),
    "5 KiB query string": (request_bytes("GET", "/health?" + "a=1&" * 1200), 414, "uri_too_long"),
    "header line over 8 KiB": (
        request_bytes("GET", "/health", "X-Big: " + "a" * 9000),
        431,
        "request_header_fields_too_large",
    ),
    "10 KiB X-Request-ID": (
        request_bytes("GET", "/health", "X-Request-ID: " + "a" * 10240),
        431,
        "request_header_fields_too_large",
    ),
    "150 headers": (
        request_bytes("GET", "/health", *(f"X-H{i}: 1" for i in range(150))),
        431,
        "request_header_fields_too_large",
    ),
    "header name with a space": (
        request_bytes("GET", "/health", "Bad Header: 1"),
        400,
        "bad_request",
    ),
    "control byte in X-Routing-Key": (
        request_bytes("POST", "/predict", JSON, "X-Routing-Key: \x01\x01", body=ROW),
        400,
        "bad_request",
    ),
    "CR inside X-Request-ID": (
        request_bytes("GET", "/health", "X-Request-ID: a\rb"),
        400,
        "bad_request",
    ),
    "folded header line": (
        request_bytes("GET", "/health", "X-A: a", " b"),
        400,
        "bad_request",
    ),
    "Content-Length not a number": (
        request_bytes("POST", "/predict", JSON, "Content-Length: abc", body=ROW),
        400,
        "bad_request",
    ),
    "two different Content-Lengths": (
        request_bytes("POST", "/predict", JSON, "Content-Length: 5", "Content-Length: 34"),
        400,
        "bad_request",
    ),
    "chunked and Content-Length": (
        request_bytes(
            "POST",
            "/predict",
            JSON,
            "Transfer-Encoding: chunked",
            "Content-Length: 5",
            body=b"22\r\n" + ROW + b"\r\n0\r\n\r\n",
        ),
        400,
        "bad_request",
    ),
    "unknown transfer coding": (
        request_bytes("POST", "/predict", JSON, "Transfer-Encoding: foo, chunked"),
        501,
        "not_implemented",
    ),
    "Expect that is not 100-continue": (
        request_bytes("POST", "/predict", JSON, "Expect: teapot", f"Content-Length: {len(ROW)}"),
        417,
        "expectation_failed",
    ),
}


@pytest.mark.parametrize("name", MALFORMED_REQUESTS)
def test_requests_gunicorn_refuses_get_the_one_shape_and_an_access_line(server, name):
    data, status, code = MALFORMED_REQUESTS[name]
    answer = exchange(server.port, data)
    body = assert_error_shape(answer, status, code)
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert body["error"].startswith("Malformed request: ")
    line = access_line(server, body["request_id"])
    assert (line["status"], line["error_code"], line["client"]) == (status, code, "127.0.0.1")


def test_a_malformed_request_keeps_the_callers_request_id(server):
    data = request_bytes("POST", "/predict", "X-Request-ID: probe-7", "Content-Length: -1")
    body = assert_error_shape(exchange(server.port, data), 400, "bad_request")
    assert body["request_id"] == "probe-7"
    line = access_line(server, "probe-7")
    assert (line["method"], line["path"], line["status"]) == ("POST", "/predict", 400)


def _chunked(path: str, chunks: bytes, *headers: str) -> bytes:
    return request_bytes("POST", path, JSON, "Transfer-Encoding: chunked", *headers, body=chunks)


# Chunked bodies that break off in the middle: Gunicorn finds the fault while the app reads.
BAD_CHUNKS = {
    "chunk size not hex": b"zz\r\n" + ROW + b"\r\n0\r\n\r\n",
    "chunk longer than its size": b"4\r\n" + ROW + b"\r\n0\r\n\r\n",
    "chunk extension with a bare CR": b"22;a=\rb\r\n" + ROW + b"\r\n0\r\n\r\n",
}
BODY_ROUTES = {
    "/predict": [],
    "/v2/models/iris/infer": [],
    "/invocations": [],
    "/graphql": [],
    "/feedback": [],
    "/admin/models/iris/split": [f"Authorization: Bearer {ADMIN_TOKEN}"],
}


@pytest.mark.parametrize("fault", BAD_CHUNKS)
@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_malformed_chunked_body_is_a_400_on_every_body_route(server, path, fault):
    method = "PUT" if path.startswith("/admin/") else "POST"
    data = _chunked(path, BAD_CHUNKS[fault], *BODY_ROUTES[path]).replace(b"POST", method.encode())
    answer = exchange(server.port, data)
    assert answer.status == 400, answer.body
    body = answer.json()
    if path == "/graphql":  # GraphQL wraps the one shape in `errors[].extensions`
        (error,) = body["errors"]
        body = {"error": error["message"], **error["extensions"]}
    if path == "/invocations":  # MLflow's own shape
        assert body["error_code"] == "BAD_REQUEST"
        assert body["message"].startswith("The request body is malformed: ")
        return
    assert (body["code"], body["status"]) == ("bad_request", 400)
    assert body["error"].startswith("The request body is malformed: ")
    assert access_line(server, answer.headers["x-request-id"])["status"] == 400


# Clients that start a request and stall or trickle: (parts sent, seconds between them).
STALLS = {
    "headers, then nothing": ([b"POST /predict HTTP/1.1\r\nHost: x\r\n"], 0.0),
    "half a body, then nothing": (
        [request_bytes("POST", "/predict", JSON, "Content-Length: 100", body=ROW[:10])],
        0.0,
    ),
    "chunked body, no last chunk": (
        [_chunked("/v2/models/iris/infer", b"22\r\n" + ROW + b"\r\n")],
        0.0,
    ),
    "a byte of the head every half second": (
        [bytes([byte]) for byte in request_bytes("GET", "/health", "X-Pad: " + "a" * 40)],
        0.5,
    ),
    "a byte of the body every half second": (
        [request_bytes("POST", "/feedback", JSON, "Content-Length: 60")] + [b" "] * 60,
        0.5,
    ),
}


@pytest.mark.parametrize("name", STALLS)
def test_a_stalled_client_gets_a_408_in_time_and_every_worker_lives(server, name):
    parts, pause = STALLS[name]
    workers = server.worker_pids()
    # One stalled client more than there are workers: none of them may cost a worker.
    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda _: exchange(server.port, *parts, pause=pause), range(3)))
    for answer in answers:
        body = assert_error_shape(answer, 408, "request_timeout")
        assert body["error"] == f"The request did not arrive within {DEADLINE:g} seconds."
        assert access_line(server, body["request_id"])["status"] == 408
    # Two at once, then the third: each within its deadline, far from the worker timeout.
    assert max(a.seconds for a in answers) < 2 * DEADLINE + 1.5 < WORKER_TIMEOUT
    assert server.worker_pids() == workers
    ok = requests.post(
        server.url + "/predict", data=ROW, headers={"Content-Type": "application/json"}
    )
    assert ok.json()["prediction"] == "setosa"
