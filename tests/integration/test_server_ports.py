"""The servers the tests start keep their port from others on a busy machine.

A port picked free is bound only seconds later, when the server is up: meanwhile any process
(a client's ephemeral port, another test run's server) may take it.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest
import redis
import requests

from tests.support.redis_server import RedisServer
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer


def test_gunicorns_port_is_held_from_the_moment_it_is_chosen(demo_store: Path, tmp_path: Path):
    server = GunicornServer(demo_store, tmp_path / "server.log", workers=2)
    with socket.socket() as squatter, pytest.raises(OSError) as taken:
        squatter.bind(("127.0.0.1", server.port))
    assert taken.value.errno == errno.EADDRINUSE
    with server:
        answer = requests.post(server.url + "/predict", json={"features": IRIS_SETOSA}, timeout=10)
        assert (answer.status_code, answer.json()["prediction"]) == (200, "setosa")
    with socket.socket() as client:  # stopped: nothing holds the port any more
        assert client.connect_ex(("127.0.0.1", server.port)) == errno.ECONNREFUSED


def test_redis_moves_to_another_port_when_its_own_was_taken(tmp_path: Path):
    redis_server = RedisServer(tmp_path)
    taken_port = redis_server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken_port))
        squatter.listen(1)
        with redis_server:
            assert redis_server.port != taken_port
            with redis.Redis.from_url(redis_server.url) as client:
                assert client.info("server")["process_id"] == redis_server.process.pid
                assert client.set("answered-by", "this test's redis-server")
