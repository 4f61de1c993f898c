"""Hot reload in one process: the watcher thread, catching up before the first request."""

from __future__ import annotations

from ml_app import create_app
from ml_app.core import lifecycle
from ml_app.core.store import ModelStore
from ml_app.web.worker import start_worker
from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA
from tests.support.store import add_version


def _version(client) -> str:
    return client.post("/predict", json={"features": IRIS_SETOSA}).get_json()["version"]


def test_first_request_catches_up_with_the_store(store):
    app = create_app({"store": store, "reload_interval": 3600})
    add_version(store, "iris", "2")  # after the app loaded, before it served
    assert _version(app.test_client()) == "2"
    app.extensions["ml_app"].watcher.stop()


def test_watcher_thread_applies_changes_while_serving(store):
    app = create_app({"store": store, "reload_interval": 0.05})
    client = app.test_client()
    try:
        assert _version(client) == "1"
        lifecycle.set_alias(ModelStore(store), "iris", "production", "1")
        add_version(store, "iris", "2")
        lifecycle.set_alias(ModelStore(store), "iris", "staging", "2")
        registry = app.extensions["ml_app"].registry
        wait_until(
            lambda: registry.entry("iris").serving.get("staging") == "2",
            10,
            "the watcher to pick up the change",
        )
        assert _version(client) == "1"  # production still says 1
        assert (
            client.post(
                "/models/iris/versions/staging/predict", json={"features": IRIS_SETOSA}
            ).get_json()["version"]
            == "2"
        )
    finally:
        app.extensions["ml_app"].watcher.stop()


def test_watcher_starts_once_per_process_and_not_at_all_when_off(store):
    app = create_app({"store": store, "reload_interval": 3600})
    watcher = app.extensions["ml_app"].watcher
    start_worker(app)  # what gunicorn's post_worker_init does
    thread = watcher.thread
    start_worker(app)
    _version(app.test_client())  # the request hook finds it running
    assert watcher.thread is thread
    assert thread.is_alive()
    watcher.stop()
    thread.join(10)
    assert not thread.is_alive()

    off = create_app({"store": store, "reload_interval": 0})
    start_worker(off)
    assert off.extensions["ml_app"].watcher.thread is None
    add_version(store, "iris", "2")
    assert _version(off.test_client()) == "1"  # read once, at start
    start_worker(object())  # anything that is not our app is left alone
