"""POST /feedback: ground truth by request id, written to the payload log and counted."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.http import from_json
from prometheus_client import REGISTRY

from ml_app import create_app
from ml_app.core import apikeys
from tests.support.tmpfs import FILLER, fill, small_tmpfs

ERROR_KEYS = {"error", "code", "status", "request_id", "details"}


@pytest.fixture
def payload_dir(tmp_path):
    return tmp_path / "payloads"


@pytest.fixture
def client(demo_store, payload_dir):
    return create_app({"store": demo_store, "payload_log_dir": str(payload_dir)}).test_client()


def feedback_events(directory):
    events = []
    for path in sorted(directory.glob("*")):
        for line in path.read_bytes().splitlines():
            event = from_json(line)
            assert event["type"] == "ml_app.feedback"
            events.append(orjson.loads(line))
    return events


def _accepted(model: str) -> float:
    return REGISTRY.get_sample_value("ml_app_feedback_items_total", {"model": model}) or 0.0


def test_a_list_of_items_is_one_event_each_and_counted(client, payload_dir):
    before = _accepted("iris")
    items = [
        {"request_id": "req-1", "truth": "setosa"},
        {"request_id": "req-2", "truth": ["virginica", "setosa"]},
    ]
    response = client.post("/feedback", json=items)
    assert (response.status_code, response.get_json()) == (202, {"accepted": 2, "model": "iris"})
    events = feedback_events(payload_dir)
    assert [e["data"] for e in events] == [
        {"request_id": "req-1", "model": "iris", "truth": "setosa"},
        {"request_id": "req-2", "model": "iris", "truth": ["virginica", "setosa"]},
    ]
    ids = {e["id"] for e in events}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)  # fresh uuid4 hex, not the request id
    assert {e["subject"] for e in events} == {"iris"}
    assert _accepted("iris") - before == 2


def test_one_object_for_a_named_model(client, payload_dir):
    before = _accepted("diabetes")
    response = client.post("/models/diabetes/feedback", json={"request_id": "r9", "truth": 151.0})
    assert (response.status_code, response.get_json()["accepted"]) == (202, 1)
    (event,) = feedback_events(payload_dir)
    assert event["data"] == {"request_id": "r9", "model": "diabetes", "truth": 151.0}
    assert _accepted("diabetes") - before == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"truth": "setosa"}, "request_id"),
        ({"request_id": "r1"}, "truth"),
        ({"request_id": "has space", "truth": 1}, "request_id"),
        ({"request_id": "r1#1", "truth": 1}, "request_id"),  # the first is the request id
        ({"request_id": "r1#0", "truth": 1}, "request_id"),
        ({"request_id": "r1#", "truth": 1}, "request_id"),
        ({"request_id": "r1#2#3", "truth": 1}, "request_id"),
        ({"request_id": "r1", "truth": None}, "truth"),
        ({"request_id": "r1", "truth": {"a": 1}}, "truth"),
        ({"request_id": "r1", "truth": []}, "truth"),
        ({"request_id": "r1", "truth": ["a", None]}, "truth.1"),
        ({"request_id": "r1", "truth": 1, "extra": 2}, "extra"),
        ([{"request_id": "r1", "truth": 1}, {"request_id": "r2", "truth": [[1]]}], "1.truth.0"),
        ([], "body"),
    ],
)
def test_invalid_items_are_422_naming_the_field(client, payload_dir, body, field):
    response = client.post("/feedback", json=body)
    payload = response.get_json()
    assert (response.status_code, set(payload), payload["code"]) == (
        422,
        ERROR_KEYS,
        "invalid_input",
    )
    assert field in payload["details"], payload
    assert not payload_dir.exists() or feedback_events(payload_dir) == []


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (
            lambda c: c.post("/feedback", data="[1,", content_type="application/json"),
            400,
            "bad_request",
        ),
        (lambda c: c.post("/feedback", json="text"), 400, "bad_request"),
        (
            lambda c: c.post("/feedback", data="r1,1", content_type="text/csv"),
            415,
            "unsupported_media_type",
        ),
        (
            lambda c: c.post("/models/nope/feedback", json={"request_id": "r", "truth": 1}),
            404,
            "model_not_found",
        ),
        (lambda c: c.get("/feedback"), 405, "method_not_allowed"),
    ],
)
def test_bad_requests_get_the_one_error_shape(client, send, status, code):
    response = send(client)
    payload = response.get_json()
    assert (response.status_code, set(payload), payload["code"]) == (status, ERROR_KEYS, code)


def test_more_items_than_a_batch_is_413(demo_store, payload_dir):
    app = create_app(
        {"store": demo_store, "payload_log_dir": str(payload_dir), "max_batch_rows": 3}
    )
    items = [{"request_id": f"r{i}", "truth": 1} for i in range(4)]
    response = app.test_client().post("/feedback", json=items)
    assert (response.status_code, response.get_json()["code"]) == (413, "payload_too_large")


def test_without_a_payload_log_feedback_is_409_saying_why(demo_store):
    client = create_app({"store": demo_store}).test_client()
    response = client.post("/feedback", json={"request_id": "r1", "truth": "setosa"})
    payload = response.get_json()
    assert (response.status_code, payload["code"]) == (409, "feedback_needs_payload_log")
    assert "ML_APP_PAYLOAD_LOG_DIR" in payload["error"]


def test_keys_apply_and_are_scoped_by_model(demo_store, payload_dir, tmp_path):
    keys_file = tmp_path / "keys.json"
    diabetes_key = apikeys.add_key(keys_file, "diabetes-only", ("diabetes",))
    settings = {
        "store": demo_store,
        "payload_log_dir": str(payload_dir),
        "api_keys_file": keys_file,
    }
    client = create_app(settings).test_client()
    item = {"request_id": "r1", "truth": 1.0}
    assert client.post("/feedback", json=item).status_code == 401
    headers = {"X-API-Key": diabetes_key}
    assert client.post("/feedback", json=item, headers=headers).status_code == 403  # iris
    assert client.post("/models/diabetes/feedback", json=item, headers=headers).status_code == 202
    assert [e["data"]["model"] for e in feedback_events(payload_dir)] == ["diabetes"]


def test_rate_limits_charge_each_item(demo_store, payload_dir):
    settings = {"store": demo_store, "payload_log_dir": str(payload_dir), "rate_limit": "3/minute"}
    client = create_app(settings).test_client()
    items = [{"request_id": f"r{i}", "truth": 1} for i in range(2)]
    assert client.post("/feedback", json=items).status_code == 202
    refused = client.post("/feedback", json=items)
    assert (refused.status_code, refused.get_json()["code"]) == (429, "rate_limited")
    assert "Retry-After" in refused.headers
    assert len(feedback_events(payload_dir)) == 2


def test_a_full_disk_is_503_and_keeps_nothing(demo_store, tmp_path):
    with small_tmpfs(tmp_path / "small", 64) as mount:
        app = create_app({"store": demo_store, "payload_log_dir": str(mount)})
        fill(mount)
        items = [{"request_id": f"r{i}", "truth": "x" * 200} for i in range(30)]
        response = app.test_client().post("/feedback", json=items)
        payload = response.get_json()
        assert (response.status_code, payload["code"]) == (503, "payload_log_unavailable")
        app.extensions["ml_app"].payload.writer.close()  # an empty segment is removed
        assert [p.name for p in mount.iterdir()] == [FILLER]
