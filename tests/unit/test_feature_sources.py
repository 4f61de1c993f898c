"""Feature source clients: Feast's answer format, stale connections, timeouts, one pool per pid."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from ml_app.core import feature_sources
from ml_app.core.errors import FeatureStoreTimeout, FeatureStoreUnavailable
from ml_app.core.feature_sources import FeastFeatureSource, RedisFeatureSource, source_from_url

TIMEOUT = 0.3
# Time a refused or timed-out call may take beyond the timeout itself on a busy machine.
SLACK = 0.5


class FakeFeast(BaseHTTPRequestHandler):
    """Answers /get-online-features like `feast serve`; closes after each answer when told."""

    protocol_version = "HTTP/1.1"
    requests: ClassVar[list[dict[str, Any]]] = []
    connections: ClassVar[set[int]] = set()
    status = 200
    close_after_answer = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        type(self).connections.add(self.client_address[1])
        (ids,) = body["entities"].values()
        names = [ref.split(":", 1)[1] for ref in body["features"]]
        results = [{"values": ids, "statuses": ["PRESENT"] * len(ids)}]
        for name in names:
            # Entity 1 has every feature; any other id is unknown (Feast: NOT_FOUND, null).
            values = [float(len(name)) if i == 1 else None for i in ids]
            statuses = ["PRESENT" if i == 1 else "NOT_FOUND" for i in ids]
            results.append({"values": values, "statuses": statuses})
        answer = json.dumps({"metadata": {"feature_names": ["id", *names]}, "results": results})
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())
        # Closed without saying so, like an idle keep-alive connection the server drops.
        self.close_connection = self.close_after_answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_feast() -> Iterator[str]:
    FakeFeast.requests, FakeFeast.connections = [], set()
    FakeFeast.status, FakeFeast.close_after_answer = 200, False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFeast)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"feast+http://127.0.0.1:{server.server_address[1]}/iris_view"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def test_feast_request_and_answer(fake_feast):
    with closing(FeastFeatureSource(fake_feast, TIMEOUT)) as source:
        values = source.fetch("iris", "id", [1, 2], ["sepal_length", "petal_width"])
    assert FakeFeast.requests == [
        {
            "entities": {"id": [1, 2]},
            "features": ["iris_view:sepal_length", "iris_view:petal_width"],
        }
    ]
    assert values == [[12.0, 11.0], [None, None]]


def test_feast_connection_is_kept_and_renewed_when_the_server_dropped_it(fake_feast):
    with closing(FeastFeatureSource(fake_feast, TIMEOUT)) as source:
        source.fetch("iris", "id", [1], ["sepal_length"])
        source.fetch("iris", "id", [1], ["sepal_length"])
        assert len(FakeFeast.connections) == 1  # kept alive
        FakeFeast.close_after_answer = True
        for _ in range(3):  # each call finds the previous connection closed by the server
            assert source.fetch("iris", "id", [1], ["sepal_length"]) == [[12.0]]
    assert len(FakeFeast.connections) == 3  # the first, then one per dropped connection


def test_feast_error_answer_is_unavailable(fake_feast):
    FakeFeast.status = 500
    with closing(FeastFeatureSource(fake_feast, TIMEOUT)) as source:
        with pytest.raises(FeatureStoreUnavailable, match="HTTP 500"):
            source.fetch("iris", "id", [1], ["sepal_length"])


@pytest.mark.parametrize("scheme", ["redis", "feast+http"])
def test_a_silent_source_times_out_within_the_timeout(silent_port, scheme):
    path = "/0" if scheme == "redis" else "/view"
    source = source_from_url(f"{scheme}://127.0.0.1:{silent_port}{path}", TIMEOUT, "features")
    started = time.monotonic()
    with pytest.raises(FeatureStoreTimeout):
        source.fetch("iris", "id", [1], ["sepal_length"])
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.parametrize("scheme", ["redis", "feast+http"])
def test_a_refusing_source_is_unavailable_at_once(silent_port, scheme):
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = "/0" if scheme == "redis" else "/view"
    source = source_from_url(f"{scheme}://127.0.0.1:{port}{path}", TIMEOUT, "features")
    started = time.monotonic()
    with pytest.raises(FeatureStoreUnavailable):
        source.fetch("iris", "id", [1], ["sepal_length"])
    assert time.monotonic() - started < TIMEOUT


def test_redis_client_is_made_again_in_a_forked_process(monkeypatch):
    source = RedisFeatureSource("redis://127.0.0.1:1/0", TIMEOUT, "features")
    first = source.client()
    assert source.client() is first
    monkeypatch.setattr(feature_sources.os, "getpid", lambda: -1)  # as a forked worker sees
    second = source.client()
    assert second is not first
    assert second.connection_pool is not first.connection_pool
    assert second.connection_pool.connection_kwargs["socket_timeout"] == TIMEOUT
    assert second.connection_pool.connection_kwargs["socket_connect_timeout"] == TIMEOUT


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="redis://"):
        source_from_url("http://127.0.0.1:1/view", TIMEOUT, "features")
