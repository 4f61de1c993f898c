"""ml_app: a production model server for scikit-learn models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from ml_app import metrics
from ml_app.api import health, models, predict
from ml_app.config import Settings
from ml_app.errors import register_error_handlers
from ml_app.extensions import exporter
from ml_app.json_provider import OrjsonProvider
from ml_app.logging import register_request_logging
from ml_app.openapi import native as native_docs
from ml_app.openapi import register_openapi
from ml_app.protocols import mlflow, v1, v2
from ml_app.registry import ModelRegistry
from ml_app.state import EXTENSION_KEY, AppState
from ml_app.store import LoadPolicy, ModelStore

# Wire protocols other servers speak, each a thin adapter over the registry and models.
PROTOCOLS = (v2, v1, mlflow)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app: settings from the environment (plus overrides), models loaded."""
    settings = Settings.from_env(overrides=overrides)
    # No static folder: the app serves no files of its own (Swagger UI's come from its package).
    app = Flask(__name__, static_folder=None)
    app.json_provider_class = OrjsonProvider
    app.json = OrjsonProvider(app)
    # Werkzeug answers 413 before the body is read when it is larger than this.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    register_request_logging(app, settings.log_level)
    register_state(app, settings)
    register_blueprints(app)
    register_docs(app)
    register_error_handlers(app)
    register_metrics(app)
    return app


def register_state(app: Flask, settings: Settings) -> None:
    """Load the model store into a registry owned by this app."""
    policy = LoadPolicy(
        allow_version_mismatch=settings.allow_version_mismatch,
        allow_pickle=settings.allow_pickle,
        trusted_types=settings.trusted_types,
    )
    registry = ModelRegistry(ModelStore(settings.store), policy, settings.default_model)
    app.extensions[EXTENSION_KEY] = AppState(settings=settings, registry=registry)
    registry.load_all()


def register_blueprints(app: Flask) -> None:
    """Attach the HTTP routes: native ones, then each protocol's adapter."""
    for module in (predict, models, health, *PROTOCOLS):
        app.register_blueprint(module.bp)


def register_docs(app: Flask) -> None:
    """The OpenAPI document (/openapi.json) and Swagger UI (/docs), describing every route."""
    operations = dict(native_docs.OPERATIONS)
    for module in PROTOCOLS:
        operations.update(module.OPERATIONS)
    register_openapi(app, operations)


def register_metrics(app: Flask) -> None:
    """Serve /metrics, count requests, and publish the loaded models' state."""
    exporter.init_app(app)
    metrics.init_app(app)
