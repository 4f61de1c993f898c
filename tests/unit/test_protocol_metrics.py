"""Every protocol counts predictions and refused requests into the same per-model metrics."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.prometheus import growth, scrape_app
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA

IRIS = {"model": "iris", "version": "1"}
ROWS = [IRIS_SETOSA, IRIS_VIRGINICA]


def test_protocol_predictions_are_counted_per_class(client: FlaskClient):
    tensor = {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": ROWS}
    before = scrape_app(client)
    assert client.post("/v2/models/iris/infer", json={"inputs": [tensor]}).status_code == 200
    assert client.post("/v1/models/iris:predict", json={"instances": ROWS}).status_code == 200
    assert client.post("/invocations", json={"instances": ROWS}).status_code == 200
    after = scrape_app(client)
    for label in ("setosa", "virginica"):
        assert growth(before, after, "ml_app_predictions_total", **IRIS, **{"class": label}) == 3
    assert growth(before, after, "ml_app_prediction_rows_sum", **IRIS) == 6
    assert growth(before, after, "ml_app_inference_duration_seconds_count", **IRIS) == 3


def test_protocol_refusals_are_counted_by_reason(client: FlaskClient):
    bad_tensor = {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}
    before = scrape_app(client)
    assert client.post("/v2/models/iris/infer", json={"inputs": [bad_tensor]}).status_code == 400
    assert client.post("/v1/models/iris:predict", json={"instances": [[1]]}).status_code == 400
    assert client.post("/invocations", json={"instances": [[1]]}).status_code == 400
    assert client.post("/invocations", data="x", content_type="text/plain").status_code == 415
    after = scrape_app(client)
    invalid = growth(
        before, after, "ml_app_validation_failures_total", **IRIS, reason="invalid_input"
    )
    assert invalid == 3
    media = growth(
        before, after, "ml_app_validation_failures_total", **IRIS, reason="unsupported_media_type"
    )
    assert media == 1
    assert growth(before, after, "ml_app_predictions_total", **IRIS) == 0
