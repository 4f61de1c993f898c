"""GraphQL at /graphql: the same answers as REST, REST's error codes, and its limits."""

from __future__ import annotations

import gzip
import logging
import time

import pytest

from ml_app import create_app
from ml_app.web.graphql import types
from tests.support.graphql import (
    DEMO_MODELS,
    MODEL,
    MODELS,
    aliased_query,
    demo_rows,
    errors_of,
    nested_query,
    predict_body,
)
from tests.support.reference import IRIS_FEATURES, IRIS_SETOSA
from tests.support.store import route_iris_everywhere

ERROR_EXTENSIONS = {"code", "status", "request_id", "details"}


def _graphql(client, query: str, **variables):
    return client.post("/graphql", json={"query": query, "variables": variables})


def _rest_batch(client, model: str, rows: list) -> dict:
    response = client.post(f"/models/{model}/predict/batch", json={"instances": rows})
    assert response.status_code == 200
    return response.get_json()


@pytest.mark.parametrize("model", DEMO_MODELS)
def test_predict_answers_what_rest_answers(client, model):
    rows = demo_rows(model)
    response = client.post("/graphql", json=predict_body(model, rows=rows))
    assert response.status_code == 200
    rest = _rest_batch(client, model, rows)
    # A regressor has no probabilities: REST leaves the member out, GraphQL answers null.
    expected = {**rest, "probabilities": rest.get("probabilities")}
    assert response.get_json() == {"data": {"predict": expected}}
    assert len(expected["predictions"]) == len(rows)
    assert (expected["probabilities"] is None) == (model == "diabetes")
    assert response.headers["X-Model-Version"] == "1"


def test_named_rows_answer_as_positional_rows_do(client):
    names = client.get("/models/breast_cancer").get_json()["versions"][0]["metadata"]
    rows = demo_rows("breast_cancer", 5)
    named = [dict(reversed(list(zip(names["feature_names"], row, strict=True)))) for row in rows]
    response = client.post("/graphql", json=predict_body("breast_cancer", named=named))
    predicted = response.get_json()["data"]["predict"]
    assert predicted == _rest_batch(client, "breast_cancer", rows)


def test_rows_written_in_the_query_and_the_default_model(client):
    query = "{ predict(rows: [[5.1, 3.5, 1.4, 0.2]]) { model version predictions } }"
    body = _graphql(client, query).get_json()
    assert body == {
        "data": {"predict": {"model": "iris", "version": "1", "predictions": ["setosa"]}}
    }


def test_model_answers_what_rest_describes(store):
    route_iris_everywhere(store)
    client = create_app({"store": store}).test_client()
    rest = client.get("/models/iris").get_json()
    model = _graphql(client, MODEL, name="iris").get_json()["data"]["model"]
    assert model["aliases"] == [{"alias": "production", "version": "1"}]
    assert model["serving"] == [{"alias": "production", "version": "1"}]
    assert model["split"] == [{"version": "1", "weight": 0.75}, {"version": "2", "weight": 0.25}]
    assert (model["shadow"], model["ready"], model["problems"]) == (["2"], True, [])
    assert model["defaultVersion"] == rest["default_version"] == "1"
    assert [v["version"] for v in model["versions"]] == ["1", "2"]
    for ours, theirs in zip(model["versions"], rest["versions"], strict=True):
        assert ours["metadata"] == theirs["metadata"]
        assert (ours["state"], ours["loadSeconds"]) == (theirs["state"], theirs["load_seconds"])


def test_models_lists_every_model(client):
    data = _graphql(client, MODELS).get_json()["data"]
    rest = client.get("/models").get_json()
    assert data["defaultModel"] == rest["default_model"] == "iris"
    assert [m["name"] for m in data["models"]] == [m["name"] for m in rest["models"]]
    assert all(
        m["ready"] and m["versions"] == [{"version": "1", "state": "loaded"}]
        for m in data["models"]
    )


