"""SIGTERM on real Gunicorn: readiness says 503 first, then new connections are refused
promptly, in-flight requests finish, and the server exits 0. No request ever hangs, and none
is reset once its connection was accepted. Each step waits for what it needs (a worker holding
the slow request, readiness turned 503, refusals), never for a fixed time: on a loaded machine
any of them can take longer."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import orjson
import requests

from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer

DRAIN_SECONDS = 2.0
BODY = orjson.dumps({"features": IRIS_SETOSA})
SLOW_ID = "slow-request"  # X-Request-ID of the request held in flight across the SIGTERM


def _request(port: int, timeout: float = 5.0) -> str:
    """One POST /predict on a new connection: 'ok', 'refused' (at connect), or what went wrong."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    with conn:
        try:
            conn.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY)
            )
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        except TimeoutError:
            return "hung"
        except OSError as exc:
            return f"reset after accept ({exc.__class__.__name__})"
    if answer.startswith(b"HTTP/1.1 200") and b'"prediction":"setosa"' in answer:
        return "ok"
    return f"bad answer {answer[:60]!r}"


def _slow_request(port: int) -> socket.socket:
    """A request whose body is held back: it keeps one sync worker busy until it is sent."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (SLOW_ID.encode(), len(BODY), BODY[:5])
    )
    return conn


def test_sigterm_drains_without_hanging_or_resetting_anyone(demo_store: Path, tmp_path: Path):
    server = GunicornServer(
        demo_store,
        tmp_path / "server.log",
        workers=2,
        wait_for="/health/ready",
        GUNICORN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        GUNICORN_GRACEFUL_TIMEOUT="20",
    ).start()
    try:
        slow = _slow_request(server.port)
        # A connection waits in the listen queue until a worker accepts it (once accepted, it
        # has a socket inode): only then is it in flight, holding a worker, across the SIGTERM.
        wait_until(lambda: _accepted(server.port, slow), 30, "a worker to take the slow request")
        results: list[tuple[float, float, str]] = []  # (sent, finished, outcome)
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                outcome = _request(server.port)
                results.append((sent, time.monotonic(), outcome))
                time.sleep(0.01)

        client = threading.Thread(target=traffic)
        client.start()
        wait_until(lambda: any(o == "ok" for *_, o in results), 30, "the traffic to be served")
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        not_ready = wait_until(_not_ready(server.url), 30, "readiness to answer 503")
        assert not_ready["reasons"] == ["the server is shutting down (draining)"]

        def refused_a_while() -> bool:
            return sum(outcome == "refused" for *_, outcome in results) > 20

        wait_until(refused_a_while, 60, "new connections to be refused after the drain")
        stop.set()
        client.join(timeout=30)
        # the request in flight all along is still answered, after everything else
        slow.sendall(BODY[5:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        slow.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b'"prediction":"setosa"' in answer
        assert server.process.wait(timeout=25) == 0
    finally:
        server.stop()
    outcomes = [outcome for *_, outcome in results]
    assert set(outcomes) <= {"ok", "refused"}, [o for o in outcomes if o not in ("ok", "refused")]
    # served as usual once readiness said 503 (a balancer stops sending meanwhile): in the
    # server's own order of events, its log, not by the client's clock ...
    lines = [(e.get("route"), e.get("status"), e.get("request_id")) for e in server.log_entries()]
    first_not_ready = next(i for i, line in enumerate(lines) if line[:2] == ("/health/ready", 503))
    later = lines[first_not_ready + 1 :]
    assert any(line[:2] == ("/predict", 200) and line[2] != SLOW_ID for line in later)
    # ... refused only once the drain is over, never earlier
    refused = [finished - sigterm_at for _, finished, outcome in results if outcome == "refused"]
    assert min(refused) >= DRAIN_SECONDS, refused[:3]


def _not_ready(url: str):
    """A probe returning readiness's JSON body once it answers 503, else None."""

    def probe() -> dict | None:
        answer = requests.get(url + "/health/ready", timeout=5)
        return answer.json() if answer.status_code == 503 else None

    return probe


def _accepted(port: int, client: socket.socket) -> bool:
    """Whether a server process accepted `client`'s connection to `port` (it has an inode)."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) == (
            port,
            client_port,
        ):
            return inode != "0"
    return False


def test_a_prestop_drain_counts_towards_the_wait(demo_store: Path, tmp_path: Path):
    """With the marker made long enough ago (preStop), SIGTERM stops accepting at once."""
    marker = tmp_path / "draining"
    server = GunicornServer(
        demo_store,
        tmp_path / "server.log",
        workers=2,
        wait_for="/health/ready",
        GUNICORN_DRAIN_SECONDS="30",
        ML_APP_DRAIN_FILE=str(marker),
    ).start()
    try:
        marker.touch()
        assert requests.get(server.url + "/health/ready", timeout=5).status_code == 503
        assert _request(server.port) == "ok"  # still serving while balancers notice
        made = time.time() - 31  # as if a preStop hook had made it 31 s ago
        os.utime(marker, (made, made))
        server.process.send_signal(signal.SIGTERM)
        # waiting out the drain again would take 30 s
        assert server.process.wait(timeout=15) == 0
        assert _request(server.port) == "refused"
    finally:
        server.stop()
