"""Start and stop a real Prometheus server (Debian package `prometheus`) on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests
import yaml

from ml_app.core.config import PROJECT_ROOT
from tests.support.polling import wait_until
from tests.support.prometheus import PROMTOOL_MISSING
from tests.support.server import free_port, terminate

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"


def config_for(target: str, token: str | None = None) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, pointed at `target` and scraping every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    if token:
        job["authorization"] = {"credentials": token}
    return config


class PrometheusServer:
    """Prometheus with a given config and a throwaway TSDB; its log goes to a file."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> PrometheusServer:
        """Start and wait until /-/ready answers 200 or the process dies."""
        binary = shutil.which("prometheus")
        assert binary, PROMTOOL_MISSING
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._ready, timeout, "Prometheus to be ready", interval=0.25)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited early:\n{self.log_path.read_text()}")
        try:
            return True if requests.get(self.url + "/-/ready", timeout=1).ok else None
        except requests.ConnectionError:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaps the process."""
        terminate(self.process)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` member of a successful answer."""
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def scalar(self, expr: str) -> float | None:
        """The single value an instant query returns, or None when it returns nothing."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
