"""The WSGI fast path answers well-formed predictions exactly as the Flask views would, and
hands everything else (every failure included) to them with the body intact."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import REGISTRY
from werkzeug.test import Client
from werkzeug.wrappers import Response

from ml_app import create_app
from ml_app.fastpath import PredictFastPath
from tests.conftest import IRIS_SETOSA, IRIS_VIRGINICA
from tests.unit.test_logging import _collect

NAMED = dict(
    zip(("sepal_length", "sepal_width", "petal_length", "petal_width"), IRIS_SETOSA, strict=True)
)
FOREST_ROW = [14.0] + [0.1] * 29
DIABETES_ROW = [0.02] * 10
JSON = "application/json"

WELL_FORMED = [
    ("/predict", {"features": IRIS_SETOSA}, JSON),
    ("/predict", {"features": NAMED}, JSON),
    ("/predict", {"instances": [IRIS_SETOSA, NAMED, IRIS_VIRGINICA]}, JSON),
    ("/predict/batch", {"instances": [NAMED, IRIS_VIRGINICA]}, JSON),
    ("/models/breast_cancer/predict", {"features": FOREST_ROW}, JSON),
    ("/models/diabetes/predict", {"instances": [DIABETES_ROW, DIABETES_ROW]}, JSON),
    ("/models/iris/versions/1/predict/batch", {"instances": [IRIS_VIRGINICA]}, JSON),
    (
        "/models/iris/versions/1/predict",
        {"features": IRIS_SETOSA},
        "application/json; charset=utf-8",
    ),
]

FAILURES = [
    ("/predict", b'{"features": [5.1, 3.5', JSON, 400),
    ("/predict", b'{"features": [5.1, NaN, 1.4, 0.2]}', JSON, 422),
    ("/predict", b'{"features": [5.1, 3.5, 1.4]}', JSON, 422),
    ("/predict", b'{"features": [5.1, 3.5, 1.4, 0.2], "instances": []}', JSON, 422),
    ("/predict", b'{"features": [5.1, 3.5, 1.4, 0.2], "extra": 1}', JSON, 422),
    ("/predict", b'{"rows": [5.1, 3.5, 1.4, 0.2]}', JSON, 422),
    ("/predict", b"{}", JSON, 422),
    ("/predict", b"[5.1, 3.5, 1.4, 0.2]", JSON, 400),
    ("/predict", b"", JSON, 400),
    ("/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', "text/plain", 415),
    ("/predict/batch", b'{"features": [5.1, 3.5, 1.4, 0.2]}', JSON, 422),
    ("/predict/batch", orjson.dumps({"instances": [IRIS_SETOSA] * 11}), JSON, 413),
    ("/predict", b'{"features": [5.1, 3.5, 1.4, 0.2], "pad": "' + b"x" * 5000 + b'"}', JSON, 413),
    ("/models/nope/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', JSON, 404),
    ("/models/iris/versions/9/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', JSON, 404),
    ("/predict/", b'{"features": [5.1, 3.5, 1.4, 0.2]}', JSON, 404),
]


@pytest.fixture
def app(demo_store):
    app = create_app({"store": demo_store, "max_batch_rows": 10, "max_body_bytes": 4096})
    app.flask_requests = []  # the Flask views' request hooks run only for what they answer
    app.before_request(lambda: app.flask_requests.append(1))
    return app


def _clients(app) -> tuple[Client, Client]:
    """The whole app (fast path first), and the Flask app alone behind it."""
    assert isinstance(app.wsgi_app, PredictFastPath)
    return Client(app, Response), Client(app.wsgi_app.wrapped, Response)


def _post(client: Client, path: str, body: bytes, content_type: str) -> Response:
    return client.post(path, data=body, headers={"Content-Type": content_type})


def _comparable(response: Response) -> tuple:
    body = orjson.loads(response.data)
    body.pop("request_id", None)
    headers = {k: v for k, v in response.headers.items() if k != "X-Request-ID"}
    return response.status_code, body, headers


@pytest.mark.parametrize(("path", "body", "content_type"), WELL_FORMED)
def test_well_formed_predictions_skip_flask_and_answer_the_same(app, path, body, content_type):
    fast, flask_only = _clients(app)
    served_fast = _post(fast, path, orjson.dumps(body), content_type)
    assert app.flask_requests == []
    served_by_flask = _post(flask_only, path, orjson.dumps(body), content_type)
    assert app.flask_requests == [1]
    assert served_fast.status_code == 200
    assert _comparable(served_fast) == _comparable(served_by_flask)
    assert len(served_fast.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(("path", "body", "content_type", "status"), FAILURES)
def test_failures_reach_flask_with_the_body_intact(app, path, body, content_type, status):
    fast, flask_only = _clients(app)
    through_fast_path = _post(fast, path, body, content_type)
    assert app.flask_requests == [1]
    assert through_fast_path.status_code == status
    assert _comparable(through_fast_path) == _comparable(
        _post(flask_only, path, body, content_type)
    )


def test_named_invalid_field_proves_the_replayed_body(app):
    fast, _ = _clients(app)
    answer = _post(fast, "/predict", b'{"features": [5.1, "x", 1.4, 0.2]}', JSON)
    assert answer.status_code == 422
    assert answer.json["details"] == {"features.1": ["Must be a number, not str."]}


def test_other_methods_and_routes_go_to_flask(app):
    fast, _ = _clients(app)
    assert fast.get("/predict").status_code == 405
    assert fast.get("/health").status_code == 200
    assert app.flask_requests == [1, 1]


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_fast_path_counts_and_logs_like_the_flask_view(app):
    route = {"method": "POST", "route": "/models/<name>/predict", "status": "200"}
    predicted = {"model": "iris", "version": "1", "class": "setosa"}
    counted = ("ml_app_http_requests_total", route), ("ml_app_predictions_total", predicted)
    lines = []
    for client in _clients(app):
        before = [_sample(name, labels) for name, labels in counted]
        handler = _collect("ml_app.access")
        try:
            body = orjson.dumps({"instances": [IRIS_SETOSA, IRIS_SETOSA]})
            assert _post(client, "/models/iris/predict", body, JSON).status_code == 200
        finally:
            logging.getLogger("ml_app.access").removeHandler(handler)
        after = [_sample(name, labels) for name, labels in counted]
        assert [now - was for now, was in zip(after, before, strict=True)] == [1, 2]
        (line,) = handler.lines
        assert line.pop("latency_ms") > 0
        for varying in ("time", "request_id"):
            line.pop(varying)
        lines.append(line)
    assert lines[0] == lines[1]
    assert lines[0]["rows"] == 2 and lines[0]["path"] == "/models/iris/predict"