@pytest.mark.parametrize(
    ("variables", "code", "status", "detail"),
    [
        ({"model": "nope", "rows": [IRIS_SETOSA]}, "model_not_found", 404, None),
        ({"model": "iris", "version": "9", "rows": [IRIS_SETOSA]}, "model_not_found", 404, None),
        ({"model": "iris", "rows": [[1.0, 2.0]]}, "invalid_input", 422, "rows.0"),
        ({"model": "iris", "rows": [[1.0, "x", 3.0, 4.0]]}, "invalid_input", 422, "rows.0.1"),
        ({"model": "iris", "rows": []}, "invalid_input", 422, "rows"),
        ({"model": "iris", "rows": [{"sepal_length": 1}]}, "invalid_input", 422, "rows.0"),
        ({"model": "iris", "named": [[1.0, 2.0, 3.0, 4.0]]}, "invalid_input", 422, "namedRows.0"),
        ({"model": "iris", "named": [{"petal": 1.0}]}, "invalid_input", 422, "namedRows.0.petal"),
        ({"model": "iris"}, "invalid_input", 422, "arguments"),
        ({"rows": [IRIS_SETOSA], "named": [{}]}, "invalid_input", 422, "arguments"),
        ({"rows": [IRIS_SETOSA] * 3}, "payload_too_large", 413, None),
    ],
)
def test_refused_fields_carry_the_rest_codes(demo_store, variables, code, status, detail):
    client = create_app({"store": demo_store, "max_batch_rows": 2}).test_client()
    response = client.post("/graphql", json=predict_body(**variables))
    body = response.get_json()
    assert response.status_code == 200  # executed: the field failed, GraphQL-style
    assert body["data"] == {"predict": None}
    assert errors_of(body) == [(code, status)]
    error = body["errors"][0]
    assert set(error["extensions"]) == ERROR_EXTENSIONS
    assert error["extensions"]["request_id"] == response.headers["X-Request-ID"]
    assert error["path"] == ["predict"]
    if detail is not None:
        assert detail in error["extensions"]["details"], error


def test_entities_answer_that_no_feature_source_is_declared(client):
    query = '{ predict(model: "iris", entities: [{customer_id: 42}]) { model } }'
    body = _graphql(client, query).get_json()
    assert errors_of(body) == [("invalid_input", 422)]
    assert "declares no feature source" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["details"] == {
        "entities": ["This version does not predict by entity id."]
    }


def test_one_failed_field_leaves_the_others_answered(client):
    query = (
        "{ ok: predict(rows: [[5.1, 3.5, 1.4, 0.2]]) { predictions } "
        'bad: model(name: "x") { name } }'
    )
    body = _graphql(client, query).get_json()
    assert body["data"] == {"ok": {"predictions": ["setosa"]}, "bad": None}
    assert errors_of(body) == [("model_not_found", 404)]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{oops", "content_type": "application/json"}, 400, "bad_request"),
        ({"data": "[]", "content_type": "application/json"}, 400, "bad_request"),
        ({"data": '{"query": "{ x"}', "content_type": "application/json"}, 400, "bad_request"),
        ({"data": '{"query": 5}', "content_type": "application/json"}, 400, "bad_request"),
        ({"json": {"query": "{ defaultModel }", "variables": [1]}}, 400, "bad_request"),
        ({"json": {"query": "{ defaultModel }", "operationName": 1}}, 400, "bad_request"),
        ({"json": {"variables": {}}}, 400, "bad_request"),
        ({"json": {"query": "{ nope }"}}, 400, "bad_request"),
        ({"json": {"query": "mutation { x }"}}, 400, "bad_request"),
        (
            {"json": {"query": "query ($r: FeatureRows!) { predict(rows: $r) { model } }"}},
            400,
            "bad_request",
        ),
        (
            {"data": '{"query": "{ defaultModel }"}', "content_type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ({"data": b'{"query": "\\ud800"}', "content_type": "application/json"}, 400, "bad_request"),
        ({"data": b'{"query": "\xff"}', "content_type": "application/json"}, 400, "bad_request"),
        ({"json": {"query": "{ defaultModel }", "pad": "x" * 5000}}, 413, "payload_too_large"),
    ],
)
def test_requests_refused_as_a_whole_answer_only_errors(demo_store, kwargs, status, code):
    client = create_app({"store": demo_store, "max_body_bytes": 4096}).test_client()
    response = client.post("/graphql", **kwargs)
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"errors"}
    assert errors_of(body) == [(code, status)] * len(body["errors"])
    assert body["errors"][0]["extensions"]["request_id"] == response.headers["X-Request-ID"]


