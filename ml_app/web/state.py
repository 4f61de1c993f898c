"""Per-app state kept in app.extensions, so every app (and every test) has its own."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from ml_app.core.apikeys import KeyRing
from ml_app.core.config import Settings
from ml_app.core.drain import DrainMarker
from ml_app.core.drift import DriftRecorder
from ml_app.core.features import FeatureSources
from ml_app.core.registry import ModelRegistry
from ml_app.core.reload import StoreWatcher
from ml_app.core.shadow import ShadowRunner
from ml_app.core.snapshot import Snapshot
from ml_app.web.payload_log import PayloadLogging

EXTENSION_KEY = "ml_app"


@dataclass
class AppState:
    """The settings and model registry one app serves with, and what keeps them live."""

    settings: Settings
    registry: ModelRegistry
    watcher: StoreWatcher | None = None
    shadow: ShadowRunner | None = None
    api_keys: KeyRing | None = None  # None: no keys file, every route open
    feature_sources: FeatureSources | None = None  # sources versions declare, made on first use
    payload: PayloadLogging | None = None  # None: no ML_APP_PAYLOAD_LOG_DIR, no payload log
    drift: DriftRecorder | None = None  # None: drift counting switched off

    def not_ready_reasons(self, snapshot: Snapshot | None = None) -> list[str]:
        """Why this server should get no traffic now (for `snapshot`, default the current)."""
        if DrainMarker(self.settings.drain_file).active():
            return ["the server is shutting down (draining)"]
        return (snapshot or self.registry.snapshot()).not_ready_reasons()


def app_state() -> AppState:
    """The current app's state."""
    return current_app.extensions[EXTENSION_KEY]


def state_of(app: object) -> AppState | None:
    """The state of `app` when it is an ml_app Flask app (Gunicorn may hand over another)."""
    return app.extensions.get(EXTENSION_KEY) if isinstance(app, Flask) else None
