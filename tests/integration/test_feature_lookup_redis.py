"""Predictions by entity id on real Gunicorn (2 workers) with a real redis-server as the source.

`features seed-demo --declare` writes the demo data sets to Redis and registers version 2 of
each demo model, reading its features from there; version 3 of iris reads from a socket that
accepts connections and never answers.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from tests.support.redis_server import RedisServer
from tests.support.reference import IRIS_FEATURES, sample_rows
from tests.support.server import PROJECT_ROOT, GunicornServer, clean_environment

TIMEOUT = 0.4  # ML_APP_FEATURE_STORE_TIMEOUT
# What a refused or timed-out request may take in the server beyond the timeout (busy 2 cores).
SLACK = 0.6
DEMO_MODELS = ("iris", "breast_cancer", "diabetes")
SAMPLE_IDS = list(range(0, 140, 7))  # 20 entities of each data set


def _command(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "ml_app", *args],
        cwd=PROJECT_ROOT,
        env=clean_environment(),
        check=True,
        capture_output=True,
        timeout=180,
    )


class SilentRedis:
    """A listening socket that never answers: a Redis that hangs. The test takes (and keeps
    open) the connections made to it, to count them."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []

    def new_connections(self) -> int:
        """How many connections were made since the last call (all wait in the queue)."""
        count = 0
        while True:
            try:
                connection, _ = self.listener.accept()
            except BlockingIOError:
                return count
            self.held.append(connection)  # never answered, never reset
            count += 1

    def close(self) -> None:
        """Close the held connections and the listener."""
        for connection in self.held:
            connection.close()
        self.listener.close()


@pytest.fixture(scope="module")
def silent_redis() -> Iterator[SilentRedis]:
    """A Redis that accepts connections and never answers."""
    silent = SilentRedis()
    yield silent
    silent.close()


@pytest.fixture(scope="module")
def setup(
    demo_store, tmp_path_factory, silent_redis
) -> Iterator[tuple[GunicornServer, RedisServer, SilentRedis]]:
    folder = tmp_path_factory.mktemp("features")
    store = folder / "store"
    subprocess.run(["cp", "-r", str(demo_store), str(store)], check=True)
    with RedisServer(folder) as redis_server:
        _command(
            "features", "seed-demo", "--redis", redis_server.url, "--store", str(store), "--declare"
        )
        artifact = store / "iris" / "1" / "model.skops"
        silent = f"redis://127.0.0.1:{silent_redis.port}/0"
        _command("models", "--store", str(store), "register", "iris", str(artifact),
                 "--entity-key", "row_id", "--feature-source", silent)  # fmt: skip
        settings = {"ML_APP_FEATURE_STORE_TIMEOUT": str(TIMEOUT)}
        server = GunicornServer(
            store, folder / "gunicorn.log", workers=2, wait_for="/health/ready", **settings
        )
        with server:
            server.wait_for_workers()
            yield server, redis_server, silent_redis


def _post(server: GunicornServer, path: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=10)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_predicting_by_entity_id_equals_predicting_with_the_features(setup, name):
    server, *_ = setup
    path = f"/models/{name}/versions/2/predict"
    rows = sample_rows(name, 10_000)[SAMPLE_IDS]  # every row: entity id = row index
    by_features = _post(server, path, {"instances": rows.tolist()})
    by_id = _post(server, path, {"entities": [{"row_id": i} for i in SAMPLE_IDS]})
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == by_features.json()
    assert len(by_id.json()["predictions"]) == len(SAMPLE_IDS)
    assert by_id.headers["X-Model-Version"] == "2"


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_graphql_by_entity_id_equals_rest_by_features(setup, name):
    server, *_ = setup
    rows = sample_rows(name, 10_000)[SAMPLE_IDS]
    rest = _post(server, f"/models/{name}/versions/2/predict", {"instances": rows.tolist()})
    query = (
        "query($model: String!, $entities: JSON!) "
        '{ predict(model: $model, version: "2", entities: $entities) { version predictions } }'
    )
    entities = [{"row_id": i} for i in SAMPLE_IDS]
    answer = _post(
        server, "/graphql", {"query": query, "variables": {"model": name, "entities": entities}}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "data": {"predict": {"version": "2", "predictions": rest.json()["predictions"]}}
    }


def test_unknown_id_is_422_naming_it(setup):
    server, *_ = setup
    body = {"entities": [{"row_id": 3}, {"row_id": 987654}]}
    answer = _post(server, "/models/iris/versions/2/predict", body)
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_input"
    assert "987654" in answer.json()["error"]
    assert list(answer.json()["details"]) == ["entities.1.row_id"]


def test_given_and_looked_up_features_mix(setup):
    server, *_ = setup
    stored = sample_rows("iris", 10_000)[0].tolist()  # setosa
    given = {"petal_length": 5.9, "petal_width": 2.1}  # virginica's petals
    mixed = [*stored[:2], 5.9, 2.1]
    path = "/models/iris/versions/2/predict"
    by_id = _post(server, path, {"entities": [{"row_id": 0, **given}]})
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == _post(server, path, {"instances": [mixed]}).json()
    assert (
        by_id.json()["predictions"]
        != _post(server, path, {"instances": [stored]}).json()["predictions"]
    )
    assert IRIS_FEATURES[2:] == list(given)


def test_a_redis_that_never_answers_is_504_within_the_timeout(setup):
    server, _, silent = setup
    silent.new_connections()
    answer = _post(server, "/models/iris/versions/3/predict", {"entities": [{"row_id": 1}]})
    assert answer.status_code == 504
    assert answer.json()["code"] == "feature_store_timeout"
    assert set(answer.json()) == {"error", "code", "status", "request_id", "details"}
    assert TIMEOUT <= server.served_in(answer.headers["X-Request-ID"]) < TIMEOUT + SLACK
    # it gave up after one wait: no second connection, no retry behind the timeout
    assert silent.new_connections() == 1


def test_a_stopped_redis_is_503_within_the_timeout(setup):
    # Last in the module: it stops the Redis the other tests read.
    server, redis_server, _ = setup
    row = sample_rows("diabetes", 10_000)[5].tolist()
    served = _post(server, "/models/diabetes/versions/2/predict", {"features": row}).json()
    redis_server.stop()
    for _ in range(4):  # both workers, each with connections made before Redis stopped
        answer = _post(server, "/models/diabetes/versions/2/predict", {"entities": [{"row_id": 5}]})
        assert answer.status_code == 503
        assert answer.json()["code"] == "feature_store_unavailable"
        assert server.served_in(answer.headers["X-Request-ID"]) < TIMEOUT + SLACK
    # Answers by features go on as before.
    assert _post(server, "/models/diabetes/versions/2/predict", {"features": row}).json() == served
    # Redis back (empty: no persistence): each worker reconnects on its own, no restart.
    redis_server.start()
    for _ in range(4):
        answer = _post(server, "/models/diabetes/versions/2/predict", {"entities": [{"row_id": 5}]})
        assert answer.status_code == 422
        assert list(answer.json()["details"]) == ["entities.0.row_id"]
