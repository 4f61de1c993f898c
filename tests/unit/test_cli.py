"""The command line: register (validation, atomic write, sha256), aliases, split and shadow."""

from __future__ import annotations

import pickle

import orjson
import pytest
import skops.io
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge

from ml_app import create_app
from ml_app.core.store import ModelStore, sha256_of
from tests.support.cli import models_cli
from tests.support.training import save_iris_forest, save_iris_nearest_centroid


@pytest.fixture(scope="module")
def iris_data():
    return datasets.load_iris(return_X_y=True)


@pytest.fixture
def forest(tmp_path):
    return save_iris_forest(tmp_path / "forest.skops")


def test_register_writes_a_verified_version_that_inherits_the_declared_features(store, forest):
    result = models_cli(store, "register", "iris", str(forest), "--alias", "production")
    assert result.exit_code == 0, result.output
    assert "registered iris version 2" in result.output
    models = ModelStore(store)
    metadata = models.read_metadata("iris", "2")
    assert metadata["sha256"] == sha256_of(store / "iris" / "2" / "model.skops")
    assert metadata["sha256"] in result.output
    first = models.read_metadata("iris", "1")
    assert metadata["feature_names"] == first["feature_names"]
    assert metadata["target_names"] == first["target_names"]
    assert (metadata["version"], metadata["estimator"]) == ("2", "RandomForestClassifier")
    assert models.aliases("iris") == {"production": "2"}
    # nothing half-written left beside the versions
    assert sorted(p.name for p in (store / "iris").iterdir() if p.name[0] == ".") == [".lock"]


def test_a_new_model_needs_feature_names(store, tmp_path):
    x, y = datasets.load_diabetes(return_X_y=True)
    path = tmp_path / "ridge.skops"
    skops.io.dump(Ridge().fit(x[:, :2], y), path)
    refused = models_cli(store, "register", "sugar", str(path))
    assert refused.exit_code == 1
    assert "declares no feature names" in refused.output
    assert not (store / "sugar").exists() or not ModelStore(store).versions("sugar")
    done = models_cli(
        store, "register", "sugar", str(path), "--features", "age,bmi", "--version", "a"
    )
    assert done.exit_code == 0, done.output
    assert ModelStore(store).read_metadata("sugar", "a")["task"] == "regression"


@pytest.mark.parametrize(
    ("fit", "message"),
    [
        (lambda x, y: RandomForestClassifier(n_estimators=2).fit(x[:, :3], y), "expects 3"),
        (lambda x, y: Ridge().fit(x, y), "does classification; this artifact does regression"),
        (lambda x, y: RandomForestClassifier(n_estimators=2).fit(x, y % 2), "has 2 classes"),
    ],
)
def test_artifacts_that_do_not_fit_the_model_are_refused(store, tmp_path, iris_data, fit, message):
    path = tmp_path / "candidate.skops"
    skops.io.dump(fit(*iris_data), path)
    result = models_cli(store, "register", "iris", str(path))
    assert result.exit_code == 1
    assert message in result.output
    assert ModelStore(store).versions("iris") == ["1"]


def test_pickle_artifacts_only_with_explicit_consent(store, tmp_path, iris_data):
    path = tmp_path / "forest.pkl"
    path.write_bytes(pickle.dumps(RandomForestClassifier(n_estimators=2).fit(*iris_data)))
    refused = models_cli(store, "register", "iris", str(path))
    assert refused.exit_code == 1
    assert "ML_APP_ALLOW_PICKLE" in refused.output
    allowed = models_cli(store, "register", "iris", str(path), "--allow-pickle")
    assert allowed.exit_code == 0, allowed.output
    # stored as skops whatever it came as: the server never unpickles it
    assert (store / "iris" / "2" / "model.skops").is_file()


