"""Drift counting: exact bins per feature and prediction, bounded series, reference gauges."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY
from sklearn import datasets
from sklearn.dummy import DummyRegressor

from ml_app import create_app
from ml_app.core import lifecycle
from ml_app.core.drift import PREDICTION_FEATURE, VersionBins
from ml_app.core.drift_bins import slot_counts, slot_labels
from ml_app.core.drift_reference import PREDICTIONS_KEY
from ml_app.core.model import LoadedModel
from ml_app.core.store import LoadPolicy, ModelStore
from tests.support.prometheus import Exposition, scrape_app
from tests.support.reference import IRIS_FEATURES, labels
from tests.support.training import save_iris_forest

COUNTS = "ml_app_drift_rows_total"
SHARES = "ml_app_drift_reference_share"


def fresh_model(store: Path, source: str = "iris") -> str:
    """A copy of a demo model under a name new to this process (its series start at zero)."""
    name = f"{source}_{uuid.uuid4().hex[:8]}"
    shutil.copytree(store / source, store / name)
    return name


def counts_by_bin(metrics: Exposition, name: str, feature: str) -> dict[str, float]:
    return {
        s["bin"]: metrics.total(COUNTS, model=name, feature=feature, bin=s["bin"])
        for s in metrics.series(COUNTS, model=name, feature=feature)
    }


def expected_counts(edges: list[float], values: np.ndarray) -> dict[str, float]:
    counts = slot_counts(np.asarray(edges), values)
    return dict(zip(slot_labels(edges), counts.astype(float).tolist(), strict=True))


def test_every_row_is_counted_in_its_bin_per_feature_and_prediction(store: Path):
    name = fresh_model(store)
    client = create_app({"store": store, "drift_flush_seconds": 0}).test_client()
    rows = datasets.load_iris().data
    rows = np.vstack([rows, rows[:3] * 3, rows[:2] * 0.1])  # some above, some below the range
    batch = client.post(f"/models/{name}/predict/batch", json={"instances": rows[:-1].tolist()})
    single = client.post(f"/models/{name}/predict", json={"features": rows[-1].tolist()})
    assert (batch.status_code, single.status_code) == (200, 200)

    metrics = scrape_app(client)
    baseline = ModelStore(store).read_metadata(name, "1")["baseline"]
    for column, feature in enumerate(IRIS_FEATURES):
        want = expected_counts(baseline[feature]["bin_edges"], rows[:, column])
        assert counts_by_bin(metrics, name, feature) == want
    predicted = labels(store, name, rows)
    assert counts_by_bin(metrics, name, PREDICTION_FEATURE) == {
        cls: float(predicted.count(cls)) for cls in ("setosa", "versicolor", "virginica")
    }


def test_a_regressors_predictions_count_in_value_bins(store: Path):
    name = fresh_model(store, "diabetes")
    app = create_app({"store": store, "drift_flush_seconds": 0})
    rows = datasets.load_diabetes().data[:50]
    answer = app.test_client().post(
        f"/models/{name}/predict/batch", json={"instances": rows.tolist()}
    )
    assert answer.status_code == 200
    reference = ModelStore(store).read_metadata(name, "1")[PREDICTIONS_KEY]
    assert reference["kind"] == "bins"
    want = expected_counts(reference["bin_edges"], np.asarray(answer.json["predictions"]))
    assert counts_by_bin(scrape_app(app.test_client()), name, PREDICTION_FEATURE) == want


def test_counts_wait_in_memory_until_flushed(store: Path):
    name = fresh_model(store)
    app = create_app({"store": store, "drift_flush_seconds": 3600})
    client = app.test_client()
    assert client.post(f"/models/{name}/predict", json={"features": [5.0] * 4}).status_code == 200
    assert scrape_app(client).total(COUNTS, model=name) == 0

    app.extensions["ml_app"].drift.flush()
    assert scrape_app(client).total(COUNTS, model=name) == 4 + 1  # 4 features, 1 prediction


def test_series_are_bounded_by_the_reference_bins_and_the_chosen_features(store: Path):
    name = fresh_model(store)
    metrics = scrape_app(create_app({"store": store}).test_client())
    baseline = ModelStore(store).read_metadata(name, "1")["baseline"]
    slots = sum(len(baseline[f]["proportions"]) + 2 for f in IRIS_FEATURES)
    assert len(metrics.series(COUNTS, model=name)) == slots + 3  # + one per class
    assert len(metrics.series(SHARES, model=name)) == slots + 3

    chosen = fresh_model(store)
    settings = {"store": store, "drift_features": ("petal_width", "no_such_feature")}
    metrics = scrape_app(create_app(settings).test_client())
    assert {s["feature"] for s in metrics.series(COUNTS, model=chosen)} == {
        "petal_width",
        PREDICTION_FEATURE,
    }

    few_bins = fresh_model(store)
    metrics = scrape_app(create_app({"store": store, "drift_max_bins": 3}).test_client())
    assert {s["feature"] for s in metrics.series(COUNTS, model=few_bins)} == {PREDICTION_FEATURE}

    switched_off = fresh_model(store)
    client = create_app({"store": store, "drift": False, "drift_flush_seconds": 0}).test_client()
    assert client.post(f"/models/{switched_off}/predict", json={"features": [5.0] * 4}).json
    assert scrape_app(client).series(COUNTS, model=switched_off) == []


def test_reference_shares_are_exported_as_gauges(store: Path):
    name = fresh_model(store)
    metrics = scrape_app(create_app({"store": store}).test_client())
    metadata = ModelStore(store).read_metadata(name, "1")
    reference = metadata["baseline"]["petal_length"]
    shares = {
        s["bin"]: metrics.total(SHARES, model=name, feature="petal_length", bin=s["bin"])
        for s in metrics.series(SHARES, model=name, feature="petal_length")
    }
    want = [0.0, *reference["proportions"], 0.0]
    assert shares == dict(zip(slot_labels(reference["bin_edges"]), want, strict=True))
    predictions = metadata[PREDICTIONS_KEY]
    assert predictions["classes"] == ["setosa", "versicolor", "virginica"]
    for cls, share in zip(predictions["classes"], predictions["proportions"], strict=True):
        assert metrics.total(SHARES, model=name, feature=PREDICTION_FEATURE, bin=cls) == share


def test_the_demo_classifier_reference_is_its_predicted_class_frequencies(demo_store: Path):
    reference = ModelStore(demo_store).read_metadata("iris", "1")[PREDICTIONS_KEY]
    # The training split (75% of 150 rows, stratified): nearly a third per class.
    assert reference["kind"] == "classes"
    assert sum(reference["proportions"]) == pytest.approx(1.0)
    assert all(0.28 < share < 0.39 for share in reference["proportions"])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batch", [True, False], ids=["batch", "row_by_row"])
def test_bins_match_the_shared_slot_counts(demo_store: Path, seed: int, batch: bool):
    """Uneven edges (merged duplicates), values on edges, below and above: in one batch (one
    search for all features) or row by row (bisect), the counts are drift_bins' own."""
    metadata = orjson.loads((demo_store / "iris" / "1" / "metadata.json").read_bytes())
    random = np.random.default_rng(seed)
    edges = {
        "sepal_length": [4.0, 5.0, 6.0, 7.0, 8.0],
        "sepal_width": [2.0, 2.5, 3.0],
        "petal_length": np.sort(random.uniform(1, 7, 11)).tolist(),
        "petal_width": [0.5, 1.5],
    }
    metadata["baseline"] = {
        f: {"bin_edges": e, "proportions": [1 / (len(e) - 1)] * (len(e) - 1)}
        for f, e in edges.items()
    }
    del metadata[PREDICTIONS_KEY]
    name = f"uneven_{uuid.uuid4().hex[:8]}"
    estimator = DummyRegressor().fit(np.zeros((2, 4)), [0.0, 1.0])
    bins = VersionBins(LoadedModel(name, "1", estimator, metadata), (), 10)
    rows = random.choice([*edges["sepal_length"], 3.0, 9.0, 5.5, 1.0, 2.5, 7.0], (40, 4))
    rows[:, 2] = np.concatenate([edges["petal_length"], random.uniform(0, 8, 29)])
    for part in [rows] if batch else np.split(rows, len(rows)):
        bins.count(part, None)
    bins.flush()

    for column, (feature, feature_edges) in enumerate(edges.items()):
        want = slot_counts(np.asarray(feature_edges), rows[:, column]).tolist()
        got = [
            REGISTRY.get_sample_value(
                COUNTS, {"model": name, "version": "1", "feature": feature, "bin": slot}
            )
            for slot in slot_labels(feature_edges)
        ]
        assert got == want


