"""Predictions by entity id from a real Feast feature server (`feast serve`, its own virtualenv).

The test writes the demo data sets as parquet files, `feast apply` and `feast materialize` put
them in an sqlite online store, and version 2 of each demo model reads its features from
`feast serve` on loopback; real Gunicorn (2 workers) serves them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import requests

from ml_app.core.store import ModelStore
from tests.support.cli import models_command
from tests.support.feast import ENTITY_KEY, FeastServer, feast_venv, materialize, write_feature_repo
from tests.support.reference import sample_rows
from tests.support.server import GunicornServer

DEMO_MODELS = ("iris", "breast_cancer", "diabetes")
SAMPLE_IDS = list(range(0, 140, 7))  # 20 entities of each data set
TIMEOUT = 1.0  # ML_APP_FEATURE_STORE_TIMEOUT: Feast answers in milliseconds on loopback
SLACK = 0.6


@pytest.fixture(scope="module")
def served(demo_store, tmp_path_factory) -> Iterator[tuple[GunicornServer, FeastServer]]:
    folder = tmp_path_factory.mktemp("feast")
    store = folder / "store"
    shutil.copytree(demo_store, store)
    features = {
        name: ModelStore(store).read_metadata(name, "1")["feature_names"] for name in DEMO_MODELS
    }
    tables = {name: (features[name], sample_rows(name, 10_000)) for name in DEMO_MODELS}
    bin_dir = feast_venv()
    write_feature_repo(folder / "repo", tables)
    materialize(bin_dir, folder / "repo")
    with FeastServer(bin_dir, folder / "repo") as feast:
        for name in DEMO_MODELS:
            source = f"feast+http://127.0.0.1:{feast.port}/{name}_features"
            artifact = store / name / "1" / "model.skops"
            models_command(store, "register", name, str(artifact),
                           "--entity-key", ENTITY_KEY, "--feature-source", source)  # fmt: skip
        settings = {"ML_APP_FEATURE_STORE_TIMEOUT": str(TIMEOUT)}
        log = folder / "gunicorn.log"
        with GunicornServer(store, log, workers=2, wait_for="/health/ready", **settings) as server:
            server.wait_for_workers()
            yield server, feast


def _post(server: GunicornServer, path: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=10)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_predictions_by_entity_id_match_predictions_with_the_features(served, name):
    server, _ = served
    path = f"/models/{name}/versions/2/predict"
    rows = sample_rows(name, 10_000)[SAMPLE_IDS]
    by_features = _post(server, path, {"instances": rows.tolist()})
    by_id = _post(server, path, {"entities": [{ENTITY_KEY: i} for i in SAMPLE_IDS]})
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == by_features.json()
    assert len(by_id.json()["predictions"]) == len(SAMPLE_IDS)


def test_unknown_id_is_422_naming_it_and_given_features_mix(served):
    server, _ = served
    path = "/models/iris/versions/2/predict"
    unknown = _post(server, path, {"entities": [{ENTITY_KEY: 1}, {ENTITY_KEY: 4321}]})
    assert unknown.status_code == 422
    assert "4321" in unknown.json()["error"]
    assert list(unknown.json()["details"]) == [f"entities.1.{ENTITY_KEY}"]
    stored = sample_rows("iris", 10_000)[0].tolist()
    mixed = _post(
        server, path, {"entities": [{ENTITY_KEY: 0, "petal_length": 5.9, "petal_width": 2.1}]}
    )
    assert mixed.status_code == 200, mixed.text
    assert mixed.json() == _post(server, path, {"instances": [[*stored[:2], 5.9, 2.1]]}).json()


def test_a_stopped_feature_server_is_503_within_the_timeout(served):
    server, feast = served
    feast.stop()
    for _ in range(4):  # both workers, each with a kept-alive connection to the stopped server
        answer = _post(server, "/models/iris/versions/2/predict", {"entities": [{ENTITY_KEY: 3}]})
        assert answer.status_code == 503
        assert answer.json()["code"] == "feature_store_unavailable"
        assert server.served_in(answer.headers["X-Request-ID"]) < TIMEOUT + SLACK
