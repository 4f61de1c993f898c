"""Nothing answered is lost from the payload log, on real Gunicorn with 2 workers.

5,000 requests with unique X-Request-IDs from several threads, across every protocol; workers
recycle every few hundred requests; one worker is SIGKILLed mid-run; SIGTERM at the end. Then
no segment is left open, every line parses as a CloudEvent, and every answered request is there
exactly once with the status and version it was answered with.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import struct
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import orjson
import requests
from cloudevents.http import from_json

from tests.support.polling import wait_until
from tests.support.prometheus import scrape
from tests.support.reference import IRIS_FEATURES, IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.server import GunicornServer
from tests.support.tmpfs import FILLER, fill, small_tmpfs

REQUESTS = 5_000
THREADS = 8
KILL_AFTER = 2_000  # answers before one worker is SIGKILLed
JSON = {"Content-Type": "application/json"}
DIABETES_ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.02]
_V2_HEADER = orjson.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 4],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 64},
            }
        ]
    }
)
_CSV = ",".join(IRIS_FEATURES) + "\n" + ",".join(map(str, IRIS_SETOSA)) + "\n"


class Call(NamedTuple):
    """One kind of request: where it goes, its body and headers, and the rows it carries."""

    path: str
    body: bytes
    headers: dict[str, str]
    rows: int


CALLS = [
    Call("/predict", orjson.dumps({"features": IRIS_SETOSA}), JSON, 1),
    Call(
        "/models/iris/predict/batch",
        orjson.dumps({"instances": [IRIS_SETOSA, IRIS_VIRGINICA]}),
        JSON,
        2,
    ),
    Call("/models/diabetes/predict", orjson.dumps({"features": DIABETES_ROW}), JSON, 1),
    Call(
        "/v2/models/iris/infer",
        orjson.dumps(
            {
                "inputs": [
                    {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_SETOSA}
                ]
            }
        ),
        JSON,
        1,
    ),
    Call(
        "/v2/models/iris/infer",
        _V2_HEADER + struct.pack("<8d", *IRIS_SETOSA, *IRIS_VIRGINICA),
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(_V2_HEADER)),
        },
        2,
    ),
    Call("/v1/models/iris:predict", orjson.dumps({"instances": [IRIS_VIRGINICA]}), JSON, 1),
    Call(
        "/invocations",
        orjson.dumps({"dataframe_split": {"columns": IRIS_FEATURES, "data": [IRIS_SETOSA]}}),
        JSON,
        1,
    ),
    Call("/invocations", _CSV.encode(), {"Content-Type": "text/csv"}, 1),
    Call("/predict", orjson.dumps({"features": [1.0, 2.0]}), JSON, 0),  # refused: 422
]


class Answer(NamedTuple):
    """What came back for one request id."""

    call: Call
    status: int
    version: str | None


class Traffic:
    """Threads sending REQUESTS calls, each with a fresh X-Request-ID, keeping every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: dict[str, Call] = {}
        self.answers: dict[str, Answer] = {}
        self.failures: Counter[str] = Counter()
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._send, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        return threads

    def _send(self) -> None:
        with requests.Session() as session:
            while (number := next(self._numbers)) < REQUESTS:
                call, request_id = CALLS[number % len(CALLS)], uuid.uuid4().hex
                with self._lock:
                    self.sent[request_id] = call
                headers = {**call.headers, "X-Request-ID": request_id}
                try:
                    response = session.post(
                        self.url + call.path, data=call.body, headers=headers, timeout=20
                    )
                except requests.RequestException as exc:  # the SIGKILLed worker's requests
                    with self._lock:
                        self.failures[type(exc).__name__] += 1
                    continue
                answer = Answer(call, response.status_code, response.headers.get("X-Model-Version"))
                with self._lock:
                    self.answers[request_id] = answer


def _open_segment_pids(directory: Path) -> set[int]:
    return {int(path.name.rsplit("-", 2)[1]) for path in directory.glob("*.open")}