def test_registration_describes_the_new_versions_own_predictions(store: Path, tmp_path: Path):
    """A registered version gets the classes it predicts for the reference sample, not v1's."""
    given = {PREDICTIONS_KEY: {"kind": "classes", "classes": ["setosa"], "proportions": [1.0]}}
    artifact = save_iris_forest(tmp_path / "forest.skops", trees=1, seed=3)
    new = lifecycle.NewVersion("iris", artifact, metadata=given)
    registered = lifecycle.register_version(ModelStore(store), LoadPolicy(), new)

    metadata = ModelStore(store).read_metadata("iris", registered.version)
    sample = np.asarray(metadata["reference_sample"])
    predicted = labels(store, "iris", sample, registered.version)
    reference = metadata[PREDICTIONS_KEY]
    assert reference["classes"] == ["setosa", "versicolor", "virginica"]
    assert reference["proportions"] == [
        predicted.count(c) / len(sample) for c in reference["classes"]
    ]


def test_a_version_without_a_reference_exports_no_drift(store: Path, capfd):
    """Quietly: a version registered without a reference is not a problem to warn about."""
    name = fresh_model(store)
    metadata_path = store / name / "1" / "metadata.json"
    metadata = orjson.loads(metadata_path.read_bytes())
    del metadata["baseline"], metadata[PREDICTIONS_KEY]
    metadata_path.write_bytes(orjson.dumps(metadata))
    client = create_app({"store": store, "drift_flush_seconds": 0}).test_client()
    answer = client.post(f"/models/{name}/predict", json={"features": [5.0] * 4})
    assert (answer.status_code, answer.json["model"]) == (200, name)
    metrics = scrape_app(client)
    assert metrics.series(COUNTS, model=name) == metrics.series(SHARES, model=name) == []
    logged = capfd.readouterr()
    assert "ml_app.drift" not in logged.out + logged.err
