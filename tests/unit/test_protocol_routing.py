"""Every protocol serves through the same data plane: a traffic split's sticky assignment by
X-Routing-Key, and shadow copies, are the same on the native, V2, V1 and MLflow routes."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from ml_app import create_app
from ml_app.core import lifecycle
from ml_app.core.store import ModelStore
from tests.support.reference import IRIS_SETOSA
from tests.support.store import add_version

KEYS = [f"caller-{i}" for i in range(40)]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_SETOSA}]}
# Each protocol's request for one setosa row, and how its answer names the serving version.
PROTOCOLS = {
    "native": ("/models/iris/predict", {"features": IRIS_SETOSA}),
    "v2": ("/v2/models/iris/infer", V2_BODY),
    "v1": ("/v1/models/iris:predict", {"instances": [IRIS_SETOSA]}),
}


@pytest.fixture
def split_app(store):
    add_version(store, "iris", "2")
    lifecycle.set_split(ModelStore(store), "iris", {"1": 50, "2": 50})
    return create_app({"store": store, "reload_interval": 0})


def _served_version(client, protocol: str, key: str) -> str:
    path, body = PROTOCOLS[protocol]
    answer = client.post(path, json=body, headers={"X-Routing-Key": key})
    assert answer.status_code == 200, answer.get_json()
    return answer.headers["X-Model-Version"]


def test_every_protocol_gives_a_caller_the_same_side_of_the_split(split_app):
    client = split_app.test_client()
    native = [_served_version(client, "native", key) for key in KEYS]
    assert set(native) == {"1", "2"}  # 40 callers on a 50/50 split land on both sides
    for protocol in ("v2", "v1"):
        assert [_served_version(client, protocol, key) for key in KEYS] == native, protocol


def test_the_mlflow_route_follows_the_routing_key_too(split_app):
    client = split_app.test_client()
    for key in KEYS[:10]:
        answer = client.post(
            "/invocations", json={"instances": [IRIS_SETOSA]}, headers={"X-Routing-Key": key}
        )
        assert answer.headers["X-Model-Version"] == _served_version(client, "native", key)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_protocol_sends_its_copy_to_the_shadow(store, protocol):
    add_version(store, "iris", "2")
    models = ModelStore(store)
    lifecycle.set_alias(models, "iris", "production", "1")
    lifecycle.set_shadow(models, "iris", ["2"])
    app = create_app({"store": store, "reload_interval": 0})
    labels = {"model": "iris", "version": "2", "outcome": "ok"}
    before = REGISTRY.get_sample_value("ml_app_shadow_predictions_total", labels) or 0.0
    path, body = PROTOCOLS[protocol]
    # buffered: the test client then closes the response, as a WSGI server does once it is sent
    answer = app.test_client().post(path, json=body, buffered=True)
    assert answer.headers["X-Model-Version"] == "1"
    app.extensions["ml_app"].shadow.wait_idle()
    assert REGISTRY.get_sample_value("ml_app_shadow_predictions_total", labels) == before + 1