def test_every_answered_request_is_in_the_closed_segments(demo_store, tmp_path):
    payloads = tmp_path / "payloads"
    server = GunicornServer(
        demo_store,
        tmp_path / "server.log",
        workers=2,
        wait_for="/health/ready",
        ML_APP_PAYLOAD_LOG_DIR=str(payloads),
        ML_APP_PAYLOAD_LOG_SEGMENT_BYTES="200000",
        GUNICORN_MAX_REQUESTS="400",
        GUNICORN_MAX_REQUESTS_JITTER="100",
    )
    with server:
        server.wait_for_workers()
        traffic = Traffic(server.url)
        threads = traffic.run()
        wait_until(lambda: len(traffic.answers) >= KILL_AFTER, 60, f"{KILL_AFTER} answers")
        # A worker that has written and not closed its segment: only the master can close it.
        victim = wait_until(
            lambda: next(iter(server.worker_pids() & _open_segment_pids(payloads)), None),
            10,
            "a worker with an open segment",
        )
        os.kill(victim, signal.SIGKILL)
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert server.process.poll() is None
        written = scrape(server.url).total("ml_app_payload_log_events_total")
    assert server.process.returncode == 0  # SIGTERM: a graceful stop

    assert not list(payloads.glob("*.open")), "a segment was left open"
    events: list[dict] = []
    for segment in payloads.glob("*.jsonl"):
        for line in segment.read_bytes().splitlines():
            assert from_json(line)["type"] == "ml_app.inference"  # the SDK accepts every line
            events.append(orjson.loads(line))
    counts = Counter(event["id"] for event in events)
    assert written == len(events)  # counted exactly, the killed and recycled workers' included
    by_id = {event["id"]: event["data"] for event in events}

    answered = traffic.answers
    assert len(answered) + traffic.failures.total() == REQUESTS, traffic.failures
    assert len(answered) >= REQUESTS - 20  # only the killed worker's requests in flight failed
    missing = [request_id for request_id in answered if request_id not in counts]
    assert missing == [], f"{len(missing)} answered requests are not in the payload log"
    duplicates = {request_id: n for request_id, n in counts.items() if n > 1}
    assert duplicates == {}
    assert set(counts) <= set(traffic.sent)  # nothing the clients did not send
    for request_id, answer in answered.items():
        data = by_id[request_id]
        assert (data["status"], data["version"]) == (answer.status, answer.version), request_id
        if answer.status == 200:
            assert len(data["inputs"]["rows"]) == answer.call.rows
            assert len(data["outputs"]["predictions"]) == answer.call.rows
        else:
            assert (data["status"], data["error"]["code"]) == (422, "invalid_input")
    statuses = Counter(answer.status for answer in answered.values())
    assert set(statuses) == {200, 422}
    writers = {int(segment.name.rsplit("-", 2)[1]) for segment in payloads.glob("*.jsonl")}
    assert victim in writers  # its segment was closed by the master
    assert len(writers) >= 6  # workers recycled (max_requests) and each wrote its own segments


def test_a_full_disk_never_fails_a_prediction_and_writing_resumes(demo_store, tmp_path):
    with small_tmpfs(tmp_path / "small", 256) as mount:
        payloads = mount / "payloads"
        payloads.mkdir()
        # Left open by a run whose master was killed too: the next start closes it.
        orphan = payloads / f"{socket.gethostname()}-{2**22 + 17}-1.open"
        orphan.write_bytes(b'{"id":"earlier-run"}\n{"id":"torn')
        server = GunicornServer(
            demo_store,
            tmp_path / "server.log",
            workers=2,
            wait_for="/health/ready",
            ML_APP_PAYLOAD_LOG_DIR=str(payloads),
        )
        with server:
            assert not orphan.exists()
            closed = orphan.with_suffix(".jsonl")
            assert closed.read_bytes() == b'{"id":"earlier-run"}\n'  # the torn line trimmed
            closed.unlink()
            fill(mount)
            body = {"instances": [IRIS_SETOSA, IRIS_VIRGINICA] * 20}
            refused = [
                requests.post(server.url + "/predict/batch", json=body, timeout=10)
                for _ in range(20)
            ]
            assert [r.status_code for r in refused] == [200] * 20
            assert {tuple(r.json()["predictions"][:2]) for r in refused} == {
                ("setosa", "virginica")
            }
            metrics = scrape(server.url)
            dropped = metrics.total("ml_app_payload_log_errors_total", reason="disk_full")
            assert dropped == 20
            (mount / FILLER).unlink()
            kept = [
                requests.post(server.url + "/predict/batch", json=body, timeout=10)
                for _ in range(5)
            ]
            assert [r.status_code for r in kept] == [200] * 5
        logged = [
            orjson.loads(line)["id"]
            for segment in payloads.glob("*.jsonl")
            for line in segment.read_bytes().splitlines()
        ]
        assert sorted(logged) == sorted(r.headers["X-Request-ID"] for r in kept)
        assert not list(payloads.glob("*.open"))
    errors = [e for e in server.log_entries() if e.get("logger") == "ml_app.payload_log"]
    assert 1 <= len([e for e in errors if e["level"] == "ERROR"]) <= 2  # once per worker at most
