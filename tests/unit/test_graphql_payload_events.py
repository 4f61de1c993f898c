"""A GraphQL query's predict fields in the payload log: one event each, with an id of its own."""

from __future__ import annotations

import logging

import pytest

from ml_app import create_app
from tests.support.graphql import errors_of
from tests.unit.test_graphql_pipeline import DIABETES_ROW, IRIS_ROWS
from tests.unit.test_payload_events import events_in

QUERY = (
    "query ($a: FeatureRows, $b: FeatureRows, $c: FeatureRows) { "
    'first: predict(model: "iris", rows: $a) { model version predictions predictionId } '
    'second: predict(model: "diabetes", rows: $b) { model version predictions predictionId } '
    'third: predict(model: "iris", rows: $c) { model version predictions predictionId } }'
)
FIELDS = ("first", "second", "third")
VARIABLES = {"a": IRIS_ROWS, "b": [DIABETES_ROW, DIABETES_ROW], "c": IRIS_ROWS[:1]}


@pytest.fixture
def payload_dir(tmp_path):
    return tmp_path / "payloads"


@pytest.fixture
def client(demo_store, payload_dir):
    return create_app({"store": demo_store, "payload_log_dir": str(payload_dir)}).test_client()


def _ask(client, variables, request_id="q-1"):
    body = {"query": QUERY, "variables": variables}
    return client.post("/graphql", json=body, headers={"X-Request-ID": request_id})


def test_each_field_is_an_event_whose_id_the_answer_gives(client, payload_dir, caplog):
    with caplog.at_level(logging.INFO, logger="ml_app.access"):
        response = _ask(client, VARIABLES)
    data = response.get_json()["data"]
    assert [data[field]["predictionId"] for field in FIELDS] == ["q-1", "q-1#2", "q-1#3"]
    events = events_in(payload_dir)
    assert [event["id"] for event in events] == ["q-1", "q-1#2", "q-1#3"]
    for event, field, rows in zip(events, FIELDS, VARIABLES.values(), strict=True):
        logged = event["data"]
        assert (logged["request_id"], logged["model"]) == ("q-1", data[field]["model"])
        assert (event["subject"], logged["status"], logged["error"]) == (logged["model"], 200, None)
        assert logged["inputs"]["rows"] == rows
        assert logged["outputs"]["predictions"] == data[field]["predictions"]
    # iris 1 and diabetes 1 answered: no one version to name; each field names its own
    assert "X-Model-Version" not in response.headers
    [line] = [r.fields for r in caplog.records if r.name == "ml_app.access"]
    assert (line["models"], line["rows"]) == (["diabetes:1", "iris:1"], 6)
    assert "model" not in line and "version" not in line


def test_feedback_names_each_field_by_its_id(client, payload_dir):
    data = _ask(client, VARIABLES).get_json()["data"]
    items = [{"request_id": data["second"]["predictionId"], "truth": [150.0, 151.0]}]
    answer = client.post("/models/diabetes/feedback", json=items)
    assert (answer.status_code, answer.get_json()) == (202, {"accepted": 1, "model": "diabetes"})
    [feedback] = [e for e in events_in(payload_dir) if e["type"] == "ml_app.feedback"]
    assert feedback["data"]["request_id"] == "q-1#2"


def test_fields_on_one_version_keep_the_header(client, payload_dir):
    variables = {**VARIABLES, "b": IRIS_ROWS}
    body = {"query": QUERY.replace('"diabetes"', '"iris"'), "variables": variables}
    response = client.post("/graphql", json=body)
    assert response.headers["X-Model-Version"] == "1"
    assert [e["data"]["model"] for e in events_in(payload_dir)] == ["iris"] * 3


def test_a_refused_field_leaves_the_others_events_clean(client, payload_dir):
    response = _ask(client, {**VARIABLES, "b": [[1.0, 2.0]]})  # diabetes takes 10 features
    body = response.get_json()
    assert (response.status_code, body["data"]["second"]) == (200, None)
    assert errors_of(body) == [("invalid_input", 422)]
    assert [body["data"][f]["predictionId"] for f in ("first", "third")] == ["q-1", "q-1#2"]
    events = events_in(payload_dir)
    assert [(e["id"], e["data"]["model"], e["data"]["error"]) for e in events] == [
        ("q-1", "iris", None),
        ("q-1#2", "iris", None),
    ]
    assert response.headers["X-Model-Version"] == "1"  # only iris 1 answered


def test_a_query_refused_before_predicting_is_one_event_with_its_error(client, payload_dir):
    response = _ask(client, {"a": [[1.0]], "b": [[1.0]], "c": [[1.0]]})
    assert errors_of(response.get_json()) == [("invalid_input", 422)] * 3
    [event] = events_in(payload_dir)
    assert event["id"] == "q-1"
    assert (event["data"]["inputs"], event["data"]["error"]["code"]) == (None, "invalid_input")
