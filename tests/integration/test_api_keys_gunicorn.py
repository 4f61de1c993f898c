"""API keys on real Gunicorn (2 workers): the auth matrix, no key in any log line, live changes.

Every prediction route x {no key, bad key, good key, key for another model}; then keys added
and revoked in the file under load take effect within the reload interval, and no request with
a key that stays valid fails meanwhile.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ml_app.core import apikeys
from tests.support.keys import keyed_gunicorn
from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer

RELOAD_INTERVAL = 0.5  # ML_APP_RELOAD_INTERVAL: how soon a changed keys file must take effect
ANSWERS_PER_PHASE = 40  # requests of a key in each phase of the load
ROW = IRIS_SETOSA
_V2_HEADER = (
    b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64",'
    b'"parameters":{"binary_data_size":32}}]}'
)
# Each prediction route: (path, request keyword arguments) of a request that succeeds.
ROUTES = {
    "native": ("/predict", {"json": {"features": ROW}}),
    "native batch": ("/models/iris/predict/batch", {"json": {"instances": [ROW, ROW]}}),
    "V2 JSON": (
        "/v2/models/iris/infer",
        {"json": {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}},
    ),
    "V2 binary": (
        "/v2/models/iris/infer",
        {
            "data": _V2_HEADER + struct.pack("<4d", *ROW),
            "headers": {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(_V2_HEADER)),
            },
        },
    ),
    "V1": ("/v1/models/iris:predict", {"json": {"instances": [ROW]}}),
    "MLflow": ("/invocations", {"json": {"instances": [ROW]}}),
}


@pytest.fixture(scope="module")
def keyed(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A 2-worker server with a keys file: a key for every model and one for diabetes only."""
    folder = tmp_path_factory.mktemp("keys")
    reload_interval = {"ML_APP_RELOAD_INTERVAL": str(RELOAD_INTERVAL)}
    with keyed_gunicorn(demo_store, folder, **reload_interval) as running:
        yield running


def _post(server: GunicornServer, route: str, key_headers: dict[str, str]) -> requests.Response:
    path, kwargs = ROUTES[route]
    headers = {**kwargs.get("headers", {}), **key_headers}
    return requests.post(server.url + path, **{**kwargs, "headers": headers}, timeout=10)


@pytest.mark.parametrize("route", ROUTES)
def test_the_auth_matrix_on_every_prediction_route(keyed, route):
    server, _, keys = keyed
    bad = keys["good"][::-1]
    missing = _post(server, route, {})
    wrong = _post(server, route, {"X-API-Key": bad})
    good = _post(server, route, {"Authorization": f"Bearer {keys['good']}"})
    scoped = _post(server, route, {"X-API-Key": keys["other model"]})
    for refused, reason in ((missing, "missing"), (wrong, "not a valid key")):
        body = refused.json()
        assert (refused.status_code, body["code"], body["status"]) == (401, "unauthorized", 401)
        assert reason in body["error"]
        assert body["request_id"] == refused.headers["X-Request-ID"]
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="ml_app"'
    assert good.status_code == 200, good.text
    assert good.headers["X-Model-Version"] == "1"
    assert scoped.status_code == 403
    message = "API key diabetes-only may not call model 'iris'."
    scoped_body = scoped.json()
    assert message in (scoped_body.get("error"), scoped_body.get("message"))
    # The log lines say which key id was used, and never hold a key, good or bad.
    entries = [e for e in server.log_entries() if e.get("request_id") in _ids(good, scoped)]
    assert sorted(e.get("key_id") for e in entries) == ["all-models", "diabetes-only"]
    log_text = server.log_path.read_text()
    assert all(key not in log_text for key in (*keys.values(), bad))


def _ids(*responses: requests.Response) -> set[str]:
    return {response.headers["X-Request-ID"] for response in responses}


def test_open_routes_answer_without_a_key(keyed):
    server, _, _ = keyed
    for path in ("/health/ready", "/openapi.json", "/metrics", "/v2/health/ready"):
        assert requests.get(server.url + path, timeout=10).status_code == 200, path
    preflight = requests.options(
        server.url + "/predict",
        headers={"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 200


class KeyedLoad:
    """Threads posting /predict, each with one key, every answer kept with when it was sent."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url, self.keys = url, keys
        self.answers: list[tuple[str, float, float, int | str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in keys]

    def __enter__(self) -> KeyedLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, name: str) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 60  # bounded even if the test body hangs
        while not self._stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                status: int | str = session.post(
                    self.url + "/predict",
                    json={"features": ROW},
                    headers={"X-API-Key": self.keys[name]},
                    timeout=10,
                ).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            self.answers.append((name, sent, time.monotonic(), status))
            time.sleep(0.005)

    def wait_for(self, name: str, after: float, count: int = ANSWERS_PER_PHASE) -> None:
        """Until `count` of `name`'s requests sent after `after` were answered (bounded)."""

        def answered() -> bool:
            return sum(n == name and sent > after for n, sent, *_ in self.answers) >= count

        wait_until(answered, 60, f"{count} answers for {name} sent after {after}")

    def statuses(self, name: str, after: float = 0.0, before: float = float("inf")) -> set:
        """Statuses of `name`'s requests sent after `after` and answered before `before`."""
        return {
            status
            for n, sent, answered, status in self.answers
            if n == name and after < sent and answered < before
        }


def test_keys_added_and_revoked_under_load_take_effect_within_the_interval(keyed):
    server, keys_file, keys = keyed
    leaving = apikeys.add_key(keys_file, "leaving")
    time.sleep(RELOAD_INTERVAL * 3)  # both workers know it before the load starts
    # The new key's value is made before the file knows it, so the load can try it early.
    arriving = apikeys.new_key()
    load_keys = {"stays": keys["good"], "leaving": leaving, "arriving": arriving}
    # Each phase lasts until every key it is about was tried enough, not a fixed time: on a
    # loaded machine a second may hold only a few requests.
    with KeyedLoad(server.url, load_keys) as load:
        for name in load_keys:
            load.wait_for(name, after=0.0)
        revoking = time.monotonic()
        apikeys.revoke_key(keys_file, "leaving")
        revoked_at = time.monotonic()
        load.wait_for("leaving", after=revoked_at + RELOAD_INTERVAL)
        adding = time.monotonic()
        arriving_entry = apikeys.ApiKey("arriving", apikeys.key_digest(arriving).hex())
        apikeys.write_keys(keys_file, (*apikeys.read_keys(keys_file), arriving_entry))
        added_at = time.monotonic()
        load.wait_for("arriving", after=added_at + RELOAD_INTERVAL)
    assert load.statuses("stays") == {200}  # never a failed request for a key that stays valid
    assert load.statuses("leaving", before=revoking) == {200}
    assert load.statuses("leaving", after=revoked_at + RELOAD_INTERVAL) == {401}
    assert load.statuses("arriving", before=adding) == {401}
    assert load.statuses("arriving", after=added_at + RELOAD_INTERVAL) == {200}
    assert len(load.answers) > 100
