"""What each serving process does before its first request: catch up with the store, poll it.

With `preload_app` the Gunicorn master loads the store before forking and never serves; it polls
the store too (`start_master`), so workers it forks later start from its newest verified state.
Each worker brings itself up to date in Gunicorn's post_worker_init hook (`start_worker`), or,
under any other server, on its first request (ml_app.web.context opens each request with the
watcher's `ensure_running`, which costs a pid comparison once it runs), then polls the store.
"""

from __future__ import annotations

from ml_app.web.metrics import publish_model_state
from ml_app.web.state import state_of


def start_worker(app: object) -> None:
    """Gunicorn post_worker_init: bring this worker's models up to date, publish their gauges."""
    state = state_of(app)
    if state is not None and state.watcher is not None:
        state.watcher.ensure_running()
    publish_model_state(app)


def stop_worker(app: object) -> None:
    """Gunicorn worker_exit: add the drift counts gathered in memory to the shared counters and
    close this worker's payload log segment, ready to ship."""
    state = state_of(app)
    if state is None:
        return
    if state.drift is not None:
        state.drift.flush()
    if state.payload is not None:
        state.payload.writer.close()


def start_master(app: object) -> None:
    """Gunicorn when_ready (preloaded app): keep the master's copy fresh for later forks."""
    state = state_of(app)
    if state is not None and state.watcher is not None:
        state.watcher.watch_from_master()
