"""Rate limits (memory storage, one process): rows charged per client on every prediction route."""

from __future__ import annotations

import socket
import threading
import time

import flask_limiter._limits
import pytest
from flask import Flask
from prometheus_client import REGISTRY

from ml_app import create_app
from ml_app.core import apikeys
from ml_app.core.config import Settings, SettingsError
from tests.support.reference import IRIS_SETOSA
from tests.support.server import free_port
from tests.unit.test_pipeline import PREDICTIONS

ROW = IRIS_SETOSA
ROWS_SENT = {"native batch": 2}  # every other prediction in PREDICTIONS sends one row


def _limited_app(demo_store, limit: str = "3/minute", **more) -> Flask:
    return create_app({"store": demo_store, "rate_limit": limit, **more})


def _decisions(outcome: str) -> float:
    value = REGISTRY.get_sample_value("ml_app_rate_limit_decisions_total", {"outcome": outcome})
    return value or 0.0


@pytest.mark.parametrize("route", PREDICTIONS)
def test_every_prediction_route_is_limited(demo_store, route):
    client = _limited_app(demo_store, "2/minute").test_client()
    answers = [PREDICTIONS[route](client) for _ in range(4)]
    allowed = 2 // ROWS_SENT.get(route, 1)  # two rows a minute, whatever the request's size
    assert [a.status_code for a in answers] == [200] * allowed + [429] * (4 - allowed)
    body = answers[2].get_json()
    if route == "MLflow":  # MLflow's protocol has its own error shape
        assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    else:
        assert set(body) == {"error", "code", "status", "request_id", "details"}
        assert body["code"] == "rate_limited" and body["status"] == 429
        assert body["request_id"] == answers[2].headers["X-Request-ID"]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    assert answers[2].headers["X-RateLimit-Limit"] == "2"
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"


def test_a_batch_costs_its_rows(demo_store):
    client = _limited_app(demo_store, "5/minute").test_client()
    assert client.post("/predict/batch", json={"instances": [ROW] * 4}).status_code == 200
    assert client.post("/predict", json={"features": ROW}).status_code == 200
    assert client.post("/predict", json={"features": ROW}).status_code == 429


def test_every_charged_answer_says_what_is_left(demo_store):
    client = _limited_app(demo_store, "5/minute").test_client()
    first = client.post("/predict/batch", json={"instances": [ROW] * 2})
    second = client.post("/predict", json={"features": ROW})
    assert (first.status_code, second.status_code) == (200, 200)
    assert [a.headers["X-RateLimit-Limit"] for a in (first, second)] == ["5", "5"]
    assert [a.headers["X-RateLimit-Remaining"] for a in (first, second)] == ["3", "2"]
    reset = int(first.headers["X-RateLimit-Reset"])  # when the minute's window closes
    assert time.time() < reset <= time.time() + 61
    assert "Retry-After" not in first.headers
    unlimited = client.get("/models")  # never charged: no rate-limit headers
    assert not [name for name in unlimited.headers.keys() if name.startswith("X-RateLimit")]


def test_a_key_with_its_own_limit_gets_that_limit_and_others_the_default(demo_store, tmp_path):
    keys_file = tmp_path / "keys.json"
    own = apikeys.add_key(keys_file, "own-limit", limit="2/minute")
    default = apikeys.add_key(keys_file, "default-limit")
    app = _limited_app(demo_store, "4/minute", api_keys_file=str(keys_file))
    client = app.test_client()

    def statuses(key: str) -> list[int]:
        answers = [
            client.post("/predict", json={"features": ROW}, headers={"X-API-Key": key})
            for _ in range(5)
        ]
        return [a.status_code for a in answers]

    assert statuses(own) == [200, 200, 429, 429, 429]
    assert statuses(default) == [200, 200, 200, 200, 429]
    refused = client.post("/predict", json={"features": ROW}, headers={"X-API-Key": own})
    assert refused.headers["X-RateLimit-Limit"] == "2"


def test_refused_input_costs_nothing(demo_store):
    client = _limited_app(demo_store, "1/minute").test_client()
    assert client.post("/predict", json={"features": [1.0]}).status_code == 422
    assert client.post("/predict", json={"features": ROW}).status_code == 200


