"""Prometheus metrics of the payload log and of ground-truth feedback, defined once per process.

Kept beside ml_app.core.metrics (the request and model metrics) so that module stays small;
the same multiprocess rules apply.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

PAYLOAD_EVENTS = Counter(
    "ml_app_payload_log_events",
    "Events written to the payload log, by CloudEvents type (ml_app.inference, ml_app.feedback).",
    ("type",),
)
PAYLOAD_LOG_ERRORS = Counter(
    "ml_app_payload_log_errors",
    "Payload log events dropped, by type and reason (disk_full, not_writable, io_error, "
    "encoding); the prediction itself was answered as usual.",
    ("type", "reason"),
)
FEEDBACK_ITEMS = Counter(
    "ml_app_feedback_items",
    "Ground-truth feedback items accepted (written to the payload log), by model.",
    ("model",),
)
_WRITTEN: dict[str, Any] = {}


def events_written(event_type: str) -> Any:
    """The events-written counter of one event type (labels resolved once per process)."""
    child = _WRITTEN.get(event_type)
    if child is None:
        child = _WRITTEN[event_type] = PAYLOAD_EVENTS.labels(event_type)
    return child


def events_dropped(event_type: str, reason: str) -> Any:
    """The dropped-events counter of one event type and reason."""
    return PAYLOAD_LOG_ERRORS.labels(event_type, reason)
