"""Hot reload in one process: the watcher thread, catching up before the first request."""

from __future__ import annotations

import os
import signal
import threading

from ml_app import create_app
from ml_app.core import lifecycle, loading
from ml_app.core import registry as registry_module
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


def test_a_fork_during_a_build_waits_for_it_so_the_child_can_reload(store, monkeypatch):
    app = create_app({"store": store, "reload_interval": 0.01})
    state = app.extensions["ml_app"]
    building, release = threading.Event(), threading.Event()
    real_build = loading.build_snapshot

    def slow_build(*args, **kwargs):
        building.set()
        release.wait(10)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(registry_module, "build_snapshot", slow_build)
    state.watcher.watch_from_master()  # what the Gunicorn master does once it is ready
    try:
        add_version(store, "iris", "2")
        assert building.wait(10), "the master's poller never started a build"
        threading.Timer(0.3, release.set).start()  # the fork below waits for this build
        pid = os.fork()
        if pid == 0:  # the child: its reload lock must be free, as a fresh worker needs it
            signal.alarm(10)  # a lock inherited held would block for ever: die instead
            state.registry.hold_reloads()  # what the worker's first refresh takes
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert state.registry.resolve().version == "2"  # the parent's build went through
    finally:
        state.watcher.stop()
