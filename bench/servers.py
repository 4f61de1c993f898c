"""Gunicorn servers for the benchmark: started with the project's gunicorn.conf.py, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One Gunicorn master and its workers; the app's stdout is discarded, stderr kept."""

    def __init__(
        self, name: str, app: str | None, workers: int, log_dir: Path, ready: str | None, **env: str
    ) -> None:
        self.name = name
        self.root = PROJECT_ROOT  # the checkout whose code it serves (set another to compare)
        self.ready = ready  # a path that answers 200 when ready; None: any HTTP answer will do
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{workers}w.log"
        # gunicorn.conf.py requires a Prometheus multiprocess directory private to each server.
        metrics_dir = log_dir / f"metrics-{name}-{workers}w-{self.port}"
        metrics_dir.mkdir()
        command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
        self.command = command + ([app] if app else [])
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            # Recycling a worker every ~10,000 requests guards against slow leaks in production;
            # at thousands of requests a second it would measure fork() instead of requests.
            "GUNICORN_MAX_REQUESTS": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        """Start, and wait until it is ready to serve."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.root,
                env=self.env,
                stdout=subprocess.DEVNULL,  # one JSON line per request: formatted, then dropped
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_path.read_text()}")
            if self._answers():
                return
            time.sleep(0.2)
        log = self.log_path.read_text()
        raise RuntimeError(f"{self.name} did not answer in {timeout}s:\n{log}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + (self.ready or "/"), timeout=2):  # noqa: S310
                return True
        except urllib.error.HTTPError:
            return self.ready is None
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it lingers; always reaps."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def worker_pids(self) -> list[int]:
        """The master's child processes (its workers)."""
        assert self.process is not None
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        children.append(int(entry.name))
        return sorted(children)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the master and its workers have used so far."""
        assert self.process is not None
        return sum(cpu_seconds(pid) for pid in (self.process.pid, *self.worker_pids()))


def cpu_seconds(pid: int) -> float:
    """A live process's CPU time so far, from /proc/<pid>/stat (utime + stime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # it just exited
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kib(pid: int) -> int:
    """Proportional set size of a process: shared pages count 1/N to each of N sharers."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss line for pid {pid}")


def post(url: str, body: bytes) -> bytes:
    """One POST; raises on a non-2xx answer."""
    # The URLs are http://127.0.0.1:<port> of servers the benchmark started itself.
    request = urllib.request.Request(  # noqa: S310
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST {url} answered {exc.code}: {exc.read()[:300]!r}") from exc


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start every server (stopping them all on the way out, whatever happens)."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
