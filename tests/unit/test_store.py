"""The model store: atomic writes, integrity, version checks and the safe-loading policy."""

from __future__ import annotations

import pickle

import joblib
import orjson
import pytest
from sklearn.linear_model import LogisticRegression

from ml_app.core.errors import StoreError
from ml_app.core.loading import load_estimator
from ml_app.core.store import LoadPolicy, ModelStore, sha256_of, version_sort_key


def _tiny_classifier() -> LogisticRegression:
    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def _metadata(**extra) -> dict:
    return {
        "feature_names": ["x"],
        "versions": {"sklearn": __import__("sklearn").__version__},
        **extra,
    }


def test_write_version_is_complete_and_verifiable(tmp_path):
    store = ModelStore(tmp_path)
    folder = store.write_version("tiny", "1", _tiny_classifier(), _metadata())
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.skops"]
    metadata = store.read_metadata("tiny", "1")
    assert metadata["sha256"] == sha256_of(folder / "model.skops")
    estimator = load_estimator(store, "tiny", "1", metadata, LoadPolicy())
    assert estimator.predict([[3.0]]).tolist() == [1]
    # nothing half-written is left beside it
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["1"]


def test_versions_are_immutable(tmp_path):
    store = ModelStore(tmp_path)
    store.write_version("tiny", "1", _tiny_classifier(), _metadata())
    with pytest.raises(StoreError, match="immutable"):
        store.write_version("tiny", "1", _tiny_classifier(), _metadata())
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["1"]


def test_invalid_names_are_refused(tmp_path):
    with pytest.raises(StoreError, match="invalid"):
        ModelStore(tmp_path).write_version("../evil", "1", _tiny_classifier(), _metadata())


def test_versions_sort_numerically(tmp_path):
    for version in ("10", "2", "1"):
        (tmp_path / "m" / version).mkdir(parents=True)
    assert ModelStore(tmp_path).versions("m") == ["1", "2", "10"]
    assert sorted(["b", "10", "2"], key=version_sort_key) == ["b", "2", "10"]


def test_other_sklearn_minor_version_is_refused_unless_allowed(tmp_path):
    store = ModelStore(tmp_path)
    store.write_version("tiny", "1", _tiny_classifier(), _metadata(versions={"sklearn": "0.24.2"}))
    metadata = store.read_metadata("tiny", "1")
    with pytest.raises(StoreError, match=r"scikit-learn 0\.24\.2 .*ML_APP_ALLOW_VERSION_MISMATCH"):
        load_estimator(store, "tiny", "1", metadata, LoadPolicy())
    allowed = load_estimator(store, "tiny", "1", metadata, LoadPolicy(allow_version_mismatch=True))
    assert allowed.predict([[0.0]]).tolist() == [0]


@pytest.mark.parametrize(
    ("file_name", "dump"),
    [
        ("model.pkl", lambda estimator, path: path.write_bytes(pickle.dumps(estimator))),
        ("model.joblib", joblib.dump),
        # joblib's compressed format is not a pickle stream at all: pickle.load cannot read it
        ("model.joblib", lambda estimator, path: joblib.dump(estimator, path, compress=3)),
    ],
    ids=["pickle", "joblib", "joblib-compressed"],
)
def test_pickle_and_joblib_load_only_when_allowed(tmp_path, file_name, dump):
    folder = tmp_path / "legacy" / "1"
    folder.mkdir(parents=True)
    dump(_tiny_classifier(), folder / file_name)
    metadata = _metadata(sha256=sha256_of(folder / file_name))
    (folder / "metadata.json").write_bytes(orjson.dumps(metadata))
    store = ModelStore(tmp_path)
    with pytest.raises(StoreError, match="ML_APP_ALLOW_PICKLE"):
        load_estimator(store, "legacy", "1", metadata, LoadPolicy())
    loaded = load_estimator(store, "legacy", "1", metadata, LoadPolicy(allow_pickle=True))
    assert loaded.predict([[3.0]]).tolist() == [1]


def test_untrusted_types_are_refused_unless_listed(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    store = ModelStore(tmp_path)
    store.write_version("fn", "1", FunctionTransformer(func=abs), _metadata())
    metadata = store.read_metadata("fn", "1")
    with pytest.raises(StoreError, match=r"not trusted: builtins\.abs"):
        load_estimator(store, "fn", "1", metadata, LoadPolicy())
    policy = LoadPolicy(trusted_types=("builtins.abs",))
    assert load_estimator(store, "fn", "1", metadata, policy).func is abs


def test_missing_sha256_and_artifact_are_reported(tmp_path):
    store = ModelStore(tmp_path)
    store.write_version("tiny", "1", _tiny_classifier(), _metadata())
    with pytest.raises(StoreError, match="no sha256"):
        load_estimator(store, "tiny", "1", _metadata(), LoadPolicy())
    (tmp_path / "tiny" / "1" / "model.skops").unlink()
    with pytest.raises(StoreError, match="no model artifact"):
        load_estimator(store, "tiny", "1", _metadata(sha256="x"), LoadPolicy())


def test_bad_metadata_and_aliases_are_store_errors(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "metadata.json").write_text("{nope")
    (tmp_path / "m" / "aliases.json").write_text("[1]")
    store = ModelStore(tmp_path)
    with pytest.raises(StoreError, match="not valid JSON"):
        store.read_metadata("m", "1")
    with pytest.raises(StoreError, match="alias -> version"):
        store.aliases("m")
