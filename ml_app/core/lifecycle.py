"""Operator actions on the store: register a version, move aliases, set the split and shadow.

The command line and the admin endpoints both call these, so both validate the same way. Every
change is one atomic file replacement (or one folder rename); running servers pick it up on
their next poll. Read-modify-write changes hold the model's lock so concurrent edits don't clash.
Everything is checked before anything is written (not even the lock file): a refused action
leaves the store byte for byte as it was.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ml_app.core.conversion import write_converted_version
from ml_app.core.errors import StoreError
from ml_app.core.registration import (
    add_prediction_reference,
    build_metadata,
    load_artifact,
    validate_candidate,
)
from ml_app.core.routing import RoutingConfig, check_weights
from ml_app.core.store import (
    ROUTING_FILE,
    LoadPolicy,
    ModelStore,
    is_valid_name,
    version_sort_key,
    write_bytes_atomic,
)
from ml_app.core.stored_backends import mixed_backend_warnings, stored_backend

# Held while reading and rewriting a model's control files (beside them, never read by servers).
LOCK_FILE = ".lock"
Checked = TypeVar("Checked")


class LifecycleError(ValueError):
    """An operator action that cannot be done; the message says why."""


class NotInStore(LifecycleError):
    """The action names a model, version or alias the store does not have."""


@dataclass(frozen=True)
class NewVersion:
    """What an operator hands over: an artifact for a model, and how to register it."""

    name: str
    artifact: Path
    version: str | None = None  # default: the next number
    metadata: Mapping[str, Any] = field(default_factory=dict)  # merged over the inherited
    alias: str | None = None  # point this alias at the new version once it is written


@dataclass(frozen=True)
class Registration:
    """A version just written to the store."""

    name: str
    version: str
    path: Path
    sha256: str
    backend: dict[str, Any]  # what serves it: onnx, or sklearn and why (stored_backend)

    def to_json(self) -> dict[str, Any]:
        """What the admin API answers and `register --json` prints."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "backend": self.backend,
        }


def register_version(store: ModelStore, policy: LoadPolicy, new: NewVersion) -> Registration:
    """Validate an artifact against the model's declared features and write it as a version.

    A version whose alias cannot be set once it is written is removed again, so it is never
    left serving unversioned traffic half-registered.
    """
    name = new.name
    check_new_version_names(new)
    try:
        estimator, trained_with = load_artifact(Path(new.artifact), policy)

        def check() -> tuple[str, dict[str, Any]]:
            version = new.version or store.next_version(name)
            if (store.root / name / version).exists():
                raise LifecycleError(f"model {name} already has a version {version}")
            metadata = build_metadata(store, name, version, estimator, dict(new.metadata))
            metadata["versions"]["sklearn"] = trained_with
            metadata["registered_from"] = Path(new.artifact).name
            validate_candidate(name, version, estimator, metadata)
            add_prediction_reference(name, version, estimator, metadata)
            if new.alias:  # the alias's files must be readable to be rewritten
                _aliases(store, name)
                _routing(store, name)
            return version, metadata

        with _locked(store, name, check, create=True) as (version, metadata):
            path = write_converted_version(store, name, version, estimator, metadata)
            if new.alias:
                with _undone_on_failure(store, name, path):
                    _point_alias(store, name, new.alias, version)
    except StoreError as exc:
        raise LifecycleError(str(exc)) from exc
    except OSError as exc:  # reading the model's files, or writing the new version
        raise LifecycleError(store.explain(exc, "read or written")) from exc
    written = store.read_metadata(name, version)
    return Registration(name, version, path, written["sha256"], stored_backend(written))


def set_alias(store: ModelStore, name: str, alias: str, version: str) -> dict[str, str]:
    """Point an alias at an existing version (its history keeps the old targets)."""
    check_alias_name(alias)

    def check() -> None:
        _require_versions(store, name, [version])
        _aliases(store, name)  # both control files must be readable to be rewritten
        _routing(store, name)

    with _locked(store, name, check):
        return _point_alias(store, name, alias, version)


def _point_alias(store: ModelStore, name: str, alias: str, version: str) -> dict[str, str]:
    """Write the alias and its history; the caller holds the model's lock."""
    aliases = {**_aliases(store, name), alias: version}
    routing = _routing(store, name).with_alias_target(alias, version)
    # History first: a poll between the two writes still sees a consistent alias.
    store.write_routing(name, routing.to_json())
    store.write_aliases(name, aliases)
    return aliases


@contextmanager
def _undone_on_failure(store: ModelStore, name: str, version_folder: Path) -> Iterator[None]:
    """On failure, remove the version just written and put routing.json back as it was."""
    routing_file = store.root / name / ROUTING_FILE
    saved = routing_file.read_bytes() if routing_file.exists() else None
    try:
        yield
    except BaseException:
        shutil.rmtree(version_folder, ignore_errors=True)
        if saved is None:
            routing_file.unlink(missing_ok=True)
        else:
            write_bytes_atomic(routing_file, saved)
        raise


