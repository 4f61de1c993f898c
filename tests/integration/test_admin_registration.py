"""Admin registration behind real Gunicorn: converted to ONNX, never importing the converter."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import requests

from ml_app.core.model import PARITY_TOLERANCE
from tests.support import reference
from tests.support.http import predict_rows
from tests.support.polling import wait_until
from tests.support.server import GunicornServer
from tests.support.training import save_iris_forest, save_iris_nearest_centroid

TOKEN = "integration-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _register(url: str, artifact: Path) -> requests.Response:
    with artifact.open("rb") as upload:
        return requests.post(
            url + "/admin/models/iris/versions",
            files={"artifact": (artifact.name, upload)},
            headers=AUTH,
            timeout=60,
        )


def _wait_until_every_worker_loaded(server: GunicornServer, versions: set[str]) -> None:
    """Until every worker logged loading each of iris `versions` (the registering worker loads
    at once; the others at their next poll of the store, later on a busy machine)."""

    def loaded() -> bool:
        workers = server.worker_pids()
        done = {
            (entry["pid"], entry["version"])
            for entry in server.log_entries()
            if entry.get("model") == "iris" and "load_seconds" in entry and entry["level"] == "INFO"
        }
        return all((pid, version) in done for pid in workers for version in versions)

    wait_until(loaded, 30, f"every worker to load iris versions {sorted(versions)}")


def _converter_modules_of_every_worker(server: GunicornServer, reports: Path, since: float):
    """Each worker's converter modules, once every worker has reported after `since`."""

    def reported() -> dict[int, list[str]] | None:
        requests.get(server.url + "/health/live", timeout=5)
        pids = server.worker_pids()
        files = {pid: reports / f"{pid}.json" for pid in pids}
        fresh = all(f.exists() and f.stat().st_mtime >= since for f in files.values())
        return {pid: orjson.loads(f.read_bytes()) for pid, f in files.items()} if fresh else None

    return wait_until(reported, 30, "a report from every worker", interval=0.01)


def test_a_registered_forest_serves_on_onnx_and_no_worker_imports_the_converter(store, tmp_path):
    reports = tmp_path / "modules"
    reports.mkdir()
    server = GunicornServer(
        store,
        tmp_path / "server.log",
        workers=3,
        wait_for="/health/ready",
        config="tests/support/gunicorn_modules.conf.py",
        ML_APP_ADMIN_TOKEN=TOKEN,
        ML_APP_RELOAD_INTERVAL="0.5",
        MODULES_REPORT_DIR=str(reports),
    )
    with server:
        server.wait_for_workers()
        forest = _register(server.url, save_iris_forest(tmp_path / "forest.skops", trees=20))
        assert forest.status_code == 201, forest.text
        centroid = _register(server.url, save_iris_nearest_centroid(tmp_path / "centroid.skops"))
        assert centroid.status_code == 201, centroid.text
        # Each worker's report must come from after it loaded (and can serve) both versions.
        _wait_until_every_worker_loaded(server, {"2", "3"})
        loaded = time.time()

        modules = _converter_modules_of_every_worker(server, reports, loaded)
        assert len(modules) == 3
        assert modules == {pid: [] for pid in modules}
        assert forest.json()["backend"] == {"name": "onnx", "input_dtype": "float32"}
        assert centroid.json()["backend"]["name"] == "sklearn"

        def served() -> dict | None:
            described = requests.get(server.url + "/models/iris", timeout=5).json()
            versions = {v["version"]: v for v in described["versions"]}
            return versions if {"2", "3"} <= versions.keys() else None

        versions = wait_until(served, 30, "versions 2 and 3 on /models/iris")
        assert versions["2"]["metadata"]["backend"]["name"] == "onnx"
        assert versions["3"]["metadata"]["backend"]["name"] == "sklearn"
        assert "NearestCentroid" in versions["3"]["metadata"]["backend"]["reason"]

        rows = reference.sample_rows("iris", 30)
        fitted = reference.estimator(store, "iris", "2")
        answers = predict_rows(server.url, rows.tolist(), "/models/iris/versions/2/predict", 6)
        names = reference.class_names(store, "iris")
        for answer, want, label in zip(
            answers, fitted.predict_proba(rows), fitted.predict(rows), strict=True
        ):
            assert answer.status == 200, answer.body
            assert (answer.body["version"], answer.body["prediction"]) == ("2", names[label])
            got = [answer.body["probabilities"][name] for name in names]
            assert np.abs(np.array(got) - want).max() <= PARITY_TOLERANCE
