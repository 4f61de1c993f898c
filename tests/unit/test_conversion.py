"""ONNX conversion when a version is written: the estimator kinds it supports, and its limits."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import sklearn
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from ml_app.core.conversion import input_dtypes, write_converted_version
from ml_app.core.loading import load_model
from ml_app.core.model import PARITY_TOLERANCE
from ml_app.core.store import LoadPolicy, ModelStore
from tests.support.reference import parity_misses


def _wine():
    data = datasets.load_wine()
    return data.data, data.target


def _scaled_wine():
    x, y = _wine()
    return StandardScaler().fit_transform(x), y


def _wine_with_a_category():
    x, y = _wine()
    x = x.copy()
    x[:, 0] = np.round(x[:, 0])  # a small integer column, one-hot encoded below
    return x, y


def _categorical_pipeline():
    encode = ColumnTransformer(
        [("code", OneHotEncoder(handle_unknown="ignore"), [0])], remainder=StandardScaler()
    )
    return make_pipeline(encode, LogisticRegression(max_iter=2000))


CASES = {
    "gradient_boosting": (_wine, lambda: GradientBoostingClassifier(n_estimators=20)),
    "decision_tree": (_wine, lambda: DecisionTreeClassifier(max_depth=5)),
    "forest_regressor": (
        lambda: datasets.load_diabetes(return_X_y=True),
        lambda: RandomForestRegressor(n_estimators=10),
    ),
    # no predict_proba: labels come from the graph's label output (float32: see input_dtypes)
    "linear_svc": (_scaled_wine, LinearSVC),
    "one_hot_pipeline": (_wine_with_a_category, _categorical_pipeline),
}


def _write(store: ModelStore, name: str, estimator, x: np.ndarray) -> dict:
    metadata = {
        "name": name,
        "feature_names": [f"f{i}" for i in range(x.shape[1])],
        "versions": {"sklearn": sklearn.__version__},
        "reference_sample": x[::7].tolist(),
    }
    write_converted_version(store, name, "1", estimator, metadata)
    return store.read_metadata(name, "1")


@pytest.mark.parametrize("case", sorted(CASES))
def test_supported_estimators_convert_and_agree(tmp_path, case):
    load, make = CASES[case]
    x, y = load()
    estimator = make().set_params(**_seeded(make())).fit(x, y)
    store = ModelStore(tmp_path)
    metadata = _write(store, case, estimator, x)
    assert "error" not in metadata["onnx"], metadata["onnx"]
    model = load_model(store, case, "1", metadata, LoadPolicy(backend="onnx"))
    reference = load_model(store, case, "1", metadata, LoadPolicy(backend="sklearn"))
    fast, expected = model.predict(x), reference.predict(x)
    assert fast.labels == expected.labels
    if expected.probabilities is not None:
        assert np.abs(fast.probabilities - expected.probabilities).max() <= PARITY_TOLERANCE
    if expected.values is not None:
        assert parity_misses(fast.values, expected.values) == []


def _seeded(estimator) -> dict:
    return {k: 0 for k in estimator.get_params() if k.endswith("random_state")}


def test_trees_take_float32_input_and_the_rest_float64():
    assert input_dtypes(RandomForestRegressor())[0] == "float32"
    assert input_dtypes(make_pipeline(StandardScaler(), DecisionTreeClassifier()))[0] == "float32"
    assert input_dtypes(_categorical_pipeline())[0] == "float64"
    assert input_dtypes(LogisticRegression()) == ("float64", "float32")


def test_without_the_converter_the_version_is_still_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # what `import` meets when not installed
    x, y = _wine()
    store = ModelStore(tmp_path)
    metadata = _write(store, "wine", LogisticRegression(max_iter=5000).fit(x, y), x)
    assert "skl2onnx is not installed" in metadata["onnx"]["error"]
    assert sorted(p.name for p in (tmp_path / "wine" / "1").iterdir()) == [
        "metadata.json",
        "model.skops",
    ]
    model = load_model(store, "wine", "1", metadata, LoadPolicy())
    assert model.backend_info["name"] == "sklearn"
    assert model.predict(x[:3]).labels == y[:3].tolist()
