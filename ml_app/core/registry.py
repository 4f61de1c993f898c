"""In-memory registry of the store's models: resolve requests, reload changes, swap atomically.

The registry holds one reference to an immutable Snapshot. A reload builds a whole new Snapshot
off the request path and replaces the reference in one assignment, so a request that took the
snapshot once sees the old state or the new one, never a mix.
"""

from __future__ import annotations

import logging
import threading
import time

from ml_app.core import metrics
from ml_app.core.loading import build_snapshot
from ml_app.core.model import LoadedModel
from ml_app.core.snapshot import ModelEntry, Route, Snapshot
from ml_app.core.store import LoadPolicy, ModelStore

log = logging.getLogger("ml_app.registry")


class ModelRegistry:
    """Every model in the store, loaded once and reloaded on change; swapped whole."""

    def __init__(self, store: ModelStore, policy: LoadPolicy, default_model: str) -> None:
        self.store = store
        self.policy = policy
        self.default_model = default_model
        self._snapshot = Snapshot({}, default_model, "models not loaded yet")
        self._reloading = threading.Lock()  # one build at a time; readers never wait on it
        self._checked_at: float | None = None  # Unix time the last look at the store began

    def load_all(self) -> None:
        """Load every version of every model from scratch; failures are recorded, never raised."""
        with self._reloading:
            self._checked_at = time.time()
            self._swap(build_snapshot(self.store, self.policy, self.default_model, None))

    def refresh(self) -> bool:
        """Rebuild from the store if it changed since the last build; True when it swapped.

        Loaded versions are reused, so only new or changed ones are read from disk.
        """
        with self._reloading:
            try:
                return self._rebuild()
            except Exception:  # the poller must survive anything; the old snapshot serves on
                log.exception("model store reload failed; the previous state keeps serving")
                metrics.STORE_RELOADS.labels("failed").inc()  # under the lock: see hold_reloads
                return False

    def hold_reloads(self) -> None:
        """Wait for a build in progress and hold off new ones (just before fork).

        A child forked while the lock (or a metrics file lock) is held by a building thread
        would inherit it held, with no thread left to release it.
        """
        self._reloading.acquire()

    def release_reloads(self) -> None:
        """Let builds run again (just after fork, in the parent and in the child)."""
        self._reloading.release()

    def _rebuild(self) -> bool:
        current = self._snapshot
        previous_check, self._checked_at = self._checked_at, time.time()
        if self.store.fingerprint() == current.fingerprint:
            return False
        fresh = build_snapshot(self.store, self.policy, self.default_model, current)
        if fresh.store_error and current.models:
            metrics.STORE_RELOADS.labels("failed").inc()
        else:
            metrics.STORE_RELOADS.labels("applied").inc()
        self._swap(fresh)
        _log_changes(current, fresh, previous_check)
        return True

    def snapshot(self) -> Snapshot:
        """The state in force now; hold on to it to read several things consistently."""
        return self._snapshot

    def resolve(
        self, name: str | None = None, version: str | None = None, routing_key: str | None = None
    ) -> LoadedModel:
        """The model to serve for a name (default model) and a version or alias (default)."""
        return self._snapshot.route(name, version, routing_key).model

    def route(
        self, name: str | None = None, version: str | None = None, routing_key: str | None = None
    ) -> Route:
        """Like resolve, with the shadow versions that get a copy of this request."""
        return self._snapshot.route(name, version, routing_key)

    def entry(self, name: str) -> ModelEntry:
        """The named model's entry; ModelNotFound when the store has no such model."""
        return self._snapshot.entry(name)

    def entries(self) -> list[ModelEntry]:
        """Every model in the store, by name."""
        return list(self._snapshot.models.values())

    def not_ready_reasons(self) -> list[str]:
        """Why the server cannot serve every model's default version; empty when ready."""
        return self._snapshot.not_ready_reasons()

    def _swap(self, fresh: Snapshot) -> None:
        self._snapshot = fresh  # one reference assignment: atomic for every reader
        metrics.publish_snapshot(fresh)


def _log_changes(old: Snapshot, new: Snapshot, previous_check: float | None) -> None:
    """One line per model whose routing changed, and one per new problem.

    Each says when this process last looked at the store before (`previous_check_at`, Unix
    time): the change landed after that look, so how late it was noticed is plain to see.
    """
    since = {"previous_check_at": previous_check}
    for name, entry in new.models.items():
        before = old.models.get(name)
        routing = _routing_summary(entry)
        if before is None or _routing_summary(before) != routing:
            log.info("model %s routing changed", name, extra={"fields": {**routing, **since}})
        for problem in entry.problems:
            if before is None or problem not in before.problems:
                fields = {"problem": problem, **since}
                log.error("model %s: %s", name, problem, extra={"fields": fields})


def _routing_summary(entry: ModelEntry) -> dict[str, object]:
    return {
        "model": entry.name,
        "default_version": entry.default,
        "serving": entry.serving,
        "split": entry.split.shares() if entry.split else None,
        "shadow": list(entry.shadow),
        "versions": list(entry.versions),
    }
