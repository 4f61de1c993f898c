"""JSON log lines on stdout: the formatter, and the access line written in one write()."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

from ml_app.core.process import process_id

access_log = logging.getLogger("ml_app.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        return self.json(record).decode()

    def json(self, record: logging.LogRecord) -> bytes:
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


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds, like datetime.isoformat(timespec="milliseconds")."""
    second = int(created)
    cached_second, text = _last_second
    if second != cached_second:
        # Formatting a datetime costs more than the rest of the line; within a second it repeats.
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second[:] = (second, text)
    return f"{text}.{int((created - second) * 1000):03d}+00:00"


_last_second: list[Any] = [None, ""]


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
    if _plain_stdout() and _write_stdout(_access_line(request_id, fields)):
        return
    access_log.handle(_access_record(request_id, fields))


def _access_line(request_id: str, fields: dict[str, Any]) -> bytes:
    """The line JsonFormatter makes of the access record, made without the record."""
    entry = {
        "time": _timestamp(time.time()),
        "level": "INFO",
        "logger": access_log.name,
        "message": "request",
        "pid": process_id(),
        "request_id": request_id,
        **fields,
    }
    return orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _plain_stdout() -> bool:
    """True while access lines go only to our JSON handler on stdout, unfiltered."""
    parent = access_log.parent
    if access_log.handlers or access_log.filters or not access_log.propagate:
        return False
    if parent is None or parent.filters or parent.propagate or len(parent.handlers) != 1:
        return False
    handler = parent.handlers[0]
    return (
        type(handler) is logging.StreamHandler
        and type(handler.formatter) is JsonFormatter
        and not handler.filters
        and handler.level <= logging.INFO
        and handler.stream is sys.stdout
    )


def _write_stdout(line: bytes) -> bool:
    """Write the whole line to stdout's file descriptor; False when stdout has none."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    try:
        written = os.write(descriptor, line)
        if written < len(line):  # a pipe took part of it: write the rest
            view = memoryview(line)[written:]
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
