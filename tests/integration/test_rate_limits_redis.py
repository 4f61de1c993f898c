"""Rate limits on a real Redis shared by two Gunicorn servers (2 workers each, two replicas)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from ml_app.core import apikeys
from tests.support.redis_server import RedisServer
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer

LIMIT = 120  # rows per client per hour; the window starts at the client's first request
SENT = 300


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as running:
        yield running


def _replicas(stack: ExitStack, store: Path, folder: Path, redis_url: str, **env: str):
    settings = {
        "ML_APP_RATE_LIMIT": f"{LIMIT}/hour",
        "ML_APP_RATE_LIMIT_STORAGE_URI": redis_url,
        "ML_APP_PROXY_HOPS": "1",  # the client address comes from X-Forwarded-For
        **env,
    }
    servers = []
    for name in ("a", "b"):
        server = GunicornServer(store, folder / f"{name}.log", workers=2, **settings)
        servers.append(stack.enter_context(server))
        server.wait_for_workers()
    return servers


def _predict(url: str, client: str, rows: int = 1, key: str | None = None) -> requests.Response:
    headers = {"X-Forwarded-For": client}
    if key is not None:
        headers["X-API-Key"] = key
    if rows == 1:
        return requests.post(
            f"{url}/predict", json={"features": IRIS_SETOSA}, headers=headers, timeout=10
        )
    body = {"instances": [IRIS_SETOSA] * rows}
    return requests.post(f"{url}/predict/batch", json=body, headers=headers, timeout=10)


def _spread(
    servers: list[GunicornServer], client: str, count: int, key: str | None = None
) -> list[requests.Response]:
    """`count` one-row predictions from `client`, alternating replicas, 8 at a time."""
    urls = [servers[i % len(servers)].url for i in range(count)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda url: _predict(url, client, key=key), urls))


def test_two_replicas_give_exactly_the_limit(demo_store, tmp_path, redis_server):
    with ExitStack() as stack:
        servers = _replicas(stack, demo_store, tmp_path, redis_server.url)
        answers = _spread(servers, "203.0.113.7", SENT)
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {200: LIMIT, 429: SENT - LIMIT}
        # Each answer says what its own charge left: every count from LIMIT - 1 down to 0 once.
        served = [a for a in answers if a.status_code == 200]
        assert sorted(int(a.headers["X-RateLimit-Remaining"]) for a in served) == list(range(LIMIT))
        for refused in (a for a in answers if a.status_code == 429):
            assert refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 3600
            assert refused.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert {a.json()["prediction"] for a in answers if a.status_code == 200} == {"setosa"}
        # Another client is counted apart; a 100-row batch costs 100 of its rows.
        other = "198.51.100.9"
        assert _predict(servers[0].url, other, rows=100).status_code == 200
        after_batch = Counter(a.status_code for a in _spread(servers, other, 40))
        assert after_batch == {200: LIMIT - 100, 429: 40 - (LIMIT - 100)}


def test_a_key_with_its_own_limit_gets_exactly_that_many(demo_store, tmp_path, redis_server):
    keys_file = tmp_path / "keys.json"
    own_limit = 45
    own = apikeys.add_key(keys_file, "own-limit", limit=f"{own_limit}/hour")
    default = apikeys.add_key(keys_file, "default-limit")
    with ExitStack() as stack:
        servers = _replicas(
            stack, demo_store, tmp_path, redis_server.url, ML_APP_API_KEYS_FILE=str(keys_file)
        )
        # One client address for both keys: the key id, not the address, is what is counted.
        own_answers = _spread(servers, "203.0.113.9", 100, key=own)
        default_answers = _spread(servers, "203.0.113.9", 200, key=default)
        assert Counter(a.status_code for a in own_answers) == {200: own_limit, 429: 100 - own_limit}
        assert Counter(a.status_code for a in default_answers) == {200: LIMIT, 429: 200 - LIMIT}
        refused = next(a for a in own_answers if a.status_code == 429)
        assert refused.json()["code"] == "rate_limited"
        assert refused.headers["X-RateLimit-Limit"] == str(own_limit)
        served = next(a for a in default_answers if a.status_code == 200)
        assert served.json()["prediction"] == "setosa"


@pytest.mark.parametrize(("policy", "status"), [("open", 200), ("closed", 503)])
def test_redis_stopped_mid_run(demo_store, tmp_path, redis_server, policy, status):
    with ExitStack() as stack:
        servers = _replicas(
            stack, demo_store, tmp_path, redis_server.url, ML_APP_RATE_LIMIT_REDIS_DOWN=policy
        )
        before = Counter(a.status_code for a in _spread(servers, "203.0.113.8", 20))
        assert before == {200: 20}
        redis_server.stop()
        answers = _spread(servers, "203.0.113.8", 20)
        assert Counter(a.status_code for a in answers) == {status: 20}
        if policy == "closed":
            assert {a.json()["code"] for a in answers} == {"rate_limit_store_unavailable"}
        else:
            assert {a.json()["prediction"] for a in answers} == {"setosa"}


def test_memory_storage_is_refused_with_several_workers(demo_store, tmp_path):
    server = GunicornServer(
        demo_store, tmp_path / "server.log", workers=2, ML_APP_RATE_LIMIT=f"{LIMIT}/hour"
    )
    with pytest.raises(RuntimeError, match="memory:// storage counts per worker"):
        server.start(timeout=30)
