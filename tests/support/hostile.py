"""A server for hostile-client tests, and checks of the one JSON error shape it must answer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.raw_http import RawAnswer
from tests.support.server import GunicornServer, ready_gunicorn

ERROR_KEYS = {"error", "code", "status", "request_id", "details"}
ADMIN_TOKEN = "hostile-admin-token"
ROW = b'{"features": [5.1, 3.5, 1.4, 0.2]}'


@contextmanager
def hostile_gunicorn(demo_store: Path, folder: Path, **env: str) -> Iterator[GunicornServer]:
    """2 workers on a copy of the store (admin routes may write), admin and payload log on."""
    store = Path(shutil.copytree(demo_store, folder / "store"))
    settings = {
        "ML_APP_ADMIN_TOKEN": ADMIN_TOKEN,
        "ML_APP_PAYLOAD_LOG_DIR": str(folder / "payloads"),
    }
    with ready_gunicorn(store, folder, workers=2, **settings, **env) as running:
        yield running
        # Whatever the tests sent, the log stayed JSON lines (log_entries parses each one).
        assert running.log_entries()


def assert_error_shape(answer: RawAnswer, status: int, code: str) -> dict:
    """The one JSON error shape with `status` and `code`, tied to X-Request-ID; the body."""
    assert (answer.status, answer.headers.get("content-type")) == (status, "application/json")
    body = answer.json()
    assert set(body) == ERROR_KEYS
    assert (body["status"], body["code"], body["details"]) == (status, code, {})
    assert body["request_id"] == answer.headers["x-request-id"]
    return body


def access_line(server: GunicornServer, request_id: str) -> dict:
    """The access line the server wrote for `request_id`."""
    (entry,) = [
        e
        for e in server.log_entries()
        if e.get("request_id") == request_id and e["logger"] == "ml_app.access"
    ]
    return entry
