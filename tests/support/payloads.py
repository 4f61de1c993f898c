"""Payload log segments written as a server's workers write them, and an HTTP sink to ship to."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.support.server import PROJECT_ROOT, clean_environment

HOSTNAME = "test-host"


def inference_event(
    request_id: str,
    model: str,
    version: str,
    rows: Sequence[Sequence[float]] | None,
    predictions: Sequence[Any] | None,
    feature_names: Sequence[str] = (),
    status: int = 200,
) -> dict[str, Any]:
    """An `ml_app.inference` event in the payload log contract's form."""
    answered = predictions is not None
    return {
        "specversion": "1.0",
        "id": request_id,
        "source": f"/ml_app/{HOSTNAME}",
        "type": "ml_app.inference",
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "subject": model,
        "data": {
            "model": model,
            "version": version,
            "arm": None,
            "shadow": None,
            "key_id": None,
            "route": "/models/<name>/predict",
            "status": status,
            "latency_ms": 1.5,
            "inputs": None
            if rows is None
            else {"feature_names": list(feature_names), "rows": [list(r) for r in rows]},
            "outputs": {"predictions": list(predictions), "probabilities": None}
            if answered
            else None,
            "error": None if answered else {"code": "invalid_input", "error": "bad rows"},
            "truncated": None,
        },
    }


def feedback_event(request_id: str, model: str, truth: Any) -> dict[str, Any]:
    """An `ml_app.feedback` event for one request's truth (a value, or a list per row)."""
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": f"/ml_app/{HOSTNAME}",
        "type": "ml_app.feedback",
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "subject": model,
        "data": {"request_id": request_id, "model": model, "truth": truth},
    }


def write_segment(directory: Path, events: Iterable[dict[str, Any]], pid: int = 100) -> Path:
    """Write events as one worker would: appended to an open segment, then closed by rename."""
    start = time.time_ns()
    name = f"{HOSTNAME}-{pid}-{start}"
    open_path = directory / f"{name}.open"
    descriptor = os.open(open_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for event in events:
            os.write(descriptor, orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    finally:
        os.close(descriptor)
    closed = directory / f"{name}.jsonl"
    os.rename(open_path, closed)
    return closed


def segment_ids(path: Path) -> list[str]:
    """The event ids in a segment file, in order."""
    return [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]


class CollectingSink:
    """A real HTTP server on 127.0.0.1 that answers 503 for `refuse_for` seconds after the first
    request, then 200, and keeps every request it answered 200 (headers, body) in order."""

    def __init__(self, refuse_for: float = 0.0) -> None:
        self.refuse_for = refuse_for
        self.first_request: float | None = None
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        self.refused_at: list[float] = []  # time.monotonic() of each refusal
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the shipper's pool expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = sink.answer(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        """503 while refusing, else 200 and the event is kept."""
        with self.lock:
            now = time.monotonic()
            if self.first_request is None:
                self.first_request = now
            if now - self.first_request < self.refuse_for:
                self.refused += 1
                self.refused_at.append(now)
                return 503
            self.accepted.append((headers, body))
            return 200

    def accepted_ids(self) -> list[str]:
        """Ce-Id of every acknowledged event, in arrival order."""
        with self.lock:
            return [headers["Ce-Id"] for headers, _ in self.accepted]

    def __enter__(self) -> CollectingSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class ShipperProcess:
    """`python -m ml_app payloads ship` in a process of its own; its JSON log goes to a file."""

    def __init__(self, directory: Path, sink_url: str, log_path: Path, *args: str) -> None:
        self.command = [sys.executable, "-m", "ml_app", "payloads", "ship"]
        self.command += ["--dir", str(directory), "--sink", sink_url, *args]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ShipperProcess:
        """Start it (returns at once)."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT_ROOT,
                env=clean_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait for it to exit; its exit status."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout)

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON lines it wrote."""
        lines = self.log_path.read_bytes().splitlines()
        return [orjson.loads(line) for line in lines if line.startswith(b"{")]

    def __enter__(self) -> ShipperProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class PredictionTraffic:
    """Threads posting iris predictions (one row, two rows, and a refused one), each with a fresh
    X-Request-ID; keeps every id sent, the answers by id, and the ids whose connection failed."""

    BODIES = (
        ("/predict", {"features": [5.1, 3.5, 1.4, 0.2]}),
        ("/models/iris/predict/batch", {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}),
        ("/predict", {"features": [1.0, 2.0]}),  # refused: 422, and logged too
    )

    def __init__(self, url: str, total: int, threads: int = 8) -> None:
        self.url = url
        self.total = total
        self.answers: dict[str, tuple[int, str | None]] = {}  # id -> status, X-Model-Version
        self.failed: set[str] = set()
        self._numbers = iter(range(total))
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def start(self) -> PredictionTraffic:
        """Start sending (returns at once)."""
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        """Wait for every request to be answered or failed."""
        for thread in self.threads:
            thread.join(timeout)
        assert not any(thread.is_alive() for thread in self.threads)

    def _next(self) -> int | None:
        with self._lock:
            return next(self._numbers, None)

    def _send(self) -> None:
        import requests  # the test client, not the shipper's

        with requests.Session() as session:
            while (number := self._next()) is not None:
                path, body = self.BODIES[number % len(self.BODIES)]
                request_id = uuid.uuid4().hex
                try:
                    response = session.post(
                        self.url + path, json=body, headers={"X-Request-ID": request_id}, timeout=20
                    )
                # a SIGKILLed worker's connection: refused, reset, or cut mid-answer
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                    with self._lock:
                        self.failed.add(request_id)
                    continue
                with self._lock:
                    self.answers[request_id] = (
                        response.status_code,
                        response.headers.get("X-Model-Version"),
                    )
