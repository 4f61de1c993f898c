"""Hot reload: every worker polls the store's fingerprint and swaps in a new snapshot on change.

With `preload_app` the Gunicorn master loads the store once, before forking, and never serves,
so it never reloads: its copy only seeds new workers. Each worker, before its first request
(Gunicorn's post_worker_init hook, or the first request under any other server), brings itself
up to date synchronously, so a worker forked late from a stale master never serves old state,
and then starts a daemon thread that calls `registry.refresh()` every `reload_interval` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

from ml_app.core import metrics
from ml_app.core.registry import ModelRegistry

log = logging.getLogger("ml_app.reload")


class StoreWatcher:
    """Keeps one registry fresh in the current process; a no-op when the interval is 0."""

    def __init__(self, registry: ModelRegistry, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def ensure_running(self) -> None:
        """Catch up with the store and start polling, once per process (cheap after that)."""
        pid = os.getpid()
        if self.interval <= 0 or self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            _refresh(self.registry)
            self.thread = threading.Thread(
                target=_poll,
                args=(weakref.ref(self.registry), self.interval, self._stop),
                name="ml_app-store-watcher",
                daemon=True,  # never holds up a worker's exit
            )
            self.thread.start()
            self._pid = pid
            log.info("watching the model store every %ss", self.interval)

    def stop(self) -> None:
        """Stop polling (the thread ends at its next wake-up)."""
        self._stop.set()


def _poll(registry_ref: weakref.ref, interval: float, stop: threading.Event) -> None:
    # A weak reference: an app that is gone (tests make many) lets its thread end.
    while not stop.wait(interval):
        registry = registry_ref()
        if registry is None:
            return
        _refresh(registry)
        del registry


def _refresh(registry: ModelRegistry) -> None:
    try:
        registry.refresh()
    except Exception:  # the thread must survive anything; the old snapshot keeps serving
        log.exception("model store reload failed; the previous state keeps serving")
        metrics.STORE_RELOADS.labels("failed").inc()
