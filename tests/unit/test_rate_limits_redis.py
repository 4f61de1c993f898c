"""Rate limits counted in a real Redis, in process: round trips, header values, Redis restarts."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from ml_app import create_app
from tests.support.redis_server import RedisServer
from tests.support.reference import IRIS_SETOSA


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as running:
        yield running


def _client(demo_store: Path, redis_url: str, limit: str, **more: str) -> FlaskClient:
    settings = {"rate_limit": limit, "rate_limit_storage_uri": redis_url, **more}
    return create_app({"store": demo_store, **settings}).test_client()


def _predict(client: FlaskClient, rows: int = 1):
    if rows == 1:
        return client.post("/predict", json={"features": IRIS_SETOSA})
    return client.post("/predict/batch", json={"instances": [IRIS_SETOSA] * rows})


def _calls(server: RedisServer) -> dict[str, int]:
    """Commands Redis has run since its statistics were reset, by name (scripts' own included)."""
    with redis.Redis.from_url(server.url) as connection:
        stats = connection.info("commandstats")
    return {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}


def test_a_charge_and_its_headers_cost_one_round_trip(demo_store, redis_server):
    client = _client(demo_store, redis_server.url, "1000/minute")
    assert _predict(client).status_code == 200  # the first loads the script into Redis
    with redis.Redis.from_url(redis_server.url) as connection:
        connection.config_resetstat()
    answers = [_predict(client) for _ in range(5)]
    remaining = [int(a.headers["X-RateLimit-Remaining"]) for a in answers]
    assert remaining == [998, 997, 996, 995, 994]
    calls = _calls(redis_server)
    # One script call per charge; no GET and TTL afterwards for the headers.
    assert calls.get("evalsha") == 5
    assert calls.get("get", 0) == 0 and calls.get("ttl", 0) == 0
    assert calls.get("incrby") == 5


def test_the_headers_come_from_the_charge(demo_store, redis_server):
    client = _client(demo_store, redis_server.url, "5/minute")
    started = time.time()
    answers = [_predict(client, rows=2), _predict(client, rows=2), _predict(client)]
    refused = _predict(client)
    assert [a.status_code for a in answers] == [200, 200, 200] and refused.status_code == 429
    assert [a.headers["X-RateLimit-Remaining"] for a in (*answers, refused)] == ["3", "1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in (*answers, refused)} == {"5"}
    resets = {int(a.headers["X-RateLimit-Reset"]) for a in (*answers, refused)}
    assert len(resets) == 1  # one window, which began with the first charge
    (reset,) = resets
    assert started + 59 <= reset <= math.ceil(time.time()) + 60
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert abs(reset - time.time() - int(refused.headers["Retry-After"])) <= 2
    assert refused.get_json()["code"] == "rate_limited"
    assert "Retry-After" not in answers[0].headers


def test_counts_survive_a_restarted_redis(demo_store, redis_server):
    client = _client(demo_store, redis_server.url, "3/minute", rate_limit_redis_down="open")
    assert _predict(client).headers["X-RateLimit-Remaining"] == "2"
    redis_server.stop()
    down = _predict(client)  # served without a limit, and without rate-limit headers
    assert down.status_code == 200 and down.get_json()["prediction"] == "setosa"
    assert "X-RateLimit-Remaining" not in down.headers
    redis_server.start()  # same port, empty, without the script: it is loaded again
    statuses = [_predict(client) for _ in range(4)]
    assert [a.status_code for a in statuses] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in statuses] == ["2", "1", "0", "0"]


@pytest.mark.parametrize(("policy", "status"), [("open", 200), ("closed", 503)])
def test_redis_stopped_between_requests_follows_the_policy(
    demo_store, redis_server, policy, status
):
    client = _client(demo_store, redis_server.url, "3/minute", rate_limit_redis_down=policy)
    assert _predict(client).status_code == 200
    redis_server.stop()
    answer = _predict(client)
    assert answer.status_code == status
    if policy == "closed":
        assert answer.get_json()["code"] == "rate_limit_store_unavailable"
    else:
        assert answer.get_json()["prediction"] == "setosa"


def test_several_limits_each_charge_once_and_the_headers_need_no_read(demo_store, redis_server):
    client = _client(demo_store, redis_server.url, "3/minute;10/hour")
    assert _predict(client).status_code == 200  # the first loads the script into Redis
    with redis.Redis.from_url(redis_server.url) as connection:
        connection.config_resetstat()
    answers = [_predict(client) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    # The headers speak of the minute: the smallest window, then the one that was breached.
    assert [a.headers["X-RateLimit-Limit"] for a in answers] == ["3", "3", "3"]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    calls = _calls(redis_server)
    # Each limit charged once per request until the first breach (the hour's is not charged
    # then): 2 + 2 + 1 script calls, and no read for the headers.
    assert calls.get("evalsha") == 5
    assert calls.get("get", 0) == 0 and calls.get("ttl", 0) == 0
