"""CORS in headless Chromium: a page from another loopback origin calls /predict on real Gunicorn
with fetch and an X-API-Key header; the allowed origin reads the answer and X-Request-ID, a denied
origin's fetch is blocked by the browser after the preflight."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.browser import offline_chromium
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer, ready_gunicorn

# The page a third-party site would serve: its script calls the model server with a key header,
# which makes the request non-simple, so the browser sends a preflight first.
PAGE = """<!doctype html>
<html><head><title>predict from another origin</title></head><body>
<script>
async function callPredict(url, features) {
  try {
    const response = await fetch(url + "/predict", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-API-Key": "page-key"},
      body: JSON.stringify({features: features}),
    });
    return {
      ok: true,
      status: response.status,
      body: await response.json(),
      requestId: response.headers.get("X-Request-ID"),
      modelVersion: response.headers.get("X-Model-Version"),
    };
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}
</script></body></html>
"""
_CALL = "arguments[arguments.length - 1](await callPredict(arguments[0], arguments[1]));"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@contextmanager
def _page_site(folder: Path) -> Iterator[str]:
    """A plain static site on a free loopback port serving PAGE; yields its origin."""
    folder.mkdir()
    (folder / "index.html").write_text(PAGE)
    handler = partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two page origins: the first is allowed by the server, the second is not."""
    root = tmp_path_factory.mktemp("sites")
    with _page_site(root / "allowed") as allowed, _page_site(root / "denied") as denied:
        yield allowed, denied


@pytest.fixture(scope="module")
def cors_server(demo_store, tmp_path_factory, sites) -> Iterator[GunicornServer]:
    """Real Gunicorn (2 workers) allowing the first site's origin only."""
    folder = tmp_path_factory.mktemp("gunicorn-cors")
    with ready_gunicorn(demo_store, folder, workers=2, ML_APP_CORS_ORIGINS=sites[0]) as running:
        yield running


def _predict_from(driver, site: str, server_url: str) -> dict:
    driver.get(site + "/index.html")
    assert driver.title == "predict from another origin"
    return driver.execute_async_script(_CALL, server_url, IRIS_SETOSA)


def _requests_seen(server: GunicornServer) -> list[tuple[str, int, str]]:
    return [
        (entry["method"], entry["status"], entry["request_id"])
        for entry in server.log_entries()
        if entry.get("logger") == "ml_app.access" and entry.get("path") == "/predict"
    ]


def test_an_allowed_origin_reads_the_answer_and_its_request_id(cors_server, sites, tmp_path):
    before = len(_requests_seen(cors_server))
    with offline_chromium(tmp_path / "profile") as driver:
        driver.set_script_timeout(30)
        result = _predict_from(driver, sites[0], cors_server.url)
    assert result["ok"], result
    assert (result["status"], result["body"]["prediction"]) == (200, "setosa")
    assert len(result["requestId"]) == 32
    assert result["modelVersion"] == "1"
    # the server saw the preflight, then the call whose id the page could read
    seen = _requests_seen(cors_server)[before:]
    assert [(method, status) for method, status, _ in seen] == [("OPTIONS", 200), ("POST", 200)]
    assert seen[1][2] == result["requestId"]


def test_a_denied_origin_is_blocked_by_the_browser(cors_server, sites, tmp_path):
    before = len(_requests_seen(cors_server))
    with offline_chromium(tmp_path / "profile") as driver:
        driver.set_script_timeout(30)
        result = _predict_from(driver, sites[1], cors_server.url)
    assert result == {"ok": False, "error": "TypeError: Failed to fetch"}
    # the preflight was answered without CORS headers, so the browser never sent the call
    seen = _requests_seen(cors_server)[before:]
    assert [(method, status) for method, status, _ in seen] == [("OPTIONS", 200)]
