"""Start and stop a real Gunicorn serving ml_app on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import requests

from tests.support.polling import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Variables a developer's shell may carry that would change what a server under test does.
SETTING_PREFIXES = ("ML_APP_", "GUNICORN_")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without ML_APP_* and GUNICORN_* settings, plus `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    return {**kept, **extra}


def free_port() -> int:
    """A TCP port nobody listens on right now (another process may take it before it is used)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bound_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1: the port is held from this moment on.

    It does not listen (Gunicorn does, once it is up: until then connections are refused, as
    before any server), and without SO_REUSEADDR no other socket can bind the port meanwhile.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def terminate(process: subprocess.Popen | None, grace: float = 20) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps the process."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_http(url: str, alive: Callable[[], bool], timeout: float = 60) -> None:
    """Poll `url` until it answers 200; RuntimeError if `alive()` turns false or time runs out."""

    def answered() -> bool:
        if not alive():
            raise RuntimeError(f"the server exited early, before {url} answered 200")
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(answered, timeout, f"{url} to answer 200", interval=0.2)
    except AssertionError as exc:
        raise RuntimeError(str(exc)) from exc


class GunicornServer:
    """Real Gunicorn with gunicorn.conf.py; stdout goes to a log file the tests can read.

    The listening socket is made here and handed to Gunicorn (GUNICORN_BIND=fd://N): a port
    picked free and bound later, seconds into the start, could be taken meanwhile by any
    process on the machine (a client's ephemeral port, another test's server).
    """

    def __init__(
        self,
        store: Path,
        log_path: Path,
        workers: int = 3,
        wait_for: str = "/health/live",
        config: str = "gunicorn.conf.py",
        **env: str,
    ) -> None:
        self.wait_for = wait_for
        self.config = config  # relative to the project root
        self.listener = bound_socket()
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # Set before Python starts, as every start command must; one directory per server.
        self.metrics_dir = log_path.with_name(log_path.stem + "-metrics")
        self.workers = workers
        defaults = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "ML_APP_STORE": str(store),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        }
        self.env = clean_environment(**{**defaults, **env})
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> GunicornServer:
        """Start and wait until `wait_for` answers 200 or the process dies."""
        with self.listener, self.log_path.open("wb") as log:
            # Gunicorn owns the socket from here on; once it stops, the port refuses connections.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", self.config],
                cwd=PROJECT_ROOT,
                env={**self.env, "GUNICORN_BIND": f"fd://{self.listener.fileno()}"},
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self.listener.fileno(),),
            )
        try:
            wait_for_http(self.url + self.wait_for, lambda: self.process.poll() is None, timeout)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"gunicorn: {exc}:\n{self.log_path.read_text()}") from exc
        return self

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it lingers; always reaps the process."""
        self.listener.close()  # a server never started lets go of its port too
        terminate(self.process)

    def worker_pids(self) -> set[int]:
        """The PIDs of the master's children right now: its workers."""
        assert self.process is not None
        pids: set[int] = set()
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids.update(int(pid) for pid in children.read_text().split())
        return pids

    def wait_for_workers(self, gone: set[int] = frozenset()) -> set[int]:
        """Wait (bounded) until the master has all its workers again, none of them in `gone`."""

        def settled() -> set[int] | None:
            pids = self.worker_pids()
            return pids if len(pids) == self.workers and not pids & gone else None

        return wait_until(settled, 30, f"{self.workers} workers, none of {sorted(gone)}")

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON lines the server wrote (gunicorn's plain lines are skipped)."""
        entries = []
        for line in self.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                entries.append(orjson.loads(line))
        return entries

    def served_in(self, request_id: str) -> float:
        """Seconds the server spent on a request, from its access line: unlike the client's
        clock, it leaves out the time the request queued for a worker on a busy machine."""
        (entry,) = [e for e in self.log_entries() if e.get("request_id") == request_id]
        return entry["latency_ms"] / 1000

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def ready_gunicorn(
    store: Path, folder: Path, workers: int = 3, **env: str
) -> Iterator[GunicornServer]:
    """Gunicorn on `store`, logging into `folder`, once every model is ready and every worker up."""
    log = folder / "server.log"
    with GunicornServer(store, log, workers=workers, wait_for="/health/ready", **env) as running:
        running.wait_for_workers()
        yield running
