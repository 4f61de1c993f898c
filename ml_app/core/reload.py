"""Hot reload: every process polls the store's fingerprint and swaps in a new snapshot on change.

With `preload_app` the Gunicorn master loads the store before forking and never serves; it polls
too (`watch_from_master`), so a worker forked later inherits the verified copies its siblings
serve, even of a version whose file was damaged after they loaded it. Each worker, before its
first request (Gunicorn's post_worker_init hook, or the first request under any other server),
brings itself up to date synchronously, then starts a daemon thread that calls
`registry.refresh()` every `reload_interval` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

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
            if self._pid is not None:
                # Forked from a watching process: its poller may have held this event's lock.
                self._stop = threading.Event()
            self.registry.refresh()
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

    def watch_from_master(self) -> None:
        """Poll in a process that forks serving workers; every fork waits for a build to end."""
        if self.interval <= 0 or self._pid == os.getpid():
            return
        registry = weakref.ref(self.registry)
        os.register_at_fork(
            before=lambda: _call(registry, "hold_reloads"),
            after_in_parent=lambda: _call(registry, "release_reloads"),
            after_in_child=lambda: _call(registry, "release_reloads"),
        )
        self.ensure_running()


def _call(registry_ref: weakref.ref, method: str) -> None:
    registry = registry_ref()
    if registry is not None:
        getattr(registry, method)()


def _poll(registry_ref: weakref.ref, interval: float, stop: threading.Event) -> None:
    # A weak reference: an app that is gone (tests make many) lets its thread end.
    while not stop.wait(interval):
        registry = registry_ref()
        if registry is None:
            return
        registry.refresh()  # never raises: a failed reload is logged and counted
        del registry
