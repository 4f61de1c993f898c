"""Versions registered while the real image runs: converted to ONNX in a child process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import skops.io
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import NearestCentroid

from ml_app.core.model import PARITY_TOLERANCE
from tests.e2e.containers import LIKE_KUBERNETES, Container, docker
from tests.support.polling import wait_until

TOKEN = "e2e-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "breast_cancer"
# Per gunicorn process in the container: does its memory map hold onnx's compiled extension?
# skl2onnx imports onnx, so neither was imported where it is absent (the image has no ps).
CONVERTER_MAPPED = (
    "import pathlib\n"
    "for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
    "    if (p / 'comm').read_text().strip() == 'gunicorn':\n"
    "        print(p.name, '/site-packages/onnx/' in (p / 'maps').read_text())\n"
)


@pytest.fixture(scope="module")
def estimators() -> dict[str, Any]:
    """A 100-tree forest (converts) and a NearestCentroid (does not), fitted on breast_cancer."""
    x, y = datasets.load_breast_cancer(return_X_y=True)
    return {
        "forest": RandomForestClassifier(n_estimators=100, random_state=1).fit(x, y),
        "centroid": NearestCentroid().fit(x, y),
    }


@pytest.fixture(scope="module")
def artifacts(estimators, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The estimators saved with skops, as <name>.skops in one folder."""
    folder = tmp_path_factory.mktemp("artifacts")
    for name, estimator in estimators.items():
        skops.io.dump(estimator, folder / f"{name}.skops")
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def running(image: str, artifacts: Path, tmp_path_factory) -> Iterator[Container]:
    """The image with the admin API on, its store copied out to a volume the app may write."""
    folder = tmp_path_factory.mktemp("registration")
    created = docker("create", image).stdout.strip()
    try:
        docker("cp", f"{created}:/app/model/store", str(folder / "store"))
    finally:
        docker("rm", created, check=False)
    for path in [folder / "store", *(folder / "store").rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)  # the image's user is uid 10001
    volumes = (f"--volume={folder / 'store'}:/store", f"--volume={artifacts}:/artifacts:ro")
    container = Container(
        image,
        folder,
        (*LIKE_KUBERNETES, *volumes),
        WEB_CONCURRENCY="2",
        ML_APP_ADMIN_TOKEN=TOKEN,
        ML_APP_STORE="/store",
        ML_APP_RELOAD_INTERVAL="0.5",
    )
    try:
        yield container.start()
    finally:
        container.remove()


def _register(container: Container, artifact: Path) -> requests.Response:
    with artifact.open("rb") as upload:
        return requests.post(
            f"{container.url}/admin/models/{MODEL}/versions",
            files={"artifact": (artifact.name, upload)},
            headers=AUTH,
            timeout=60,
        )


def _served(container: Container, version: str) -> dict:
    """The version as served, once every worker has it: each answer comes from whichever
    worker takes the connection, so ten loaded answers in a row are asked for, not one."""

    def loaded() -> dict | None:
        described = requests.get(
            f"{container.url}/models/{MODEL}", headers=container.auth, timeout=10
        ).json()
        found = [v for v in described["versions"] if v["version"] == version]
        return found[0] if found and found[0]["state"] == "loaded" else None

    def loaded_everywhere() -> dict | None:
        answers = [loaded() for _ in range(10)]
        return answers[-1] if all(answers) else None

    return wait_until(loaded_everywhere, 30, f"version {version} loaded by every worker")


def _answers(container: Container, version: str, rows: np.ndarray) -> list[dict]:
    url = f"{container.url}/models/{MODEL}/versions/{version}/predict/batch"
    answer = requests.post(
        url, json={"instances": rows.tolist()}, headers=container.auth, timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == version
    return list(zip(body["predictions"], body["probabilities"], strict=True))


def test_a_registered_forest_serves_on_onnx_like_scikit_learn(running, artifacts, estimators):
    registered = _register(running, artifacts / "forest.skops")
    assert registered.status_code == 201, registered.text
    assert registered.json()["backend"] == {"name": "onnx", "input_dtype": "float32"}
    version = registered.json()["version"]
    backend = _served(running, version)["metadata"]["backend"]
    assert (backend["name"], backend["input_dtype"]) == ("onnx", "float32")

    rows = datasets.load_breast_cancer().data
    fitted = estimators["forest"]
    names = ["malignant", "benign"]
    answers = _answers(running, version, rows)
    for (label, probabilities), want_label, want in zip(
        answers, fitted.predict(rows), fitted.predict_proba(rows), strict=True
    ):
        assert label == names[want_label]
        got = np.array([probabilities[name] for name in names])
        assert np.abs(got - want).max() <= PARITY_TOLERANCE

    mapped = running.exec("python", "-c", CONVERTER_MAPPED)
    assert mapped.returncode == 0, mapped.stderr
    processes = dict(line.split() for line in mapped.stdout.splitlines())
    assert len(processes) == 3  # the master and two workers, none with the converter
    assert set(processes.values()) == {"False"}, processes


def test_an_unconvertible_version_serves_on_scikit_learn_and_says_so(
    running, artifacts, estimators
):
    registered = _register(running, artifacts / "centroid.skops")
    assert registered.status_code == 201, registered.text
    backend = registered.json()["backend"]
    assert backend["name"] == "sklearn"
    assert "NearestCentroid" in backend["reason"]
    version = registered.json()["version"]
    served = _served(running, version)["metadata"]["backend"]
    assert served["name"] == "sklearn"
    assert "NearestCentroid" in served["reason"]

    rows = datasets.load_breast_cancer().data[:50]
    fitted = estimators["centroid"]
    labels = [label for label, _ in _answers(running, version, rows)]
    assert labels == [["malignant", "benign"][c] for c in fitted.predict(rows)]

    split = requests.put(
        f"{running.url}/admin/models/{MODEL}/split",
        json={"weights": {"1": 90, version: 10}},
        headers=AUTH,
        timeout=10,
    )
    assert split.status_code == 200, split.text
    [warning] = split.json()["warnings"]
    assert f"version {version} on sklearn (no ONNX model:" in warning
    command = ["python", "-m", "ml_app", "models", "--store", "/store"]
    shadow = running.exec(*command, "shadow", MODEL, version)
    assert shadow.returncode == 0, shadow.stderr
    assert f"warning: shadow of {MODEL} compares backends: version {version} on sklearn" in (
        shadow.stderr
    )
    again = running.exec(*command, "register", MODEL, "/artifacts/centroid.skops")
    assert again.returncode == 0, again.stderr
    assert "backend: sklearn (no ONNX model: " in again.stdout
    assert orjson.loads(running.exec(*command, "list", MODEL).stdout)[0]["shadow"] == [version]
