"""JSON log lines on stdout: the formatter, and the access line written in one write()."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

access_log = logging.getLogger("ml_app.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        return self.json(record).decode()

    def json(self, record: logging.LogRecord | AccessLine) -> bytes:
        """The record as JSON bytes (no newline)."""
        entry = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        try:
            return orjson.dumps(entry, default=str)
        except TypeError:  # a string UTF-8 cannot hold: the line is still written, escaped
            return orjson.dumps(encodable(entry), default=str)


def encodable(value: Any) -> Any:
    """`value` with every string UTF-8 cannot hold (lone surrogates) backslash-escaped instead."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {encodable(key): encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(item) for item in value]
    return value


class AccessLine:
    """What JsonFormatter reads from an access record, without LogRecord's costly __init__."""

    __slots__ = ("created", "fields", "process", "request_id")
    name = "ml_app.access"
    levelname = "INFO"
    exc_info = None

    def __init__(self, request_id: str, fields: dict[str, Any]) -> None:
        self.created = time.time()
        self.process = os.getpid()
        self.request_id = request_id
        self.fields = fields

    def getMessage(self) -> str:
        """The line's message."""
        return "request"


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds, like datetime.isoformat(timespec="milliseconds")."""
    second = int(created)
    return f"{_utc_second(second)}.{int((created - second) * 1000):03d}+00:00"


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    # Formatting a datetime costs more than the rest of the line; within a second it repeats.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def configure_logging(level: str) -> None:
    """Send the ml_app loggers to stdout as JSON; safe to call once per app in one process."""
    logger = logging.getLogger("ml_app")
    logger.setLevel(level)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    # Our handler is the one place these lines go; the root logger would print them twice.
    logger.propagate = False


def log_access(request_id: str, started: float, fields: dict[str, Any]) -> None:
    """Write the request's JSON line: `fields` (method, route, path, status, ...) and latency.

    Python's logging machinery (record, logger, handler, lock, formatter, text stream) costs
    more than a prediction. While `ml_app.access` has the configuration configure_logging gave
    it, the line is made the same way and written to stdout with one write(), which no other
    worker's line can interleave with; once anything attaches handlers or filters, lines go
    through logging as usual.
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    formatter = _plain_stdout_formatter()
    if formatter is not None and _write_stdout(
        formatter.json(AccessLine(request_id, fields)) + b"\n"
    ):
        return
    access_log.handle(_access_record(request_id, fields))


def _plain_stdout_formatter() -> JsonFormatter | None:
    """Our formatter while access lines go only to our JSON handler on stdout, unfiltered."""
    parent = access_log.parent
    if access_log.handlers or access_log.filters or not access_log.propagate:
        return None
    if parent is None or parent.filters or parent.propagate or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    plain = (
        type(handler) is logging.StreamHandler
        and type(handler.formatter) is JsonFormatter
        and not handler.filters
        and handler.level <= logging.INFO
        and handler.stream is sys.stdout
    )
    return handler.formatter if plain else None


def _write_stdout(line: bytes) -> bool:
    """Write the whole line to stdout's file descriptor; False when stdout has none."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    view = memoryview(line)
    try:
        while view:
            view = view[os.write(descriptor, view) :]
    except OSError:  # logging then tries, and reports the failure its own way
        return False
    return True


def _access_record(request_id: str, fields: dict[str, Any]) -> logging.LogRecord:
    """The request's log record, made directly: Logger.info would also look up its caller."""
    record = logging.LogRecord(access_log.name, logging.INFO, "", 0, "request", None, None)
    record.request_id = request_id
    record.fields = fields
    return record
