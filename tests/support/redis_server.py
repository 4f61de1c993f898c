"""Start and stop a real Redis (Debian package `redis-server`) on a free loopback port."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.debian import ensure_commands
from tests.support.polling import wait_until
from tests.support.server import free_port, terminate

PORT_ATTEMPTS = 5


class RedisServer:
    """redis-server with no persistence, bound to 127.0.0.1; its log goes to a file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._use_port(free_port())
        self.process: subprocess.Popen | None = None
        self.started = False  # answered once: a restart must keep its port

    def start(self) -> RedisServer:
        """Start and wait until it answers PING; on a first start, another port if it was taken.

        redis-server cannot be handed a bound socket: between picking a free port and binding
        it, any process may take it (then redis-server exits, and another port is tried). A
        restart keeps the port, as the clients using it expect.
        """
        for _ in range(PORT_ATTEMPTS):
            self._launch()
            wait_until(self._answers_or_exited, 30, f"redis-server on port {self.port}", 0.1)
            if self.process.poll() is None:
                return self
            if self.started or b"Address already in use" not in self._log().read_bytes():
                raise AssertionError(f"redis-server exited:\n{self._log().read_text()}")
            self._use_port(free_port())
        raise AssertionError(f"redis-server found no free port in {PORT_ATTEMPTS} tries")

    def _launch(self) -> None:
        (binary,) = ensure_commands(("redis-server",), ("redis-server",))
        arguments = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(self.workdir)]
        with self._log().open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *arguments], stdout=log, stderr=subprocess.STDOUT
            )

    def _answers_or_exited(self) -> bool:
        """True once it answers PING itself (not another process on its port) or has exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            return True
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                answered = client.info("server")["process_id"] == self.process.pid
        except (redis.ConnectionError, redis.TimeoutError):  # not up, or another's port
            return False
        self.started = self.started or answered
        return answered

    def _log(self) -> Path:
        return self.workdir / "redis.log"

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaps the process."""
        terminate(self.process)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
