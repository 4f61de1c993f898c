"""JSON log lines on stdout, and request-id propagation (X-Request-ID in and out)."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime

import orjson
from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
MODEL_VERSION_HEADER = "X-Model-Version"
# A caller's id is echoed into logs and headers, so only accept a short, plain token.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
access_log = logging.getLogger("ml_app.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(entry, default=str).decode()


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


def _begin_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.request_id
    if "version" in g:  # whichever protocol answered, the caller can see what served it
        response.headers[MODEL_VERSION_HEADER] = g.version
    if access_log.isEnabledFor(logging.INFO):
        rule = request.url_rule.rule if request.url_rule else None
        fields = {
            "method": request.method,
            "route": rule,
            "path": request.path,
            "status": response.status_code,
            "latency_ms": round((time.perf_counter() - g.started) * 1000, 3),
        }
        for key in ("model", "version", "rows", "error_code"):
            if key in g:
                fields[key] = g.get(key)
        access_log.info("request", extra={"request_id": g.request_id, "fields": fields})
    return response


def register_request_logging(app: Flask, level: str) -> None:
    """Give each request an id, echo it back, and write one JSON line when it ends."""
    configure_logging(level)
    app.before_request(_begin_request)
    app.after_request(_finish_request)