def test_a_compressed_body_is_read_like_any_other(client):
    raw = b'{"query": "{ defaultModel }"}'
    response = client.post(
        "/graphql",
        data=gzip.compress(raw),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.get_json() == {"data": {"defaultModel": "iris"}}


def test_only_post_and_no_graphiql_page(client):
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 405
    assert set(page.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert "graphiql" not in page.get_data(as_text=True).lower()


def test_a_bug_in_a_resolver_is_logged_and_answered_generically(client, monkeypatch, caplog):
    def broken(cls, model, outputs, prediction_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(types.Prediction, "from_outputs", classmethod(broken))
    with caplog.at_level(logging.ERROR, logger="ml_app.graphql"):
        response = client.post("/graphql", json=predict_body("iris", rows=[IRIS_SETOSA]))
    body = response.get_json()
    assert errors_of(body) == [("internal_error", 500)]
    assert body["errors"][0]["message"] == "Internal server error."
    assert "secret" not in response.get_data(as_text=True)
    [record] = [r for r in caplog.records if r.name == "ml_app.graphql"]
    assert record.request_id == response.headers["X-Request-ID"]
    assert "secret internals" in str(record.exc_info[1])


def test_refusals_are_answers_not_error_logs(client, caplog):
    with caplog.at_level(logging.WARNING):
        _graphql(client, "{ nope }")
        _graphql(client, "query ($m: String!) { model(name: $m) { name } }", m=5)
        client.post("/graphql", json=predict_body("nope", rows=[IRIS_SETOSA]))
        client.post("/graphql", json=predict_body("iris", rows=[[1.0]]))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_depth_20_query_is_refused(client):
    body = _graphql(client, nested_query(20)).get_json()
    messages = [e["message"] for e in body["errors"]]
    assert "'anonymous' exceeds maximum operation depth of 10" in messages
    assert errors_of(body) == [("bad_request", 400)] * len(messages)


def test_the_depth_limit_is_a_setting(demo_store):
    query = '{ model(name: "iris") { versions { version } } }'  # depth 2
    shallow = create_app({"store": demo_store, "graphql_max_depth": 1}).test_client()
    refused = _graphql(shallow, query)
    assert refused.status_code == 400
    assert (
        refused.get_json()["errors"][0]["message"]
        == "'anonymous' exceeds maximum operation depth of 1"
    )
    deep_enough = create_app({"store": demo_store, "graphql_max_depth": 2}).test_client()
    assert _graphql(deep_enough, query).get_json()["data"]["model"]["versions"] == [
        {"version": "1"}
    ]


def test_a_1000_alias_query_is_refused_before_it_is_parsed(client):
    started = time.perf_counter()
    response = _graphql(client, aliased_query(1000))
    elapsed = time.perf_counter() - started
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["message"] == (
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
    )
    assert elapsed < 0.5  # refused while parsing: no validation of 1,000 fields


def test_the_alias_limit_counts_aliases(client):
    assert _graphql(client, aliased_query(15)).get_json()["data"]["a14"] == "iris"
    for _ in range(2):  # the second time from the validation cache: refused all the same
        refused = _graphql(client, aliased_query(16))
        assert refused.status_code == 400
        assert refused.get_json()["errors"][0]["message"] == "16 aliases found. Allowed: 15"


def test_introspection_is_on_unless_turned_off(demo_store):
    query = "{ __schema { queryType { name } } }"
    on = create_app({"store": demo_store}).test_client()
    assert _graphql(on, query).get_json() == {
        "data": {"__schema": {"queryType": {"name": "Query"}}}
    }
    off = create_app({"store": demo_store, "graphql_introspection": False}).test_client()
    refused = _graphql(off, query)
    assert refused.status_code == 400
    assert "introspection has been disabled" in refused.get_json()["errors"][0]["message"]
    assert _graphql(off, "{ defaultModel }").get_json() == {"data": {"defaultModel": "iris"}}


def test_feature_names_in_the_schema_example_are_the_models(client):
    # namedRows takes the same names REST does
    named = [dict(zip(IRIS_FEATURES, IRIS_SETOSA, strict=True))]
    body = client.post("/graphql", json=predict_body("iris", named=named)).get_json()
    assert body["data"]["predict"]["predictions"] == ["setosa"]
