"""In-memory registry of the store's models: load every version, resolve names, report readiness."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ml_app.errors import ModelNotFound, ModelNotReady
from ml_app.inference import LoadedModel
from ml_app.store import LoadPolicy, ModelStore, StoreError

log = logging.getLogger("ml_app.registry")
DEFAULT_ALIAS = "production"


@dataclass
class VersionState:
    """One version as loaded: the model, or the reason it could not be loaded."""

    version: str
    model: LoadedModel | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    load_seconds: float = 0.0

    def describe(self) -> dict[str, Any]:
        """The version's state and metadata for the API."""
        described: dict[str, Any] = {
            "version": self.version,
            "state": "loaded" if self.model else "failed",
            "load_seconds": round(self.load_seconds, 4),
        }
        if self.error:
            described["error"] = self.error
        described["metadata"] = self.model.describe() if self.model else self.metadata
        return described


@dataclass
class ModelEntry:
    """A model name with its versions and aliases."""

    name: str
    versions: dict[str, VersionState]
    aliases: dict[str, str]
    error: str | None = None

    @property
    def default_version(self) -> str | None:
        """The version unversioned routes serve: the production alias, else the newest."""
        if DEFAULT_ALIAS in self.aliases:
            return self.aliases[DEFAULT_ALIAS]
        return next(reversed(self.versions), None)

    def describe(self) -> dict[str, Any]:
        """Versions, aliases and load states for the API."""
        described: dict[str, Any] = {
            "name": self.name,
            "default_version": self.default_version,
            "aliases": self.aliases,
            "ready": self.not_ready_reason() is None,
            "versions": [state.describe() for state in self.versions.values()],
        }
        if self.error:
            described["error"] = self.error
        return described

    def not_ready_reason(self) -> str | None:
        """Why the default version cannot serve, or None when it can."""
        if self.error:
            return f"model {self.name}: {self.error}"
        version = self.default_version
        state = self.versions.get(version) if version else None
        if state is None:
            return f"model {self.name}: default version {version!r} is not in the store"
        if state.model is None:
            return f"model {self.name} version {version}: {state.error}"
        return None


class ModelRegistry:
    """Every model in the store, loaded once; swapped whole so readers never see a mix."""

    def __init__(self, store: ModelStore, policy: LoadPolicy, default_model: str) -> None:
        self.store = store
        self.policy = policy
        self.default_model = default_model
        self._models: dict[str, ModelEntry] = {}
        self._store_error: str | None = "models not loaded yet"

    def load_all(self) -> None:
        """Load every version of every model; failures are recorded, never raised."""
        try:
            names = self.store.model_names()
        except (StoreError, OSError) as exc:
            log.error("model store unreadable: %s", exc)
            self._models, self._store_error = {}, str(exc)
            return
        self._models = {name: self._load_model(name) for name in names}
        self._store_error = None if self._models else f"no models in {self.store.root}"

    def resolve(self, name: str | None = None, version: str | None = None) -> LoadedModel:
        """The model to serve for a name (default model) and a version or alias (default)."""
        entry = self._models.get(name or self.default_model)
        if entry is None:
            raise ModelNotFound(f"Model {name or self.default_model!r} is not in the store.")
        if version is None:
            version = entry.default_version
        else:
            version = entry.aliases.get(version, version)
        state = entry.versions.get(version) if version else None
        if state is None:
            raise ModelNotFound(f"Model {entry.name!r} has no version or alias {version!r}.")
        if state.model is None:
            raise ModelNotReady(
                f"Model {entry.name!r} version {version!r} is not loaded: {state.error}"
            )
        return state.model

    def entry(self, name: str) -> ModelEntry:
        """The named model's entry; ModelNotFound when the store has no such model."""
        if name not in self._models:
            raise ModelNotFound(f"Model {name!r} is not in the store.")
        return self._models[name]

    def entries(self) -> list[ModelEntry]:
        """Every model in the store, by name."""
        return list(self._models.values())

    def not_ready_reasons(self) -> list[str]:
        """Why the server cannot serve every model's default version; empty when ready."""
        if self._store_error:
            return [self._store_error]
        reasons = [entry.not_ready_reason() for entry in self._models.values()]
        if self.default_model not in self._models:
            reasons.append(f"default model {self.default_model!r} is not in the store")
        return [reason for reason in reasons if reason]

    def _load_model(self, name: str) -> ModelEntry:
        try:
            versions = self.store.versions(name)
            aliases = self.store.aliases(name)
        except (StoreError, OSError) as exc:
            log.error("model %s unreadable: %s", name, exc)
            return ModelEntry(name=name, versions={}, aliases={}, error=str(exc))
        states = {version: self._load_version(name, version) for version in versions}
        return ModelEntry(name=name, versions=states, aliases=aliases)

    def _load_version(self, name: str, version: str) -> VersionState:
        started = time.perf_counter()
        state = VersionState(version=version)
        try:
            state.metadata = self.store.read_metadata(name, version)
            estimator = self.store.load_estimator(name, version, state.metadata, self.policy)
            state.model = LoadedModel(name, version, estimator, state.metadata)
        except Exception as exc:  # noqa: BLE001 - any broken artifact must leave the server up
            state.error = str(exc) or type(exc).__name__
            log.error("model %s version %s failed to load: %s", name, version, state.error)
        state.load_seconds = time.perf_counter() - started
        if state.model:
            log.info("model %s version %s loaded in %.3fs", name, version, state.load_seconds)
        return state
