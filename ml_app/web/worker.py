"""What each serving process does before its first request: catch up with the store, poll it.

With `preload_app` the Gunicorn master loads the store before forking and never serves; it polls
the store too (`start_master`), so workers it forks later start from its newest verified state.
Each worker brings itself up to date in Gunicorn's post_worker_init hook (`start_worker`), or,
under any other server, on its first request (`register_reload`), then polls the store.
"""

from __future__ import annotations

from flask import Flask

from ml_app.core.reload import StoreWatcher
from ml_app.web.metrics import publish_model_state
from ml_app.web.state import state_of


def start_worker(app: object) -> None:
    """Gunicorn post_worker_init: bring this worker's models up to date, publish their gauges."""
    state = state_of(app)
    if state is not None and state.watcher is not None:
        state.watcher.ensure_running()
    publish_model_state(app)


def start_master(app: object) -> None:
    """Gunicorn when_ready (preloaded app): keep the master's copy fresh for later forks."""
    state = state_of(app)
    if state is not None and state.watcher is not None:
        state.watcher.watch_from_master()


def register_reload(app: Flask, watcher: StoreWatcher) -> None:
    """Start the watcher on a worker's first request when no server hook started it earlier."""
    app.before_request(watcher.ensure_running)
