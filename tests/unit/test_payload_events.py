"""Every prediction request, on every protocol, answered or refused, is one CloudEvent line."""

from __future__ import annotations

import hashlib
import logging

import orjson
import pytest
from cloudevents.http import from_json
from prometheus_client import REGISTRY

from ml_app import create_app
from ml_app.core import apikeys, lifecycle
from ml_app.core.store import ModelStore
from tests.support.store import add_version
from tests.support.tmpfs import fill, small_tmpfs
from tests.unit.test_pipeline import PREDICTIONS, ROW

DATA_KEYS = {
    "request_id",
    "model",
    "version",
    "arm",
    "shadow",
    "key_id",
    "route",
    "status",
    "latency_ms",
    "inputs",
    "outputs",
    "error",
    "truncated",
}


def events_in(directory):
    """Every event line of the directory's segments (open ones too), parsed by the SDK."""
    events = []
    for path in sorted(directory.glob("*")):
        for line in path.read_bytes().splitlines():
            event = from_json(line)
            raw = orjson.loads(line)
            assert event["specversion"] == "1.0" and raw["datacontenttype"] == "application/json"
            events.append(raw)
    return events


@pytest.fixture
def payload_dir(tmp_path):
    return tmp_path / "payloads"


@pytest.fixture
def logged_app(demo_store, payload_dir):
    return create_app({"store": demo_store, "payload_log_dir": str(payload_dir)})


@pytest.mark.parametrize("route", PREDICTIONS)
def test_an_answered_prediction_is_one_event_with_its_rows_and_outputs(
    logged_app, payload_dir, route
):
    response = PREDICTIONS[route](logged_app.test_client())
    assert response.status_code == 200
    (event,) = events_in(payload_dir)
    assert event["id"] == response.headers["X-Request-ID"]
    assert (event["type"], event["subject"]) == ("ml_app.inference", "iris")
    assert event["source"].startswith("/ml_app/") and event["time"].endswith("Z")
    data = event["data"]
    assert set(data) == DATA_KEYS
    assert (data["model"], data["version"]) == ("iris", response.headers["X-Model-Version"])
    assert data["request_id"] == event["id"]
    assert (data["status"], data["error"], data["truncated"], data["key_id"]) == (
        200,
        None,
        None,
        None,
    )
    assert (
        data["route"]
        == logged_app.url_map.bind("")
        .match(_path_of(route), method="POST", return_rule=True)[0]
        .rule
    )
    rows = data["inputs"]["rows"]
    assert data["inputs"]["feature_names"][0] == "sepal_length"
    assert rows[0] == pytest.approx(ROW, rel=1e-6)
    predictions = data["outputs"]["predictions"]
    assert predictions[0] == "setosa" and len(predictions) == len(rows)
    assert sum(data["outputs"]["probabilities"][0]) == pytest.approx(1.0)


def _path_of(route):
    paths = {
        "native one row": "/predict",
        "native batch": "/predict/batch",
        "native by model": "/models/iris/predict",
        "native by version": "/models/iris/versions/1/predict/batch",
        "V2 JSON": "/v2/models/iris/infer",
        "V2 binary": "/v2/models/iris/infer",
        "V1": "/v1/models/iris:predict",
        "MLflow": "/invocations",
    }
    return paths[route]


def test_a_refused_request_is_an_event_with_its_error(logged_app, payload_dir):
    client = logged_app.test_client()
    invalid = client.post("/predict", json={"features": [1, 2, "x", 4]})
    unknown = client.post("/models/nope/predict", json={"features": ROW})
    mlflow = client.post("/invocations", data="not,a\ncsv", content_type="text/plain")
    assert (invalid.status_code, unknown.status_code, mlflow.status_code) == (422, 404, 415)
    events = {event["id"]: event["data"] for event in events_in(payload_dir)}
    assert events[invalid.headers["X-Request-ID"]]["error"] == {
        "code": "invalid_input",
        "error": invalid.get_json()["error"],
    }
    assert events[invalid.headers["X-Request-ID"]]["model"] == "iris"
    refused = events[unknown.headers["X-Request-ID"]]
    assert (refused["model"], refused["inputs"], refused["outputs"]) == (None, None, None)
    assert (refused["status"], refused["error"]["code"]) == (404, "model_not_found")
    assert events[mlflow.headers["X-Request-ID"]]["error"]["code"] == "unsupported_media_type"
    assert len(events) == 3


