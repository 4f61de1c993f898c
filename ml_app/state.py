"""Per-app state kept in app.extensions, so every app (and every test) has its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:  # the registry (via metrics) imports this module
    from ml_app.config import Settings
    from ml_app.registry import ModelRegistry

EXTENSION_KEY = "ml_app"


@dataclass
class AppState:
    """The settings and model registry one app serves with."""

    settings: Settings
    registry: ModelRegistry


def app_state() -> AppState:
    """The current app's state."""
    return current_app.extensions[EXTENSION_KEY]
