"""Start and stop a real Redis (Debian package `redis-server`) on a free loopback port."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.debian import ensure_commands
from tests.support.polling import wait_until
from tests.support.server import free_port, terminate


class RedisServer:
    """redis-server with no persistence, bound to 127.0.0.1; its log goes to a file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        """Start and wait until it answers PING."""
        (binary,) = ensure_commands(("redis-server",), ("redis-server",))
        arguments = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(self.workdir)]
        with (self.workdir / "redis.log").open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *arguments], stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._answers, 30, f"redis-server on port {self.port}", interval=0.1)
        return self

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "redis-server exited"
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaps the process."""
        terminate(self.process)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
