"""The application factory: create_app() is a short list of register_* steps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ml_app.core.apikeys import KeyRing
from ml_app.core.config import Settings
from ml_app.core.drift import DriftRecorder
from ml_app.core.features import FeatureSources
from ml_app.core.logformat import configure_logging
from ml_app.core.registry import ModelRegistry
from ml_app.core.reload import StoreWatcher
from ml_app.core.shadow import ShadowRunner
from ml_app.core.store import LoadPolicy, ModelStore
from ml_app.ops.cli import models as models_command
from ml_app.web.api import admin, feedback, health, models, predict
from ml_app.web.auth import register_api_keys
from ml_app.web.context import register_request_context
from ml_app.web.cors import register_cors
from ml_app.web.errors import register_error_handlers
from ml_app.web.flask_app import ModelServerFlask
from ml_app.web.graphql import wire as graphql_docs
from ml_app.web.graphql.view import register_graphql
from ml_app.web.json_provider import OrjsonProvider
from ml_app.web.metrics import register_metrics
from ml_app.web.openapi import admin as admin_docs
from ml_app.web.openapi import feedback as feedback_docs
from ml_app.web.openapi import native as native_docs
from ml_app.web.openapi import register_openapi
from ml_app.web.payload_log import PayloadLogging, register_payload_log
from ml_app.web.protocols import mlflow, v1, v2
from ml_app.web.rate_limits import register_rate_limits
from ml_app.web.request_body import RequestBodies
from ml_app.web.state import EXTENSION_KEY, AppState

# Wire protocols other servers speak, each a thin adapter over the registry and models.
PROTOCOLS = (v2, v1, mlflow)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app: settings from the environment (plus overrides), models loaded."""
    settings = Settings.from_env(overrides=overrides)
    # No static folder: the app serves no files of its own (Swagger UI's come from its package).
    app = ModelServerFlask("ml_app", static_folder=None)
    app.json_provider_class = OrjsonProvider
    app.json = OrjsonProvider(app)
    # Werkzeug answers 413 before the body is read when it is larger than this.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    configure_logging(settings.log_level)
    register_request_bodies(app, settings)
    register_request_context(app)
    register_api_keys(app, bool(settings.api_keys_file))
    register_state(app, settings)
    register_rate_limits(app, settings)
    register_blueprints(app, settings)
    register_payload_log(app, app.extensions[EXTENSION_KEY].payload)
    register_docs(app)
    register_error_handlers(app)
    register_metrics(app)
    register_cors(app, settings.cors_origins)
    register_proxy_trust(app, settings.proxy_hops)
    app.cli.add_command(models_command)  # `flask --app ml_app models ...`
    return app


def register_request_bodies(app: Flask, settings: Settings) -> None:
    """Compressed bodies decoded, and unread rests drained, under the route's body limit."""

    def largest_body(path: str) -> int:
        if path.startswith(f"{admin.bp.url_prefix}/"):
            return settings.admin_max_upload_bytes
        return settings.max_body_bytes

    app.wsgi_app = RequestBodies(app.wsgi_app, largest_body)  # type: ignore[method-assign]


def register_proxy_trust(app: Flask, hops: int) -> None:
    """Take the client address and scheme from the `hops` proxies in front (none by default)."""
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def register_state(app: Flask, settings: Settings) -> None:
    """Load the model store into a registry owned by this app, kept fresh by a watcher."""
    policy = LoadPolicy.from_settings(settings)
    registry = ModelRegistry(ModelStore(settings.store), policy, settings.default_model)
    watcher = StoreWatcher(registry, settings.reload_interval)
    app.extensions[EXTENSION_KEY] = AppState(
        settings=settings,
        registry=registry,
        watcher=watcher,
        shadow=ShadowRunner(settings.shadow_queue_size),
        api_keys=_key_ring(settings),
        feature_sources=FeatureSources(settings.feature_store_timeout, settings.feature_key_prefix),
        payload=PayloadLogging.from_settings(settings),
        drift=_drift_recorder(settings),
    )
    registry.load_all()


def _drift_recorder(settings: Settings) -> DriftRecorder | None:
    if not settings.drift:
        return None
    return DriftRecorder(
        settings.drift_features, settings.drift_max_bins, settings.drift_flush_seconds
    )


def _key_ring(settings: Settings) -> KeyRing | None:
    # Off without a keys file, so a local `make run` needs no setup.
    if not settings.api_keys_file:
        return None
    return KeyRing(Path(settings.api_keys_file).expanduser(), settings.reload_interval)


def register_blueprints(app: Flask, settings: Settings) -> None:
    """Attach the HTTP routes: native ones, each protocol's adapter, admin when a token is set."""
    for module in (predict, models, health, feedback, *PROTOCOLS):
        app.register_blueprint(module.bp)
    register_graphql(app, settings)
    if settings.admin_token:
        app.register_blueprint(admin.bp)


def register_docs(app: Flask) -> None:
    """The OpenAPI document (/openapi.json) and Swagger UI (/docs), describing every route."""
    operations = {
        **native_docs.OPERATIONS,
        **admin_docs.OPERATIONS,
        **graphql_docs.OPERATIONS,
        **feedback_docs.OPERATIONS,
    }
    for module in PROTOCOLS:
        operations.update(module.OPERATIONS)
    register_openapi(app, operations)