def test_other_routes_write_no_event(logged_app, payload_dir):
    client = logged_app.test_client()
    for path in ("/models", "/health", "/v2/models/iris", "/metrics", "/nowhere"):
        client.get(path)
    client.get("/predict")  # 405: not a prediction request
    client.options("/predict")  # a CORS preflight is answered on the route, but predicts nothing
    client.options("/v2/models/iris/infer")
    assert not payload_dir.exists() or events_in(payload_dir) == []


def test_data_over_the_size_setting_is_logged_as_sizes_and_a_hash(demo_store, payload_dir):
    app = create_app(
        {"store": demo_store, "payload_log_dir": str(payload_dir), "payload_log_max_bytes": 400}
    )
    client = app.test_client()
    small = client.post("/predict", json={"features": ROW})
    large = client.post("/predict/batch", json={"instances": [ROW] * 20})
    events = {event["id"]: event["data"] for event in events_in(payload_dir)}
    assert events[small.headers["X-Request-ID"]]["truncated"] is None
    data = events[large.headers["X-Request-ID"]]
    assert (data["inputs"], data["outputs"], data["status"]) == (None, None, 200)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    inputs = orjson.dumps({"feature_names": names, "rows": [[float(v) for v in ROW]] * 20})
    assert data["truncated"]["input_bytes"] == len(inputs)
    assert data["truncated"]["sha256"] == hashlib.sha256(inputs).hexdigest()
    assert data["truncated"]["input_bytes"] + data["truncated"]["output_bytes"] > 400


def test_split_arm_shadow_and_key_id_are_recorded(store, payload_dir, tmp_path):
    add_version(store, "iris", "2")
    models = ModelStore(store)
    lifecycle.set_split(models, "iris", {"2": 1})
    lifecycle.set_shadow(models, "iris", ["1"])
    keys_file = tmp_path / "keys.json"
    key = apikeys.add_key(keys_file, "client-a")
    settings = {"store": store, "payload_log_dir": str(payload_dir), "api_keys_file": keys_file}
    client = create_app(settings).test_client()
    split = client.post("/predict", json={"features": ROW}, headers={"X-API-Key": key})
    pinned = client.post(
        "/models/iris/versions/1/predict", json={"features": ROW}, headers={"X-API-Key": key}
    )
    no_key = client.post("/predict", json={"features": ROW})
    events = {event["id"]: event["data"] for event in events_in(payload_dir)}
    first = events[split.headers["X-Request-ID"]]
    assert (first["version"], first["arm"], first["shadow"], first["key_id"]) == (
        "2",
        "2",
        "1",
        "client-a",
    )
    second = events[pinned.headers["X-Request-ID"]]
    assert (second["version"], second["arm"], second["shadow"]) == ("1", None, None)
    refused = events[no_key.headers["X-Request-ID"]]
    assert (refused["status"], refused["key_id"], refused["error"]["code"]) == (
        401,
        None,
        "unauthorized",
    )


def test_a_full_disk_never_fails_a_prediction(demo_store, tmp_path, caplog):
    with small_tmpfs(tmp_path / "small", 64) as mount:
        app = create_app({"store": demo_store, "payload_log_dir": str(mount / "payloads")})
        client = app.test_client()
        assert client.post("/predict", json={"features": ROW}).status_code == 200
        fill(mount)
        labels = {"type": "ml_app.inference", "reason": "disk_full"}
        before = REGISTRY.get_sample_value("ml_app_payload_log_errors_total", labels) or 0
        with caplog.at_level(logging.ERROR, logger="ml_app.payload_log"):
            answers = [
                client.post("/predict/batch", json={"instances": [ROW] * 50}) for _ in range(3)
            ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.get_json()["predictions"][0] for a in answers] == ["setosa"] * 3
        after = REGISTRY.get_sample_value("ml_app_payload_log_errors_total", labels)
        assert after - before == 3
        assert len([r for r in caplog.records if r.name == "ml_app.payload_log"]) == 1
        app.extensions["ml_app"].payload.writer.close()
        assert len(events_in(mount / "payloads")) == 1  # the event written before the disk filled
