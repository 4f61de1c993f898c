"""deploy/healthcheck.py (the image's HEALTHCHECK) against real Gunicorn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import (
    PROJECT_ROOT,
    GunicornServer,
    clean_environment,
    free_port,
    ready_gunicorn,
)

HEALTHCHECK = PROJECT_ROOT / "deploy" / "healthcheck.py"


def run_healthcheck(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env=clean_environment(PORT=str(port)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthy_when_every_model_is_loaded(demo_store: Path, tmp_path: Path):
    with ready_gunicorn(demo_store, tmp_path, workers=2) as server:
        result = run_healthcheck(server.port)
    assert result.returncode == 0, result.stderr


def test_unhealthy_when_a_model_failed_to_load(store: Path, tmp_path: Path):
    artifact = store / "iris" / "1" / "model.skops"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")  # sha256 no longer matches
    with GunicornServer(store, tmp_path / "server.log", workers=2) as server:
        result = run_healthcheck(server.port)
    assert result.returncode == 1
    assert "503" in result.stderr


def test_unhealthy_when_nothing_listens():
    result = run_healthcheck(free_port())
    assert result.returncode == 1
    assert "not ready" in result.stderr
