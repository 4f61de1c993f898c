"""Liveness and readiness endpoints for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, Response

from ml_app.web.responses import json_response
from ml_app.web.state import app_state

bp = Blueprint("health", __name__)


@bp.get("/health")
@bp.get("/health/live")
def live() -> Response:
    """The process is up and answering."""
    return json_response({"status": "ok", "live": True})


@bp.get("/health/ready")
def ready() -> Response:
    """200 when every model's default version is loaded; 503 with the reasons otherwise."""
    state = app_state()
    snapshot = state.registry.snapshot()
    reasons = state.not_ready_reasons(snapshot)
    models = {name: entry.default_version for name, entry in snapshot.models.items()}
    if reasons:
        return json_response(
            {"status": "not ready", "ready": False, "reasons": reasons, "models": models}, 503
        )
    return json_response({"status": "ok", "ready": True, "models": models})