def test_clients_are_counted_apart(demo_store):
    client = _limited_app(demo_store, "1/minute").test_client()
    first = {"REMOTE_ADDR": "127.0.0.2"}
    second = {"REMOTE_ADDR": "127.0.0.3"}
    assert client.post("/predict", json={"features": ROW}, environ_base=first).status_code == 200
    assert client.post("/predict", json={"features": ROW}, environ_base=first).status_code == 429
    assert client.post("/predict", json={"features": ROW}, environ_base=second).status_code == 200


def test_health_and_models_are_not_limited(demo_store):
    client = _limited_app(demo_store, "1/minute").test_client()
    answers = [client.get(path).status_code for path in ("/health", "/models") * 3]
    assert answers == [200] * 6


def test_off_without_a_limit(app):
    client = app.test_client()
    assert [client.post("/predict", json={"features": ROW}).status_code for _ in range(5)] == [
        200
    ] * 5


def test_decisions_are_counted(demo_store):
    client = _limited_app(demo_store, "1/minute").test_client()
    allowed, limited = _decisions("allowed"), _decisions("limited")
    client.post("/predict", json={"features": ROW})
    client.post("/predict", json={"features": ROW})
    assert _decisions("allowed") == allowed + 1
    assert _decisions("limited") == limited + 1


@pytest.mark.parametrize(("policy", "status"), [("open", 200), ("closed", 503)])
def test_unreachable_store_follows_the_policy(demo_store, policy, status):
    app = _limited_app(
        demo_store,
        rate_limit_storage_uri=f"redis://127.0.0.1:{free_port()}/0",
        rate_limit_redis_down=policy,
    )
    response = app.test_client().post("/predict", json={"features": ROW})
    assert response.status_code == status
    body = response.get_json()
    if policy == "closed":
        assert body["code"] == "rate_limit_store_unavailable"
        assert _decisions("store_down_refused") >= 1
    else:
        assert body["prediction"] == "setosa"  # setosa: served without a limit
        assert _decisions("store_down_allowed") >= 1


@pytest.mark.parametrize(
    ("name", "raw"),
    [("ML_APP_RATE_LIMIT", "fifty per second"), ("ML_APP_RATE_LIMIT_REDIS_DOWN", "maybe")],
)
def test_bad_settings_are_refused(name, raw):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


def test_each_limit_string_is_parsed_once(demo_store, tmp_path, monkeypatch):
    parsed: list[str] = []
    parse_many = flask_limiter._limits.parse_many

    def counting_parse_many(limit_string: str):
        parsed.append(limit_string)
        return parse_many(limit_string)

    monkeypatch.setattr(flask_limiter._limits, "parse_many", counting_parse_many)
    keys_file = tmp_path / "keys.json"
    own = apikeys.add_key(keys_file, "own-limit", limit="2/minute")
    default = apikeys.add_key(keys_file, "default-limit")
    client = _limited_app(demo_store, "4/minute", api_keys_file=str(keys_file)).test_client()
    answers = [
        client.post("/predict", json={"features": ROW}, headers={"X-API-Key": key})
        for key in (own, default) * 3
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 200]
    assert [a.headers["X-RateLimit-Limit"] for a in answers] == ["2", "4"] * 3
    assert sorted(parsed) == ["2/minute", "4/minute"]  # once each, not twice per request


@pytest.mark.parametrize("scheme", ["redis", "redis+unix"])
def test_a_silent_store_costs_a_request_its_timeout_not_a_hung_worker(demo_store, tmp_path, scheme):
    # A store that takes the connection and never answers: only the socket timeouts end the wait.
    silent = socket.socket(socket.AF_UNIX if scheme == "redis+unix" else socket.AF_INET)
    if scheme == "redis+unix":
        silent.bind(str(tmp_path / "redis.sock"))
        uri = f"redis+unix://{tmp_path / 'redis.sock'}"
    else:
        silent.bind(("127.0.0.1", 0))
        uri = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    silent.listen(8)
    client = _limited_app(demo_store, "5/minute", rate_limit_storage_uri=uri).test_client()
    answers: list = []

    def ask() -> None:
        started = time.monotonic()
        answer = client.post("/predict", json={"features": ROW})
        answers.append((answer, time.monotonic() - started))

    asking = threading.Thread(target=ask, daemon=True)
    try:
        asking.start()
        asking.join(10)
    finally:
        silent.close()
    assert answers, f"{scheme}: the request still waits on the store after 10 s"
    answer, waited = answers[0]
    assert answer.status_code == 200  # the default policy serves while the store is down
    # The store's 1 s timeouts bound the wait (redis-py's own default would be 5 s).
    assert waited < 3, f"{scheme}: {waited:.1f} s"
