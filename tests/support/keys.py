"""A real Gunicorn server with API keys on: one key for every model, one for diabetes only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ml_app.core import apikeys
from tests.support.server import GunicornServer, ready_gunicorn


@contextmanager
def keyed_gunicorn(
    store: Path, folder: Path, **env: str
) -> Iterator[tuple[GunicornServer, Path, dict[str, str]]]:
    """2 workers with a keys file; yields the server, the file and the keys by role:
    "good" (id all-models, every model) and "other model" (id diabetes-only)."""
    keys_file = folder / "keys.json"
    keys = {
        "good": apikeys.add_key(keys_file, "all-models"),
        "other model": apikeys.add_key(keys_file, "diabetes-only", ("diabetes",)),
    }
    with ready_gunicorn(
        store, folder, workers=2, ML_APP_API_KEYS_FILE=str(keys_file), **env
    ) as server:
        yield server, keys_file, keys
