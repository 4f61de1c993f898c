"""Per-app state kept in app.extensions, so every app (and every test) has its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:  # the registry (via metrics) imports this module
    from ml_app.config import Settings
    from ml_app.registry import ModelRegistry
    from ml_app.reload import StoreWatcher
    from ml_app.shadow import ShadowRunner

EXTENSION_KEY = "ml_app"


@dataclass
class AppState:
    """The settings and model registry one app serves with, and what keeps them live."""

    settings: Settings
    registry: ModelRegistry
    watcher: StoreWatcher | None = None
    shadow: ShadowRunner | None = None


def app_state() -> AppState:
    """The current app's state."""
    return current_app.extensions[EXTENSION_KEY]
