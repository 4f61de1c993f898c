"""Predictions by entity id through the Flask app, with a real redis-server as the source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY

from ml_app import create_app
from ml_app.core.errors import StoreError
from ml_app.core.feature_sources import check_declaration, redis_key
from ml_app.core.features import parse_entities
from ml_app.ops.cli import main
from ml_app.web.context import request_context
from tests.support.redis_server import RedisServer
from tests.support.reference import IRIS_FEATURES, IRIS_SETOSA, IRIS_VIRGINICA

ENTITY_KEY = "customer_id"
STORED = {42: IRIS_SETOSA, 7: IRIS_VIRGINICA}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        client = redis.Redis.from_url(running.url)
        for entity_id, row in STORED.items():
            client.hset(
                f"features:iris:{entity_id}", mapping=dict(zip(IRIS_FEATURES, row, strict=True))
            )
        # An entity the source knows only in part: petal_width is missing.
        client.hset(
            "features:iris:9", mapping=dict(zip(IRIS_FEATURES[:3], IRIS_SETOSA[:3], strict=True))
        )
        yield running


def _declare(store: Path, source: str, **extra: object) -> None:
    path = store / "iris" / "1" / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata.update(entity_key=ENTITY_KEY, feature_source=source, **extra)
    path.write_text(json.dumps(metadata))


@pytest.fixture
def declared_client(store: Path, redis_server: RedisServer):
    _declare(store, redis_server.url, feature_defaults={"petal_width": 0.2})
    return create_app({"store": store, "feature_store_timeout": 0.5}).test_client()


def _predict(client, body: dict, path: str = "/predict"):
    return client.post(path, json=body)


def test_entities_predict_as_their_stored_features(declared_client):
    by_id = _predict(declared_client, {"entities": [{ENTITY_KEY: 42}, {ENTITY_KEY: 7}]})
    by_features = _predict(declared_client, {"instances": [IRIS_SETOSA, IRIS_VIRGINICA]})
    assert by_id.status_code == 200, by_id.json
    assert by_id.json == by_features.json
    assert by_id.json["predictions"] == ["setosa", "virginica"]


def test_given_features_win_over_looked_up_ones(declared_client):
    # Entity 42 is stored as setosa; the caller's own petal measures are virginica's.
    given = {ENTITY_KEY: 42, "petal_length": IRIS_VIRGINICA[2], "petal_width": IRIS_VIRGINICA[3]}
    mixed = [*IRIS_SETOSA[:2], *IRIS_VIRGINICA[2:]]
    by_id = _predict(declared_client, {"entities": [given]}, "/models/iris/predict/batch")
    assert by_id.status_code == 200, by_id.json
    assert by_id.json == _predict(declared_client, {"instances": [mixed]}).json


def test_every_feature_given_needs_no_lookup(store, redis_server):
    # A source that refuses connections: never asked, since nothing is missing.
    _declare(store, "redis://127.0.0.1:1/0")
    client = create_app({"store": store}).test_client()
    entity = {ENTITY_KEY: 5, **dict(zip(IRIS_FEATURES, IRIS_VIRGINICA, strict=True))}
    answer = _predict(client, {"entities": [entity]})
    assert answer.status_code == 200, answer.json
    assert answer.json["predictions"] == ["virginica"]


def test_unknown_entity_is_422_naming_it(declared_client):
    answer = _predict(declared_client, {"entities": [{ENTITY_KEY: 42}, {ENTITY_KEY: 4242}]})
    assert answer.status_code == 422
    body = answer.json
    assert body["code"] == "invalid_input"
    assert "4242" in body["error"]
    assert list(body["details"]) == [f"entities.1.{ENTITY_KEY}"]


def test_a_missing_feature_takes_the_declared_default(declared_client):
    answer = _predict(declared_client, {"entities": [{ENTITY_KEY: 9}]})
    assert answer.status_code == 200, answer.json
    # Entity 9 is setosa's first three features; the default petal_width is setosa's too.
    assert answer.json == _predict(declared_client, {"instances": [IRIS_SETOSA]}).json


def test_a_missing_feature_without_a_default_is_422_naming_it(store, redis_server):
    _declare(store, redis_server.url)
    client = create_app({"store": store}).test_client()
    answer = _predict(client, {"entities": [{ENTITY_KEY: 9}]})
    assert answer.status_code == 422
    assert list(answer.json["details"]) == ["entities.0.petal_width"]
    assert "Missing feature" in answer.json["details"]["entities.0.petal_width"][0]


@pytest.mark.parametrize(
    ("entities", "where"),
    [
        ([{ENTITY_KEY: True}], f"entities.0.{ENTITY_KEY}"),
        ([{ENTITY_KEY: None}], f"entities.0.{ENTITY_KEY}"),
        ([{"other": 1}], f"entities.0.{ENTITY_KEY}"),
        ([{ENTITY_KEY: 42, "petal_size": 1.0}], "entities.0.petal_size"),
        ([{ENTITY_KEY: 42, "petal_width": "wide"}], "entities.0.petal_width"),
        ([{ENTITY_KEY: 42, "petal_width": float("nan")}], "entities.0.petal_width"),
        ([42], "entities.0"),
        ([], "entities"),
        ({ENTITY_KEY: 42}, "entities"),
    ],
)
def test_bad_entities_are_422_in_the_one_shape(declared_client, entities, where):
    answer = declared_client.post(
        "/predict",
        data=json.dumps({"entities": entities}),
        content_type="application/json",
    )
    assert answer.status_code == 422
    assert set(answer.json) == {"error", "code", "status", "request_id", "details"}
    assert where in answer.json["details"]


def test_entities_beside_features_are_refused(declared_client):
    answer = _predict(declared_client, {"entities": [{ENTITY_KEY: 42}], "features": IRIS_SETOSA})
    assert answer.status_code == 422
    assert answer.json["details"] == {"features": ["Unknown field."]}


def test_too_many_entities_are_413(store, redis_server):
    _declare(store, redis_server.url)
    client = create_app({"store": store, "max_batch_rows": 2}).test_client()
    answer = _predict(client, {"entities": [{ENTITY_KEY: i} for i in range(3)]})
    assert answer.status_code == 413
    assert answer.json["code"] == "payload_too_large"


def test_a_version_without_a_source_refuses_entities(client):
    answer = _predict(client, {"entities": [{ENTITY_KEY: 42}]})
    assert answer.status_code == 422
    assert "declares no feature source" in answer.json["error"]


def test_a_stopped_source_is_503(store, tmp_path):
    with RedisServer(tmp_path) as stopped:
        url = stopped.url
    _declare(store, url)
    client = create_app({"store": store}).test_client()
    answer = _predict(client, {"entities": [{ENTITY_KEY: 42}]})
    assert answer.status_code == 503
    assert answer.json["code"] == "feature_store_unavailable"
    assert url not in answer.json["error"]  # a source's address may carry its password


def test_lookups_are_timed_by_model_and_source(declared_client):
    def observed() -> float:
        labels = {"model": "iris", "source": "redis"}
        count = REGISTRY.get_sample_value("ml_app_feature_lookup_duration_seconds_count", labels)
        return count or 0.0

    before = observed()
    assert _predict(declared_client, {"entities": [{ENTITY_KEY: 42}]}).status_code == 200
    assert observed() == before + 1


def test_the_matrix_predicted_is_kept_on_the_request_context(store, redis_server):
    _declare(store, redis_server.url)
    app = create_app({"store": store})
    kept = []

    @app.after_request
    def _keep(response):
        kept.extend(predicted.matrix for predicted in request_context().predictions)
        return response

    given = {ENTITY_KEY: 42, "petal_width": 2.5}
    assert app.test_client().post("/predict", json={"entities": [given]}).status_code == 200
    [matrix] = kept  # one prediction
    np.testing.assert_array_equal(matrix, [[*IRIS_SETOSA[:3], 2.5]])


def test_parse_entities_keeps_ids_and_given_features(app):
    model = app.extensions["ml_app"].registry.route("iris", None, None).model
    parsed = parse_entities([{ENTITY_KEY: "a-1", "sepal_width": 3}], model, ENTITY_KEY, 10)
    assert parsed.ids == ["a-1"]
    assert parsed.given == [{"sepal_width": 3}]


@pytest.mark.parametrize(
    ("declared", "refusal"),
    [
        ({"entity_key": ENTITY_KEY}, "both"),
        ({"feature_source": "redis://h:1/0"}, "both"),
        ({"entity_key": "petal_width", "feature_source": "redis://h:1/0"}, "entity_key"),
        ({"entity_key": ENTITY_KEY, "feature_source": "mysql://h/db"}, "feature_source"),
        ({"entity_key": ENTITY_KEY, "feature_source": "feast+http://h:1"}, "feature view"),
        (
            {
                "entity_key": ENTITY_KEY,
                "feature_source": "redis://h:1/0",
                "feature_defaults": {"petal_size": 1.0},
            },
            "feature_defaults",
        ),
    ],
)
def test_declarations_that_cannot_be_served_are_refused(declared, refusal):
    with pytest.raises(StoreError, match=refusal):
        check_declaration({"feature_names": IRIS_FEATURES, **declared})


def test_register_declares_and_new_versions_inherit(store, tmp_path):
    artifact = store / "iris" / "1" / "model.skops"
    source = "feast+http://127.0.0.1:6566/iris_features"
    runner = CliRunner()
    arguments = ["models", "--store", str(store), "register", "iris", str(artifact)]
    declared = runner.invoke(
        main, [*arguments, "--entity-key", ENTITY_KEY, "--feature-source", source]
    )
    assert declared.exit_code == 0, declared.output
    assert runner.invoke(main, arguments).exit_code == 0
    for version in ("2", "3"):
        metadata = json.loads((store / "iris" / version / "metadata.json").read_text())
        assert (metadata["entity_key"], metadata["feature_source"]) == (ENTITY_KEY, source)
    refused = runner.invoke(
        main, [*arguments, "--entity-key", ENTITY_KEY, "--feature-source", "x://y"]
    )
    assert refused.exit_code == 1
    assert "feature_source" in refused.output
    assert not (store / "iris" / "4").exists()


def test_seed_demo_writes_every_row_and_declares(store, redis_server):
    runner = CliRunner()
    url = redis_server.url.replace("/0", "/3")  # a database of its own
    seeded = runner.invoke(
        main, ["features", "seed-demo", "--redis", url, "--store", str(store), "--declare"]
    )
    assert seeded.exit_code == 0, seeded.output
    client = redis.Redis.from_url(url)
    assert client.dbsize() == 150 + 569 + 442
    stored = client.hgetall(redis_key("features", "diabetes", 441))
    assert len(stored) == 10
    for name in ("iris", "breast_cancer", "diabetes"):
        metadata = json.loads((store / name / "2" / "metadata.json").read_text())
        assert (metadata["entity_key"], metadata["feature_source"]) == ("row_id", url)
    again = runner.invoke(
        main, ["features", "seed-demo", "--redis", url, "--store", str(store), "--declare"]
    )
    assert again.exit_code == 0, again.output
    assert not (store / "iris" / "3").exists()  # declared once


def test_model_routes_never_show_a_feature_source_password(store):
    _declare(store, "redis://reader:hunter2@127.0.0.1:6379/1")
    broken = store / "diabetes" / "1"
    metadata = json.loads((broken / "metadata.json").read_text())
    metadata.update(entity_key="id", feature_source="redis://:hunter2@127.0.0.1:6379/1")
    (broken / "metadata.json").write_text(json.dumps(metadata))
    (broken / "model.skops").write_bytes(b"damaged")  # fails its sha256: shown as failed
    client = create_app({"store": store}).test_client()
    for path in ("/models", "/models/iris", "/model/info", "/models/diabetes"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert "hunter2" not in answer.get_data(as_text=True), path
    shown = client.get("/model/info").json["metadata"]["feature_source"]
    assert shown == "redis://reader:***@127.0.0.1:6379/1"
    diabetes = client.get("/models/diabetes").json["versions"][0]
    assert diabetes["state"] == "failed"
    assert diabetes["metadata"]["feature_source"] == "redis://:***@127.0.0.1:6379/1"


@pytest.mark.parametrize(
    ("declared", "status"),
    [
        ({"feature_source": 7}, 422),  # not a URL: no feature source
        ({"feature_source": "mysql://h/db"}, 503),  # a scheme no source speaks
        ({"feature_defaults": [1, 2]}, 200),  # defaults that are not an object: none
    ],
)
def test_a_hand_edited_declaration_never_answers_500(store, redis_server, declared, status):
    _declare(store, redis_server.url)
    path = store / "iris" / "1" / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **declared}))
    client = create_app({"store": store}).test_client()
    answer = _predict(client, {"entities": [{ENTITY_KEY: 42}]})
    assert answer.status_code == status, answer.json
    if status == 200:
        assert answer.json["predictions"] == ["setosa"]
    else:
        assert set(answer.json) == {"error", "code", "status", "request_id", "details"}
