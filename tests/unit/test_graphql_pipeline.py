"""GraphQL in the one pipeline: API keys, rate limits, metrics, hooks and CORS apply to it."""

from __future__ import annotations

import logging

import pytest
from flask import request

from ml_app import create_app
from ml_app.core import apikeys
from tests.support.graphql import MODELS, errors_of, predict_body
from tests.support.prometheus import scrape_app
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA

IRIS_ROWS = [IRIS_SETOSA, IRIS_VIRGINICA, IRIS_VIRGINICA]
DIABETES_ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.02]


@pytest.fixture
def keyed(demo_store, tmp_path):
    """An app with a keys file: a key for every model, and one for diabetes only."""
    keys_file = tmp_path / "keys.json"
    keys = {
        "all": apikeys.add_key(keys_file, "all-models"),
        "diabetes": apikeys.add_key(keys_file, "diabetes-only", ("diabetes",)),
    }
    return create_app({"store": demo_store, "api_keys_file": str(keys_file)}), keys


def test_no_key_is_401_in_graphql_shape_with_a_challenge(keyed):
    app, keys = keyed
    response = app.test_client().post("/graphql", json={"query": MODELS})
    body = response.get_json()
    assert response.status_code == 401
    assert set(body) == {"errors"} and errors_of(body) == [("unauthorized", 401)]
    assert "missing" in body["errors"][0]["message"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ml_app"'
    wrong = app.test_client().post(
        "/graphql", json={"query": MODELS}, headers={"X-API-Key": keys["all"] + "x"}
    )
    assert (wrong.status_code, errors_of(wrong.get_json())) == (401, [("unauthorized", 401)])


def test_a_key_answers_only_for_its_models(keyed):
    app, keys = keyed
    client = app.test_client()
    limited = {"Authorization": f"Bearer {keys['diabetes']}"}
    iris = client.post("/graphql", json=predict_body("iris", rows=[IRIS_SETOSA]), headers=limited)
    body = iris.get_json()
    assert (iris.status_code, body["data"]) == (200, {"predict": None})
    assert errors_of(body) == [("forbidden", 403)]
    assert body["errors"][0]["message"] == "API key diabetes-only may not call model 'iris'."
    # the default model is iris too: refused the same way when no model is named
    default = client.post("/graphql", json=predict_body(rows=[IRIS_SETOSA]), headers=limited)
    assert errors_of(default.get_json()) == [("forbidden", 403)]
    diabetes = client.post(
        "/graphql", json=predict_body("diabetes", rows=[DIABETES_ROW]), headers=limited
    )
    assert diabetes.get_json()["data"]["predict"]["model"] == "diabetes"
    everything = {"X-API-Key": keys["all"]}
    served = client.post(
        "/graphql", json=predict_body("iris", rows=[IRIS_SETOSA]), headers=everything
    )
    assert served.get_json()["data"]["predict"]["predictions"] == ["setosa"]


def test_rows_are_charged_to_the_rate_limit(demo_store):
    client = create_app({"store": demo_store, "rate_limit": "5/minute"}).test_client()
    first = client.post("/graphql", json=predict_body("iris", rows=IRIS_ROWS))
    assert first.get_json()["data"]["predict"]["predictions"] == [
        "setosa",
        "virginica",
        "virginica",
    ]
    assert client.post("/graphql", json={"query": MODELS}).status_code == 200  # costs nothing
    second = client.post("/graphql", json=predict_body("iris", rows=IRIS_ROWS[:2]))
    assert second.get_json()["data"]["predict"]["predictions"] == ["setosa", "virginica"]
    refused = client.post("/graphql", json=predict_body("iris", rows=[IRIS_SETOSA]))
    body = refused.get_json()
    assert (refused.status_code, body["data"]) == (200, {"predict": None})
    assert errors_of(body) == [("rate_limited", 429)]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_each_predict_field_is_charged_its_own_rows(demo_store):
    """Two predict fields in one query: 3 rows and 2 rows cost 5, not 3 + (3 + 2)."""
    client = create_app({"store": demo_store, "rate_limit": "6/minute"}).test_client()
    query = (
        f'{{ a: predict(model: "iris", rows: {IRIS_ROWS}) {{ predictions }} '
        f'b: predict(model: "iris", rows: {IRIS_ROWS[:2]}) {{ predictions }} }}'
    )
    both = client.post("/graphql", json={"query": query})
    body = both.get_json()
    assert "errors" not in body, body
    assert [len(body["data"][field]["predictions"]) for field in "ab"] == [3, 2]
    assert both.headers["X-RateLimit-Remaining"] == "1"


def test_predictions_and_requests_are_counted_like_rest(client):
    before = scrape_app(client)
    assert client.post("/graphql", json=predict_body("iris", rows=IRIS_ROWS)).status_code == 200
    assert (
        client.post("/graphql", json=predict_body("diabetes", rows=[DIABETES_ROW])).status_code
        == 200
    )
    short = client.post("/graphql", json=predict_body("iris", rows=[[1.0]]))
    assert errors_of(short.get_json()) == [("invalid_input", 422)]
    assert client.post("/graphql", json={"query": "{ x"}).status_code == 400
    after = scrape_app(client)
    iris = {"model": "iris", "version": "1"}
    grown = after.total(
        "ml_app_predictions_total", **iris, **{"class": "virginica"}
    ) - before.total("ml_app_predictions_total", **iris, **{"class": "virginica"})
    assert grown == 2
    assert _growth(before, after, "ml_app_predictions_total", model="diabetes") == 1
    assert _growth(before, after, "ml_app_prediction_rows_sum", **iris) == 3
    assert (
        _growth(before, after, "ml_app_validation_failures_total", **iris, reason="invalid_input")
        == 1
    )
    assert _growth(before, after, "ml_app_http_requests_total", route="/graphql", status="200") == 3
    assert _growth(before, after, "ml_app_http_requests_total", route="/graphql", status="400") == 1
    assert (
        _growth(before, after, "ml_app_http_request_duration_seconds_count", route="/graphql") == 4
    )


def _growth(before, after, name, **labels):
    return after.total(name, **labels) - before.total(name, **labels)


def test_hooks_a_user_adds_run_for_graphql(app):
    seen = []

    @app.before_request
    def _user_hook():
        seen.append(request.path)

    response = app.test_client().post("/graphql", json=predict_body("iris", rows=[IRIS_SETOSA]))
    assert response.status_code == 200
    assert seen == ["/graphql"]
    assert (response.headers["X-Model-Version"], len(response.headers["X-Request-ID"])) == ("1", 32)


def test_cors_headers_for_an_allowed_origin(demo_store):
    origin = "http://127.0.0.1:8123"
    app = create_app({"store": demo_store, "cors_origins": (origin,)})
    client = app.test_client()
    client.environ_base["HTTP_ORIGIN"] = origin
    response = client.post("/graphql", json={"query": MODELS})
    assert response.headers["Access-Control-Allow-Origin"] == origin
    preflight = client.options("/graphql", headers={"Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == origin


def test_the_access_line_counts_the_rows_of_every_predict_field(client, caplog):
    query = (
        "query ($a: FeatureRows, $b: FeatureRows) { "
        'first: predict(model: "iris", rows: $a) { predictions } '
        'second: predict(model: "iris", rows: $b) { predictions } }'
    )
    variables = {"a": IRIS_ROWS, "b": IRIS_ROWS[:2]}
    with caplog.at_level(logging.INFO, logger="ml_app.access"):
        response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.get_json()["data"]["second"] == {"predictions": ["setosa", "virginica"]}
    [line] = [r.fields for r in caplog.records if r.name == "ml_app.access"]
    assert (line["model"], line["version"], line["rows"]) == ("iris", "1", 5)
