"""The payload log's web side: which requests are predictions, and writing their events.

Prediction views are marked with `@prediction_endpoint`; `register_payload_log` collects their
endpoints once the blueprints are registered. The request context's closing hook
(ml_app.web.context) records every request to one of them, answered or refused, and every
request that reached the shared serving path, before the response leaves the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask

from ml_app.core import payload_metrics
from ml_app.core.config import Settings
from ml_app.core.payload_events import INFERENCE, EventEncoder, InferenceRecord
from ml_app.core.payload_log import PayloadLog

log = logging.getLogger("ml_app.payload_log")
_MARK = "ml_app_prediction_endpoint"
View = TypeVar("View", bound=Callable[..., Any])


def prediction_endpoint(view: View) -> View:
    """Mark a view as a prediction route: each of its requests becomes a payload log event."""
    setattr(view, _MARK, True)
    return view


@dataclass
class PayloadLogging:
    """This app's payload log: the segment writer, the event encoder, the prediction routes."""

    writer: PayloadLog
    encoder: EventEncoder
    endpoints: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadLogging | None:
        """The payload log ML_APP_PAYLOAD_LOG_DIR asks for; None when it is not set."""
        if not settings.payload_log_dir:
            return None
        writer = PayloadLog(
            Path(settings.payload_log_dir).expanduser(),
            settings.payload_log_segment_bytes,
            settings.payload_log_segment_seconds,
        )
        return cls(writer, EventEncoder(settings.payload_log_max_bytes))

    def record(self, records: list[InferenceRecord]) -> None:
        """Write a request's events in one write; failures are counted and logged, never raised."""
        lines = []
        for record in records:
            try:
                lines.append(self.encoder.inference(record))
            except Exception:  # a value orjson cannot write must not fail the answer
                payload_metrics.events_dropped(INFERENCE, "encoding").inc()
                log.exception(
                    "payload event not encodable", extra={"request_id": record.request_id}
                )
        if lines:
            self.writer.append(b"".join(lines), INFERENCE, len(lines))


def register_payload_log(app: Flask, payload: PayloadLogging | None) -> None:
    """Note which endpoints are prediction routes (call after the blueprints are registered)."""
    if payload is None:
        return
    payload.endpoints = frozenset(
        endpoint for endpoint, view in app.view_functions.items() if getattr(view, _MARK, False)
    )
