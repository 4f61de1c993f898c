"""/metrics on the app's port (prometheus-flask-exporter), guarded by an optional token."""

from __future__ import annotations

from flask import Flask

from ml_app.core import metrics
from ml_app.web.extensions import exporter
from ml_app.web.state import state_of


def publish_model_state(app: object) -> None:
    """Publish the app's models (gauges, series at zero); a no-op for another kind of app."""
    state = state_of(app)
    if state is not None:
        snapshot = state.registry.snapshot()
        metrics.publish_snapshot(snapshot)
        if state.drift is not None:
            state.drift.publish(snapshot)


def register_metrics(app: Flask) -> None:
    """Serve /metrics and publish the loaded models' state (requests are counted on close)."""
    exporter.init_app(app)
    publish_model_state(app)
