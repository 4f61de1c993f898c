"""Request ids and the one JSON log line per request."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import orjson
import pytest

from ml_app.core.logformat import JsonFormatter, _timestamp, access_log, log_access
from tests.support.reference import IRIS_SETOSA


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(JsonFormatter().format(record)))


def _collect(logger_name: str) -> _Collect:
    handler = _Collect()
    logging.getLogger(logger_name).addHandler(handler)
    return handler


def test_request_id_is_echoed_and_logged(client):
    handler = _collect("ml_app.access")
    try:
        response = client.post(
            "/predict", json={"features": IRIS_SETOSA}, headers={"X-Request-ID": "abc-123"}
        )
    finally:
        logging.getLogger("ml_app.access").removeHandler(handler)
    assert response.headers["X-Request-ID"] == "abc-123"
    (line,) = handler.lines
    assert line["request_id"] == "abc-123"
    assert line["method"] == "POST"
    assert line["route"] == "/predict"
    assert line["status"] == 200
    assert (line["model"], line["version"], line["rows"]) == ("iris", "1", 1)
    assert line["latency_ms"] > 0
    assert line["level"] == "INFO"


def test_unsafe_or_missing_request_id_is_replaced(client):
    for headers in ({}, {"X-Request-ID": "bad id; with <spaces>"}, {"X-Request-ID": "x" * 500}):
        response = client.get("/health", headers=headers)
        generated = response.headers["X-Request-ID"]
        assert len(generated) == 32 and generated.isalnum()


def test_error_body_and_log_share_the_request_id(client):
    handler = _collect("ml_app.access")
    try:
        response = client.post("/predict", json={"features": [1]})
    finally:
        logging.getLogger("ml_app.access").removeHandler(handler)
    body = response.get_json()
    (line,) = handler.lines
    assert body["request_id"] == line["request_id"] == response.headers["X-Request-ID"]
    assert (line["status"], line["error_code"]) == (422, "invalid_input")


def test_unexpected_errors_log_the_traceback_with_the_request_id(app, monkeypatch):
    from ml_app.core.model import LoadedModel

    monkeypatch.setattr(LoadedModel, "predict", lambda self, m: 1 / 0)
    handler = _collect("ml_app.errors")
    try:
        response = app.test_client().post("/predict", json={"features": IRIS_SETOSA})
    finally:
        logging.getLogger("ml_app.errors").removeHandler(handler)
    (line,) = handler.lines
    assert line["request_id"] == response.get_json()["request_id"]
    assert "ZeroDivisionError" in line["exception"]


@pytest.mark.parametrize("created", [0.0, 1700000000.0, 1700000000.0004, 1763762203.9991])
def test_log_time_is_iso_8601_in_utc_with_milliseconds(created):
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert _timestamp(created) == expected


def test_access_lines_bypass_logging_but_read_the_same(app, tmp_path, monkeypatch):
    """With the stock configuration an access line is one write to stdout, not a LogRecord."""
    app_logger = logging.getLogger("ml_app")
    handler = next(h for h in app_logger.handlers if type(h.formatter) is JsonFormatter)
    monkeypatch.setattr(app_logger, "handlers", [handler])  # without pytest's capture handlers
    fields = {"method": "POST", "route": "/predict", "path": "/predict", "status": 200}
    with (tmp_path / "stdout").open("w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(handler, "stream", stdout)
        with monkeypatch.context() as patched:
            patched.setattr(access_log, "handle", lambda record: pytest.fail("went via logging"))
            log_access("direct", time.perf_counter(), dict(fields))
        collector = _collect("ml_app.access")  # a handler attached: lines go through logging
        try:
            log_access("logged", time.perf_counter(), dict(fields))
        finally:
            logging.getLogger("ml_app.access").removeHandler(collector)
    direct, logged = (orjson.loads(line) for line in (tmp_path / "stdout").read_text().splitlines())
    assert collector.lines[0]["request_id"] == logged["request_id"] == "logged"
    assert direct["request_id"] == "direct"
    for line in (direct, logged):
        for varying in ("time", "request_id", "latency_ms"):
            del line[varying]
    assert direct == logged
    assert list(direct) == ["level", "logger", "message", "pid", *fields]