def test_metadata_file_overrides_and_registered_version_serves(store, forest, tmp_path):
    extra = tmp_path / "meta.json"
    extra.write_bytes(orjson.dumps({"training": {"dataset": "iris, refit"}}))
    result = models_cli(store, "register", "iris", str(forest), "--metadata", str(extra))
    assert result.exit_code == 0, result.output
    client = create_app({"store": store, "reload_interval": 0}).test_client()
    body = client.post("/models/iris/versions/2/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert body.get_json()["version"] == "2"
    detail = client.get("/models/iris").get_json()
    assert detail["versions"][1]["metadata"]["training"] == {"dataset": "iris, refit"}


def test_alias_split_and_shadow_commands(store, forest):
    assert models_cli(store, "register", "iris", str(forest)).exit_code == 0
    assert models_cli(store, "alias", "set", "iris", "production", "1").exit_code == 0
    assert models_cli(store, "alias", "set", "iris", "staging", "2").exit_code == 0
    assert models_cli(store, "split", "iris", "production=90", "staging=10").exit_code == 0
    assert models_cli(store, "shadow", "iris", "2").exit_code == 0
    listed = orjson.loads(models_cli(store, "list", "iris").output)
    assert listed == [
        {
            "name": "iris",
            "versions": ["1", "2"],
            "aliases": {"production": "1", "staging": "2"},
            "split": {"production": 90.0, "staging": 10.0},
            "shadow": ["2"],
        }
    ]
    app = create_app({"store": store, "reload_interval": 0})
    detail = app.test_client().get("/models/iris").get_json()
    assert (detail["split"], detail["shadow"]) == ({"1": 0.9, "2": 0.1}, ["2"])

    assert models_cli(store, "split", "iris", "--clear").exit_code == 0
    assert models_cli(store, "shadow", "iris", "--clear").exit_code == 0
    assert models_cli(store, "alias", "remove", "iris", "staging").exit_code == 0
    listed = orjson.loads(models_cli(store, "list").output)
    iris = next(m for m in listed if m["name"] == "iris")
    assert (iris["aliases"], iris["split"], iris["shadow"]) == ({"production": "1"}, None, [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alias", "set", "iris", "production", "7"], "has no version 7 (it has 1)"),
        (["alias", "set", "iris", "42", "1"], "invalid alias"),
        (["alias", "remove", "iris", "staging"], "no alias 'staging'"),
        (["alias", "set", "nope", "production", "1"], "'nope' is not in the store"),
        (["split", "iris", "1=50", "9=50"], "has no version 9"),
        (["split", "iris", "1=-5"], "finite number >= 0"),
        (["split", "iris", "1=lots"], "is not VERSION=WEIGHT"),
        (["split", "iris"], "or --clear"),
        (["shadow", "iris", "3"], "has no version 3"),
    ],
)
def test_operator_mistakes_are_one_line_errors(store, args, message):
    result = models_cli(store, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_flask_cli_has_the_same_commands(store):
    app = create_app({"store": store, "reload_interval": 0})
    result = app.test_cli_runner().invoke(args=["models", "--store", str(store), "list", "iris"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)[0]["versions"] == ["1"]


def test_register_says_which_backend_serves_the_version(store, forest, tmp_path):
    converted = models_cli(store, "register", "iris", str(forest))
    assert converted.exit_code == 0, converted.output
    assert "backend: onnx (float32 input)\n" in converted.output

    centroid = save_iris_nearest_centroid(tmp_path / "centroid.skops")
    fallback = models_cli(store, "register", "iris", str(centroid))
    assert fallback.exit_code == 0, fallback.output
    error = ModelStore(store).read_metadata("iris", "3")["onnx"]["error"]
    assert "NearestCentroid" in error
    assert f"backend: sklearn (no ONNX model: {error})\n" in fallback.output


def test_register_json_answers_one_line_either_way(store, forest):
    done = models_cli(store, "register", "iris", str(forest), "--json")
    assert done.exit_code == 0, done.output
    metadata = ModelStore(store).read_metadata("iris", "2")
    assert orjson.loads(done.output) == {
        "name": "iris",
        "version": "2",
        "sha256": metadata["sha256"],
        "backend": {"name": "onnx", "input_dtype": "float32"},
    }
    taken = models_cli(store, "register", "iris", str(forest), "--version", "2", "--json")
    assert taken.exit_code == 1
    assert orjson.loads(taken.output) == {
        "error": "model iris already has a version 2",
        "not_found": False,
    }
    unnamed = models_cli(store, "register", "../x", str(forest), "--json")
    assert (unnamed.exit_code, orjson.loads(unnamed.output)["not_found"]) == (1, False)


def test_split_and_shadow_warn_when_backends_differ(store, forest, tmp_path):
    assert models_cli(store, "register", "iris", str(forest)).exit_code == 0
    centroid = save_iris_nearest_centroid(tmp_path / "centroid.skops")
    assert models_cli(store, "register", "iris", str(centroid)).exit_code == 0

    same = models_cli(store, "split", "iris", "1=90", "2=10")
    assert (same.exit_code, "warning" in same.output) == (0, False)
    mixed = models_cli(store, "split", "iris", "1=90", "3=10")
    assert mixed.exit_code == 0
    assert "warning: split of iris mixes backends: version 1 on onnx (float64 input), " in (
        mixed.output
    )
    assert "version 3 on sklearn (no ONNX model:" in mixed.output
    shadow = models_cli(store, "shadow", "iris", "3")
    assert shadow.exit_code == 0
    assert "warning: shadow of iris compares backends: version 3 on sklearn (" in shadow.output
    # compared with the split's other member only: version 3 runs on its own backend
    assert shadow.output.endswith(") against version 1 on onnx (float64 input)\n")
    assert models_cli(store, "split", "iris", "--clear").exit_code == 0
    # without a split or production alias the newest version (3) serves: 2 is compared with it
    newest = models_cli(store, "shadow", "iris", "2")
    assert "warning: shadow of iris compares backends: version 2 on onnx (float32" in newest.output
    assert models_cli(store, "alias", "set", "iris", "production", "1").exit_code == 0
    alone = models_cli(store, "shadow", "iris", "2")
    assert (alone.exit_code, "warning" in alone.output) == (0, False)


def test_a_version_with_unreadable_metadata_is_named_unknown_in_the_warning(store, forest):
    assert models_cli(store, "register", "iris", str(forest)).exit_code == 0
    (store / "iris" / "2" / "metadata.json").write_text("{not json")
    mixed = models_cli(store, "split", "iris", "1=90", "2=10")
    assert mixed.exit_code == 0, mixed.output
    assert "version 2 on unknown (iris/2/metadata.json" in mixed.output
