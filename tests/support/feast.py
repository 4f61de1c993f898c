"""A real Feast feature server: its own virtualenv, a feature repo, `feast serve` on loopback.

Feast never enters .venv (it requires an older prometheus_client): it is installed from
tests/support/feast-requirements.txt into `.e2e/feast-venv`, once, and reused while that file
is unchanged. The repo has an sqlite online store and one parquet file source per data set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import requests

from tests.support.polling import wait_until
from tests.support.server import PROJECT_ROOT, clean_environment, free_port

REQUIREMENTS = Path(__file__).with_name("feast-requirements.txt")
VENV = PROJECT_ROOT / ".e2e" / "feast-venv"
ENTITY_KEY = "row_id"
_EVENT_TIME = "2024-01-01T00:00:00+00:00"
_STORE_YAML = """\
project: ml_app_e2e
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""
# Written by the feast virtualenv's Python: a parquet file per data set, rows from JSON (exact).
_WRITE_PARQUET = """\
import json, sys
import pandas as pd
for name, table in json.load(open(sys.argv[1])).items():
    frame = pd.DataFrame(table["rows"], columns=table["features"])
    frame["row_id"] = range(len(frame))
    frame["event_timestamp"] = pd.Timestamp(sys.argv[2])
    frame.to_parquet(f"data/{name}.parquet")
"""
_FEATURE_VIEWS = """\
import json
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

row = Entity(name="row_id", join_keys=["row_id"], value_type=ValueType.INT64)
for name, features in json.loads(Path(__file__).with_name("views.json").read_text()).items():
    globals()[f"{name}_features"] = FeatureView(
        name=f"{name}_features",
        entities=[row],
        ttl=timedelta(days=36500),
        schema=[Field(name=feature, dtype=Float64) for feature in features],
        source=FileSource(path=f"data/{name}.parquet", timestamp_field="event_timestamp"),
        online=True,
    )
"""


def feast_venv() -> Path:
    """The virtualenv's bin folder, created (about 40 s) unless the pinned set is installed."""
    stamp = VENV / "requirements.txt"
    if stamp.is_file() and stamp.read_bytes() == REQUIREMENTS.read_bytes():
        return VENV / "bin"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=120)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=900)
    stamp.write_bytes(REQUIREMENTS.read_bytes())  # last: a failed install is retried next time
    return VENV / "bin"


def write_feature_repo(repo: Path, tables: dict[str, tuple[list[str], np.ndarray]]) -> None:
    """A feature repo with a view `<name>_features` per table (feature names, rows)."""
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(_STORE_YAML)
    (repo / "features.py").write_text(_FEATURE_VIEWS)
    (repo / "views.json").write_text(json.dumps({n: f for n, (f, _) in tables.items()}))
    rows = {n: {"features": f, "rows": r.tolist()} for n, (f, r) in tables.items()}
    (repo.parent / "rows.json").write_text(json.dumps(rows))
    (repo.parent / "write_parquet.py").write_text(_WRITE_PARQUET)


def _feast(bin_dir: Path, repo: Path, *args: str, timeout: float = 300) -> None:
    subprocess.run(
        [str(bin_dir / "feast"), *args],
        cwd=repo,
        env=clean_environment(),
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def materialize(bin_dir: Path, repo: Path) -> None:
    """Write the parquet files, `feast apply`, then `feast materialize` into sqlite."""
    script, rows = repo.parent / "write_parquet.py", repo.parent / "rows.json"
    subprocess.run(
        [str(bin_dir / "python"), str(script), str(rows), _EVENT_TIME],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=120,
    )
    _feast(bin_dir, repo, "apply")
    _feast(bin_dir, repo, "materialize", "2023-12-01T00:00:00", "2024-02-01T00:00:00")


class FeastServer:
    """`feast serve` on a free loopback port, in its own process group (stopped as one)."""

    def __init__(self, bin_dir: Path, repo: Path) -> None:
        self.bin_dir, self.repo = bin_dir, repo
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> FeastServer:
        """Start and wait until /health answers."""
        command = [str(self.bin_dir / "feast"), "serve", "-h", "127.0.0.1", "-p", str(self.port)]
        with (self.repo.parent / "feast-serve.log").open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.repo,
                env=clean_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._healthy, 120, f"feast serve on port {self.port}", interval=0.5)
        return self

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "feast serve exited"
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL if it lingers; always reaps the process."""
        if self.process is None:
            return
        _signal_group(self.process.pid, signal.SIGTERM)  # its workers too, even if it exited
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def __enter__(self) -> FeastServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