def check_new_version_names(new: NewVersion) -> None:
    """LifecycleError unless the model name, version and alias of `new` are path-safe names."""
    if not is_valid_name(new.name):
        raise LifecycleError(f"invalid model name {new.name!r}")
    if new.version is not None and not is_valid_name(new.version):
        raise LifecycleError(f"invalid version {new.version!r}")
    if new.alias is not None:
        check_alias_name(new.alias)


def check_alias_name(alias: str) -> None:
    """LifecycleError unless `alias` can name an alias (a path-safe name, not a number)."""
    if not is_valid_name(alias) or alias.isdigit():
        raise LifecycleError(f"invalid alias {alias!r}: use a name like production or staging")


def remove_alias(store: ModelStore, name: str, alias: str) -> dict[str, str]:
    """Remove an alias; removing `production` makes the newest version the default again."""

    def check() -> dict[str, str]:
        _require_model(store, name)
        aliases = _aliases(store, name)
        if alias not in aliases:
            raise NotInStore(f"model {name} has no alias {alias!r}")
        return aliases

    with _locked(store, name, check) as aliases:
        del aliases[alias]
        store.write_aliases(name, aliases)
    return aliases


def set_split(store: ModelStore, name: str, weights: Mapping[str, Any]) -> RoutingConfig:
    """Split unversioned traffic by weight over versions or aliases; {} clears the split."""
    try:
        checked = check_weights(weights)
    except ValueError as exc:
        raise LifecycleError(str(exc)) from exc
    return _update_routing(store, name, checked, split=tuple(checked.items()))


def set_shadow(store: ModelStore, name: str, targets: Iterable[str]) -> RoutingConfig:
    """Send a copy of unversioned traffic to these versions or aliases; [] turns shadow off."""
    targets = tuple(dict.fromkeys(str(t) for t in targets))
    return _update_routing(store, name, targets, shadow=targets)


def backend_warnings(
    store: ModelStore, name: str, routing: RoutingConfig, serving: str = "auto"
) -> list[str]:
    """Warnings for a split or shadow that compares versions on different backends.

    `serving` is ML_APP_BACKEND: only `auto` mixes backends (`sklearn` serves every version with
    scikit-learn; under `onnx` a version without an ONNX model is not served at all).
    """
    if serving != "auto":
        return []
    try:
        return mixed_backend_warnings(store, name, routing)
    except StoreError as exc:
        raise LifecycleError(str(exc)) from exc


def describe(store: ModelStore, name: str) -> dict[str, Any]:
    """What the store says about one model: versions, aliases, split, shadow."""
    _require_model(store, name)
    routing = _routing(store, name)
    return {
        "name": name,
        "versions": store.versions(name),
        "aliases": _aliases(store, name),
        "split": dict(routing.split) or None,
        "shadow": list(routing.shadow),
    }


def _update_routing(
    store: ModelStore, name: str, targets: Iterable[str], **changes: Any
) -> RoutingConfig:
    targets = tuple(targets)

    def check() -> RoutingConfig:
        _require_versions(store, name, targets, aliases_too=True)
        return _routing(store, name)

    with _locked(store, name, check) as current:
        routing = RoutingConfig(**{**current.__dict__, **changes})
        store.write_routing(name, routing.to_json())
    return routing


@contextmanager
def _locked(
    store: ModelStore, name: str, check: Callable[[], Checked], create: bool = False
) -> Iterator[Checked]:
    """Hold the model's write lock once `check` passes; yield what it returns under the lock.

    `check` runs first without the lock, so a refused action creates nothing (not even the
    lock file or a new model's folder), then again under it: the store may have changed.
    """
    folder = store.root / name
    if not is_valid_name(name) or not (create or folder.is_dir()):
        raise NotInStore(f"model {name!r} is not in the store")
    check()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield check()


def _routing(store: ModelStore, name: str) -> RoutingConfig:
    try:
        return RoutingConfig.from_json(store.routing(name))
    except StoreError as exc:
        raise LifecycleError(str(exc)) from exc


def _aliases(store: ModelStore, name: str) -> dict[str, str]:
    try:
        return store.aliases(name)
    except StoreError as exc:
        raise LifecycleError(str(exc)) from exc


def _require_model(store: ModelStore, name: str) -> None:
    if not is_valid_name(name) or not (store.root / name).is_dir() or not store.versions(name):
        raise NotInStore(f"model {name!r} is not in the store")


def _require_versions(
    store: ModelStore, name: str, targets: Iterable[str], aliases_too: bool = False
) -> None:
    _require_model(store, name)
    known = set(store.versions(name)) | (set(_aliases(store, name)) if aliases_too else set())
    missing = [t for t in targets if t not in known]
    if missing:
        have = ", ".join(sorted(known, key=version_sort_key))
        raise NotInStore(f"model {name} has no version {', '.join(missing)} (it has {have})")
