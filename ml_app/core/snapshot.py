"""An immutable picture of the store as loaded: versions, aliases, split, shadow, resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ml_app.core.errors import ModelNotFound, ModelNotReady
from ml_app.core.model import LoadedModel, shown_metadata
from ml_app.core.routing import TrafficSplit

DEFAULT_ALIAS = "production"


@dataclass
class VersionState:
    """One version as loaded: the model, or the reason it could not be loaded."""

    version: str
    model: LoadedModel | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    load_seconds: float = 0.0
    stamp: tuple = ()  # the version folder's stat when loaded; a changed folder is reloaded
    # Set when the folder changed and no longer verifies: the model above still serves.
    reverify_error: str | None = None

    def describe(self) -> dict[str, Any]:
        """The version's state and metadata for the API."""
        described: dict[str, Any] = {
            "version": self.version,
            "state": "loaded" if self.model else "failed",
            "load_seconds": round(self.load_seconds, 4),
        }
        if self.error:
            described["error"] = self.error
        if self.reverify_error:
            described["problem"] = f"failed re-verification: {self.reverify_error}"
        described["metadata"] = (
            self.model.describe() if self.model else shown_metadata(self.metadata)
        )
        return described


class Route(NamedTuple):
    """What serves one request: the primary model, and shadow models that get a copy."""

    model: LoadedModel
    shadows: tuple[LoadedModel, ...] = ()
    arm: str | None = None  # the version a traffic split chose; None when no split decided


@dataclass(frozen=True)
class ModelEntry:
    """A model name with its versions, configured aliases and the routing actually in force."""

    name: str
    versions: dict[str, VersionState]
    aliases: dict[str, str]  # as configured in the store
    error: str | None = None
    serving: dict[str, str] = field(default_factory=dict)  # alias -> version it really serves
    default: str | None = None  # what unversioned routes serve when there is no split
    split: TrafficSplit | None = None
    shadow: tuple[str, ...] = ()  # loaded versions that get a copy of unversioned traffic
    problems: tuple[str, ...] = ()  # configured routing that is not in force, and why

    @property
    def default_version(self) -> str | None:
        """The version unversioned routes serve: the production alias, else the newest."""
        return self.default

    def pick(self, version: str | None, routing_key: str | None) -> str | None:
        """The version for a request: the split (or default) when none is named, else it."""
        if version is None:
            return self.split.choose(self.name, routing_key) if self.split else self.default
        return self.serving.get(version, version)

    def loaded(self, version: str | None) -> LoadedModel | None:
        """The version's model when it is loaded."""
        state = self.versions.get(version) if version else None
        return state.model if state else None

    def describe(self) -> dict[str, Any]:
        """Versions, aliases, split, shadow and load states for the API."""
        described: dict[str, Any] = {
            "name": self.name,
            "default_version": self.default,
            "aliases": self.aliases,
            "serving": self.serving,
            "split": self.split.shares() if self.split else None,
            "shadow": list(self.shadow),
            "ready": self.not_ready_reason() is None,
            "problems": list(self.problems),
            "versions": [state.describe() for state in self.versions.values()],
        }
        if self.error:
            described["error"] = self.error
        return described

    def not_ready_reason(self) -> str | None:
        """Why the default version cannot serve, or None when it can."""
        if self.error and not self.versions:
            return f"model {self.name}: {self.error}"
        version = self.default
        state = self.versions.get(version) if version else None
        if state is None:
            return f"model {self.name}: default version {version!r} is not in the store"
        if state.model is None:
            return f"model {self.name} version {version}: {state.error}"
        return None


@dataclass(frozen=True)
class Snapshot:
    """Every model as loaded at one moment; replaced whole, never changed in place."""

    models: dict[str, ModelEntry]
    default_model: str
    store_error: str | None = None
    fingerprint: tuple | None = None

    def entry(self, name: str) -> ModelEntry:
        """The named model's entry; ModelNotFound when the store has no such model."""
        if name not in self.models:
            raise ModelNotFound(f"Model {name!r} is not in the store.")
        return self.models[name]

    def route(
        self, name: str | None = None, version: str | None = None, routing_key: str | None = None
    ) -> Route:
        """The model (and shadows) for a name (default model) and a version or alias (default)."""
        entry = self.models.get(name or self.default_model)
        if entry is None:
            raise ModelNotFound(f"Model {name or self.default_model!r} is not in the store.")
        chosen = entry.pick(version, routing_key)
        state = entry.versions.get(chosen) if chosen else None
        if state is None:
            raise ModelNotFound(f"Model {entry.name!r} has no version or alias {version!r}.")
        if state.model is None:
            raise ModelNotReady(
                f"Model {entry.name!r} version {chosen!r} is not loaded: {state.error}"
            )
        arm = chosen if version is None and entry.split is not None else None
        if version is not None or not entry.shadow:
            return Route(state.model, arm=arm)
        shadows = (entry.loaded(v) for v in entry.shadow if v != chosen)
        return Route(state.model, tuple(m for m in shadows if m is not None), arm)

    def not_ready_reasons(self) -> list[str]:
        """Why the server cannot serve every model's default version; empty when ready."""
        if self.store_error and not self.models:
            return [self.store_error]
        reasons = [entry.not_ready_reason() for entry in self.models.values()]
        if self.default_model not in self.models:
            reasons.append(f"default model {self.default_model!r} is not in the store")
        return [reason for reason in reasons if reason]
