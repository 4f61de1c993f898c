"""Shared fixtures: no settings from the shell, a demo model store, and an app on it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ml_app import create_app
from model.train import train_demo_models
from tests.support.server import SETTING_PREFIXES, GunicornServer, ready_gunicorn


@pytest.fixture(scope="session", autouse=True)
def no_settings_from_the_shell() -> Iterator[None]:
    """Drop ML_APP_* and GUNICORN_* a developer's shell may carry, so they change no result."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(SETTING_PREFIXES):
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three demo models, trained once per test session (read-only: copy to change it)."""
    root = tmp_path_factory.mktemp("store")
    train_demo_models(root)
    return root


@pytest.fixture
def store(demo_store: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the demo store."""
    return Path(shutil.copytree(demo_store, tmp_path / "store"))


@pytest.fixture
def app(demo_store: Path) -> Iterator[Flask]:
    """An app serving the demo store."""
    yield create_app({"store": demo_store})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client for the app."""
    return app.test_client()


@pytest.fixture(scope="module")
def demo_server(
    demo_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """Real Gunicorn (3 workers) on the demo store, ready; one per test module that asks."""
    with ready_gunicorn(demo_store, tmp_path_factory.mktemp("gunicorn")) as running:
        yield running
