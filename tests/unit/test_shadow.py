"""Shadow traffic: answers recorded (metrics, logs) but never returned; failures and slowness
of the shadow version change nothing for the caller."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from ml_app import create_app
from ml_app.core import lifecycle
from ml_app.core.model import Outputs
from ml_app.core.shadow import agreement
from ml_app.core.store import ModelStore
from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.store import add_version

QUEUE_SIZE = 3


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"model": "iris", **labels}) or 0.0


@pytest.fixture
def shadow_app(store):
    add_version(store, "iris", "2")
    models = ModelStore(store)
    lifecycle.set_alias(models, "iris", "production", "1")
    lifecycle.set_shadow(models, "iris", ["2"])
    return create_app({"store": store, "reload_interval": 0, "shadow_queue_size": QUEUE_SIZE})


def _state(app):
    return app.extensions["ml_app"]


def _predict(client, row=IRIS_SETOSA, path="/predict"):
    # buffered: the test client then closes the response like a WSGI server does after sending
    return client.post(path, json={"features": row}, buffered=True)


def test_shadow_answers_are_recorded_not_returned(shadow_app):
    client = shadow_app.test_client()
    agree = _count(
        "ml_app_shadow_comparisons_total", version="2", primary_version="1", agreement="agree"
    )
    ok = _count("ml_app_shadow_predictions_total", version="2", outcome="ok")
    answers = [_predict(client, row) for row in (IRIS_SETOSA, IRIS_VIRGINICA)]
    assert [a.get_json()["version"] for a in answers] == ["1", "1"]
    assert [a.headers["X-Model-Version"] for a in answers] == ["1", "1"]
    _state(shadow_app).shadow.wait_idle()
    assert _count("ml_app_shadow_predictions_total", version="2", outcome="ok") == ok + 2
    # version 2 is a copy of version 1 here, so it agrees on every row
    assert (
        _count(
            "ml_app_shadow_comparisons_total", version="2", primary_version="1", agreement="agree"
        )
        == agree + 2
    )


def test_named_version_requests_are_not_mirrored(shadow_app):
    client = shadow_app.test_client()
    ok = _count("ml_app_shadow_predictions_total", version="2", outcome="ok")
    assert _predict(client, path="/models/iris/versions/1/predict").status_code == 200
    _state(shadow_app).shadow.wait_idle()
    assert _count("ml_app_shadow_predictions_total", version="2", outcome="ok") == ok


def test_a_failing_shadow_changes_nothing_for_the_caller(shadow_app, monkeypatch):
    client = shadow_app.test_client()
    expected = _predict(client, path="/models/iris/versions/1/predict").get_json()
    shadow_model = _state(shadow_app).registry.entry("iris").loaded("2")

    def explode(matrix):
        raise RuntimeError("shadow blew up")

    monkeypatch.setattr(shadow_model, "predict", explode)
    errors = _count("ml_app_shadow_predictions_total", version="2", outcome="error")
    response = _predict(client)
    assert response.status_code == 200
    assert response.get_json() == expected
    _state(shadow_app).shadow.wait_idle()
    assert _count("ml_app_shadow_predictions_total", version="2", outcome="error") == errors + 1


def test_a_hanging_shadow_neither_blocks_callers_nor_queues_without_bound(shadow_app, monkeypatch):
    client = shadow_app.test_client()
    expected = _predict(client, path="/models/iris/versions/1/predict").get_json()
    shadow_model = _state(shadow_app).registry.entry("iris").loaded("2")
    release, started = threading.Event(), threading.Event()
    real_predict = shadow_model.predict

    def hang(matrix):
        started.set()
        release.wait(30)
        return real_predict(matrix)

    monkeypatch.setattr(shadow_model, "predict", hang)
    dropped = _count("ml_app_shadow_predictions_total", version="2", outcome="dropped")
    try:
        first = _predict(client)
        wait_until(started.is_set, 10, "the shadow thread to start its first copy")
        # Every request still gets its answer while the shadow is stuck.
        later = [_predict(client) for _ in range(QUEUE_SIZE + 5)]
    finally:
        release.set()
    assert [r.get_json() for r in (first, *later)] == [expected] * (QUEUE_SIZE + 6)
    # QUEUE_SIZE copies waited; the rest were dropped instead of piling up
    assert _count("ml_app_shadow_predictions_total", version="2", outcome="dropped") == (
        dropped + 5
    )
    _state(shadow_app).shadow.wait_idle()


def test_agreement_per_row():
    labels = Outputs(labels=["a", "b", "c"])
    assert agreement(labels, Outputs(labels=["a", "x", "c"])) == (2, 3)
    values = Outputs(values=[100.0, 200.0, 0.0])
    assert agreement(values, Outputs(values=[100.5, 250.0, 0.0])) == (2, 3)
    with pytest.raises(ValueError, match="rows"):
        agreement(labels, Outputs(labels=["a"]))
    with pytest.raises(ValueError, match="values"):
        agreement(values, Outputs(labels=["a", "b", "c"]))
    assert agreement(values, values) == (3, 3)
