"""Model metadata endpoints: what is in the store and what each version is."""

from __future__ import annotations

from flask import Blueprint, Response

from ml_app.web.responses import json_response
from ml_app.web.state import app_state

bp = Blueprint("models", __name__)


@bp.get("/models")
def list_models() -> Response:
    """Every model with its versions, aliases, split, shadow, default version and readiness."""
    snapshot = app_state().registry.snapshot()  # one consistent state for the whole answer
    models = [
        {
            "name": entry.name,
            "default_version": entry.default_version,
            "versions": list(entry.versions),
            "aliases": entry.aliases,
            "split": entry.split.shares() if entry.split else None,
            "shadow": list(entry.shadow),
            "ready": entry.not_ready_reason() is None,
        }
        for entry in snapshot.models.values()
    ]
    return json_response({"default_model": snapshot.default_model, "models": models})


@bp.get("/models/<name>")
def show_model(name: str) -> Response:
    """One model: versions with load state and metadata, aliases, split, shadow, problems."""
    return json_response(app_state().registry.entry(name).describe())


@bp.get("/model/info")
def default_model_info() -> Response:
    """Metadata of the version the default model serves."""
    model = app_state().registry.resolve()
    return json_response(
        {"name": model.name, "version": model.version, "metadata": model.describe()}
    )
