"""/metrics in single-process mode: exact counts by model, class, route and reason.

The metric objects are process-wide (created once at import), so every test compares a scrape
before with a scrape after, or uses a model name no other test loads.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from ml_app import create_app
from tests.support.prometheus import Exposition, growth, scrape_app
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA

IRIS_CLASSES = ("setosa", "versicolor", "virginica")
DIABETES_ROW = [0.01] * 10


def test_every_loaded_model_has_its_series_at_zero_before_any_request(store: Path):
    name = f"iris_{uuid.uuid4().hex[:8]}"  # new to this process, so its series start here
    shutil.copytree(store / "iris", store / name)
    metrics = scrape_app(create_app({"store": store}).test_client())
    labels = {"model": name, "version": "1"}

    for cls in IRIS_CLASSES:
        assert metrics.samples[_key("ml_app_predictions_total", **labels, **{"class": cls})] == 0
    for reason in ("bad_request", "invalid_input", "payload_too_large", "unsupported_media_type"):
        assert (
            metrics.samples[_key("ml_app_validation_failures_total", **labels, reason=reason)] == 0
        )
    assert metrics.samples[_key("ml_app_prediction_rows_count", **labels)] == 0
    assert metrics.samples[_key("ml_app_inference_duration_seconds_count", **labels)] == 0
    assert len(metrics.series("ml_app_inference_duration_seconds_bucket", **labels)) == 17
    assert metrics.samples[_key("ml_app_model_ready", **labels)] == 1
    assert metrics.samples[_key("ml_app_model_load_duration_seconds", **labels)] > 0
    # The regressor counts its rows under the empty class.
    assert metrics.series("ml_app_predictions_total", model="diabetes") == [
        {"model": "diabetes", "version": "1", "class": ""}
    ]


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_predictions_rows_and_inference_are_counted_exactly(client: FlaskClient):
    before = scrape_app(client)
    assert client.post("/predict", json={"features": IRIS_SETOSA}).status_code == 200
    batch = {"instances": [IRIS_SETOSA, IRIS_VIRGINICA, IRIS_VIRGINICA]}
    assert client.post("/predict/batch", json=batch).status_code == 200
    regression = client.post("/models/diabetes/predict", json={"features": DIABETES_ROW})
    assert regression.status_code == 200
    after = scrape_app(client)

    iris = {"model": "iris", "version": "1"}
    by_class = {
        cls: growth(before, after, "ml_app_predictions_total", **iris, **{"class": cls})
        for cls in IRIS_CLASSES
    }
    assert by_class == {"setosa": 2, "versicolor": 0, "virginica": 2}
    assert growth(before, after, "ml_app_predictions_total", model="diabetes") == 1
    assert growth(before, after, "ml_app_prediction_rows_count", **iris) == 2
    assert growth(before, after, "ml_app_prediction_rows_sum", **iris) == 4
    assert growth(before, after, "ml_app_prediction_rows_bucket", **iris, le="1.0") == 1
    assert growth(before, after, "ml_app_prediction_rows_bucket", **iris, le="2.0") == 1
    assert growth(before, after, "ml_app_prediction_rows_bucket", **iris, le="5.0") == 2
    assert growth(before, after, "ml_app_inference_duration_seconds_count", **iris) == 2
    assert growth(before, after, "ml_app_inference_duration_seconds_sum", **iris) > 0
    assert growth(before, after, "ml_app_inference_duration_seconds_count", model="diabetes") == 1


def test_validation_failures_are_counted_by_reason(demo_store: Path):
    client = create_app({"store": demo_store, "max_batch_rows": 2}).test_client()
    before = scrape_app(client)
    short_row = client.post("/predict", json={"features": [1.0, 2.0]})
    not_json = client.post("/predict", data="features=1", content_type="text/plain")
    malformed = client.post("/predict", data="{oops", content_type="application/json")
    too_many = client.post("/predict/batch", json={"instances": [IRIS_SETOSA] * 3})
    nan_row = client.post(
        "/models/diabetes/predict",
        data='{"features": [NaN' + ", 0" * 9 + "]}",
        content_type="application/json",
    )
    unknown_model = client.post("/models/nope/predict", json={"features": IRIS_SETOSA})
    after = scrape_app(client)

    statuses = [r.status_code for r in (short_row, not_json, malformed, too_many, nan_row)]
    assert statuses == [422, 415, 400, 413, 422]
    assert unknown_model.status_code == 404
    iris = {"model": "iris", "version": "1"}
    by_reason = {
        reason: growth(before, after, "ml_app_validation_failures_total", **iris, reason=reason)
        for reason in (
            "bad_request",
            "invalid_input",
            "payload_too_large",
            "unsupported_media_type",
        )
    }
    assert by_reason == {
        "bad_request": 1,
        "invalid_input": 1,
        "payload_too_large": 1,
        "unsupported_media_type": 1,
    }
    assert growth(before, after, "ml_app_validation_failures_total", model="diabetes") == 1
    assert growth(before, after, "ml_app_validation_failures_total") == 5  # not the 404
    assert growth(before, after, "ml_app_predictions_total") == 0


def test_http_requests_are_grouped_by_url_rule_not_raw_path(client: FlaskClient):
    before = scrape_app(client)
    client.post("/models/iris/predict", json={"features": IRIS_SETOSA})
    client.post("/models/diabetes/predict", json={"features": DIABETES_ROW})
    client.post("/models/iris/versions/1/predict", json={"features": IRIS_SETOSA})
    client.get("/no/such/route")
    client.get("/also/missing")
    client.open("/predict", method="BREW")
    after = scrape_app(client)

    rule = "/models/<name>/predict"
    assert growth(before, after, "ml_app_http_requests_total", route=rule, status="200") == 2
    versioned = "/models/<name>/versions/<version>/predict"
    assert growth(before, after, "ml_app_http_requests_total", route=versioned) == 1
    assert growth(before, after, "ml_app_http_requests_total", route="unmatched", status="404") == 2
    assert growth(before, after, "ml_app_http_requests_total", method="other", status="405") == 1
    assert not after.series("ml_app_http_requests_total", method="BREW")
    assert growth(before, after, "ml_app_http_request_duration_seconds_count", route=rule) == 2
    routes = {labels["route"] for labels in after.series("ml_app_http_requests_total")}
    assert not any(route.startswith(("/models/iris", "/no/", "/also/")) for route in routes)


def test_probes_and_scrapes_are_counted_but_not_timed(client: FlaskClient):
    before = scrape_app(client)
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        assert client.get(path).status_code == 200
    client.post("/predict", json={"features": IRIS_SETOSA})
    after = scrape_app(client)

    assert growth(before, after, "ml_app_http_requests_total", route="/health/ready") == 1
    assert growth(before, after, "ml_app_http_requests_total", route="/health/live") == 1
    assert growth(before, after, "ml_app_http_requests_total", route="/health") == 1
    assert growth(before, after, "ml_app_http_requests_total", route="/metrics") == 2
    timed = {
        labels["route"] for labels in after.series("ml_app_http_request_duration_seconds_count")
    }
    assert "/predict" in timed
    assert not timed & {"/health", "/health/live", "/health/ready", "/metrics"}
    assert (
        growth(before, after, "ml_app_http_request_duration_seconds_count", route="/predict") == 1
    )


def test_several_apps_in_one_process_count_into_the_same_metrics(demo_store: Path):
    clients = [create_app({"store": demo_store}).test_client() for _ in range(3)]
    before = [scrape_app(c) for c in clients]
    for c in clients:
        assert c.post("/predict", json={"features": IRIS_VIRGINICA}).status_code == 200
    for c, earlier in zip(clients, before, strict=True):
        later = scrape_app(c)
        assert growth(earlier, later, "ml_app_predictions_total", **{"class": "virginica"}) == 3
        assert growth(earlier, later, "ml_app_http_requests_total", route="/predict") == 3


def test_metrics_are_open_when_no_token_is_set(client: FlaskClient):
    response = client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 200
    assert "ml_app_model_ready" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpzM2NyZXQtdG9rZW4=", "s3cret-token", "Bearer "],
)
def test_metrics_token_refuses_anything_but_the_bearer_token(demo_store: Path, authorization):
    client = create_app({"store": demo_store, "metrics_token": "s3cret-token"}).test_client()
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert (body["code"], body["status"]) == ("unauthorized", 401)
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "s3cret-token" not in response.get_data(as_text=True)


def test_metrics_token_lets_the_bearer_in_and_guards_nothing_else(demo_store: Path):
    client = create_app({"store": demo_store, "metrics_token": "s3cret-token"}).test_client()
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200
    assert Exposition.parse(response.get_data(as_text=True)).total("ml_app_model_ready") > 0
    assert client.post("/predict", json={"features": IRIS_SETOSA}).status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_a_version_that_failed_to_load_is_reported_not_ready(store: Path):
    artifact = store / "iris" / "1" / "model.skops"
    artifact.write_bytes(b"garbage" + artifact.read_bytes())
    metrics = scrape_app(create_app({"store": store}).test_client())
    assert metrics.samples[_key("ml_app_model_ready", model="iris", version="1")] == 0
    assert metrics.samples[_key("ml_app_model_ready", model="diabetes", version="1")] == 1


def test_a_missing_default_model_is_reported_not_ready(demo_store: Path):
    client = create_app({"store": demo_store, "default_model": "absent_model"}).test_client()
    metrics = scrape_app(client)
    assert metrics.samples[_key("ml_app_model_ready", model="absent_model", version="")] == 0
