"""ONNX Runtime against scikit-learn: parity on every demo model, and clean fallbacks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY
from skl2onnx import to_onnx
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from ml_app import create_app
from ml_app.core.conversion import write_converted_version
from ml_app.core.errors import StoreError
from ml_app.core.loading import load_model
from ml_app.core.model import PARITY_TOLERANCE
from ml_app.core.store import LoadPolicy, ModelStore, sha256_of
from model.train import DEMO_MODELS, train_model
from tests.support.reference import IRIS_SETOSA, parity_misses

_BACKEND_METRIC = "ml_app_model_backend"
# skops asks for scikit-learn's histogram-tree node type to be trusted explicitly.
_HGB_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


def _load(store_root, name: str, backend: str, version: str = "1"):
    store = ModelStore(store_root)
    metadata = store.read_metadata(name, version)
    return load_model(store, name, version, metadata, LoadPolicy(backend=backend))


def _dataset_rows(name: str) -> np.ndarray:
    return DEMO_MODELS[name][0]().data.astype(np.float64)


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_onnx_matches_sklearn_on_the_whole_dataset(demo_store, name):
    onnx_model = _load(demo_store, name, "onnx")
    sklearn_model = _load(demo_store, name, "sklearn")
    assert onnx_model.describe()["backend"]["name"] == "onnx"
    assert sklearn_model.describe()["backend"] == {
        "name": "sklearn",
        "reason": "ML_APP_BACKEND=sklearn",
    }
    rows = _dataset_rows(name)
    fast, reference = onnx_model.predict(rows), sklearn_model.predict(rows)
    if reference.values is not None:
        assert len(fast.values) == len(reference.values) == len(rows)
        assert parity_misses(fast.values, reference.values) == []
        return
    assert fast.labels == reference.labels
    assert fast.probabilities.dtype == np.float64
    assert np.abs(fast.probabilities - reference.probabilities).max() <= PARITY_TOLERANCE


def test_parity_holds_each_value_to_its_own_size():
    want = np.array([0.5, 25.0, 346.0])
    assert parity_misses(want + np.array([0.9e-5, 24e-5, 340e-5]), want) == []
    # 3e-4 off a value of 25 would pass a tolerance scaled by the largest value (346)
    assert [i for i, _, _ in parity_misses(want + np.array([0.0, 3e-4, 0.0]), want)] == [1]
    assert [i for i, _, _ in parity_misses(want + np.array([2e-5, 0.0, 0.0]), want)] == [0]


def test_demo_models_record_their_conversion(demo_store):
    for name, dtype in (("iris", "float64"), ("breast_cancer", "float32"), ("diabetes", "float64")):
        folder = demo_store / name / "1"
        onnx = ModelStore(demo_store).read_metadata(name, "1")["onnx"]
        assert onnx["input_dtype"] == dtype
        assert onnx["sha256"] == sha256_of(folder / "model.onnx")
        assert onnx["checked_with"]["rows"] == 20


def test_http_answers_come_from_onnx_by_default(client):
    described = client.get("/models/breast_cancer").get_json()["versions"][0]["metadata"]
    assert described["backend"]["name"] == "onnx"
    assert described["backend"]["input_dtype"] == "float32"
    assert "reference_sample" not in described
    body = client.post("/predict", json={"features": IRIS_SETOSA}).get_json()
    assert body["prediction"] == "setosa"


def _write_hist_gradient_boosting(store_root) -> None:
    data = datasets.load_iris()
    estimator = HistGradientBoostingClassifier(max_iter=5, random_state=0)
    estimator.fit(data.data, data.target)
    _, metadata = train_model("iris")
    write_converted_version(
        ModelStore(store_root), "hgb", "1", estimator, {**metadata, "name": "hgb", "version": "1"}
    )


def test_unsupported_estimator_falls_back_to_sklearn(store, caplog):
    _write_hist_gradient_boosting(store)
    metadata = ModelStore(store).read_metadata("hgb", "1")
    assert "error" in metadata["onnx"]
    assert not (store / "hgb" / "1" / "model.onnx").exists()
    with caplog.at_level(logging.WARNING, logger="ml_app.inference"):
        client = create_app({"store": store, "trusted_types": _HGB_TYPES}).test_client()
    assert any("hgb" in r.getMessage() and "scikit-learn" in r.getMessage() for r in caplog.records)
    backend = client.get("/models/hgb").get_json()["versions"][0]["metadata"]["backend"]
    assert backend["name"] == "sklearn"
    assert "not converted to ONNX" in backend["reason"]
    body = client.post("/models/hgb/predict", json={"features": IRIS_SETOSA}).get_json()
    assert body["prediction"] == "setosa"
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    for name, backend in (("hgb", "sklearn"), ("breast_cancer", "onnx")):
        labels = {"model": name, "version": "1"}
        assert (
            REGISTRY.get_sample_value("ml_app_model_backend", {**labels, "backend": backend}) == 1
        )
        other = "onnx" if backend == "sklearn" else "sklearn"
        assert REGISTRY.get_sample_value("ml_app_model_backend", {**labels, "backend": other}) == 0


def test_forced_onnx_refuses_what_it_cannot_serve(store):
    _write_hist_gradient_boosting(store)
    client = create_app({"store": store, "backend": "onnx", "trusted_types": _HGB_TYPES})
    client = client.test_client()
    response = client.post("/models/hgb/predict", json={"features": IRIS_SETOSA})
    assert response.status_code == 503
    assert "ML_APP_BACKEND=onnx" in response.get_json()["error"]
    # the models ONNX can serve still serve
    assert client.post("/predict", json={"features": IRIS_SETOSA}).status_code == 200


def test_tampered_onnx_file_falls_back(store):
    (store / "iris" / "1" / "model.onnx").write_bytes(b"not the converted model")
    model = _load(store, "iris", "auto")
    assert model.backend_info["name"] == "sklearn"
    assert "integrity check" in model.backend_info["reason"]
    with pytest.raises(StoreError, match="integrity check"):
        _load(store, "iris", "onnx")


def test_onnx_that_disagrees_with_the_estimator_falls_back(store):
    # A genuine, intact ONNX model of a differently trained estimator: only parity can catch it.
    data = datasets.load_iris()
    other = LogisticRegression(C=0.01, max_iter=1000).fit(data.data, data.target)
    converted = to_onnx(other, data.data[:1], options={"zipmap": False}).SerializeToString()
    folder = store / "iris" / "1"
    (folder / "model.onnx").write_bytes(converted)
    metadata = orjson.loads((folder / "metadata.json").read_bytes())
    metadata["onnx"]["sha256"] = sha256_of(folder / "model.onnx")
    (folder / "metadata.json").write_bytes(orjson.dumps(metadata))
    model = _load(store, "iris", "auto")
    assert model.backend_info["name"] == "sklearn"
    assert "differ from scikit-learn" in model.backend_info["reason"]
    assert model.predict(np.array([IRIS_SETOSA])).labels == ["setosa"]
    with pytest.raises(StoreError, match="differ from scikit-learn"):
        _load(store, "iris", "onnx")


def test_a_version_without_reference_sample_is_not_served_by_onnx(store):
    folder = store / "iris" / "1"
    metadata = orjson.loads((folder / "metadata.json").read_bytes())
    del metadata["reference_sample"]
    (folder / "metadata.json").write_bytes(orjson.dumps(metadata))
    model = _load(store, "iris", "auto")
    assert model.backend_info == {
        "name": "sklearn",
        "reason": "metadata.json has no reference_sample to check parity on",
    }


_FORKED_WORKER_EXITS = """
import os, sys
from ml_app import create_app
app = create_app({"store": sys.argv[1]})
assert app.extensions["ml_app"].registry.resolve("breast_cancer").backend.name == "onnx"
pid = os.fork()
if pid == 0:  # a worker that served a prediction, then exits the normal way
    app.extensions["ml_app"].registry.resolve("breast_cancer").predict(
        __import__("numpy").zeros((1, 30))
    )
    sys.exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_worker_exits_cleanly_after_loading_onnx(demo_store):
    # Preloaded in a master, then forked: the child must be able to finish. (ONNX Runtime's
    # telemetry thread, if it started, leaves the child hanging in its exit handlers.) The
    # timeout only guards against that hang; it is no measure of speed.
    completed = subprocess.run(
        [sys.executable, "-c", _FORKED_WORKER_EXITS, str(demo_store)],
        env={k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
