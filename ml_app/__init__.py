"""ml_app: a production model server for scikit-learn models.

Importing the package is cheap: `create_app` (Flask, the models' libraries) is imported on first
use, so `python -m ml_app ...` and `gunicorn 'ml_app:create_app()'` load only what they need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ml_app.app import create_app

        return create_app
    raise AttributeError(f"module 'ml_app' has no attribute {name!r}")
