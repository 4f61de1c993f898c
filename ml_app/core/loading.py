"""Build a Snapshot from the store: load new versions, reuse loaded ones, apply fallbacks.

The routing in force is a pure function of the store's contents and of which versions load, so
every worker (and a worker forked later from a stale master) arrives at the same answer: an
alias whose target fails to load serves the most recent earlier target in its history that does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from ml_app.core import metrics
from ml_app.core.artifacts import check_sklearn_version, read_estimator
from ml_app.core.errors import StoreError
from ml_app.core.model import LoadedModel
from ml_app.core.routing import RoutingConfig, TrafficSplit
from ml_app.core.snapshot import DEFAULT_ALIAS, ModelEntry, Snapshot, VersionState
from ml_app.core.store import UNREADABLE, LoadPolicy, ModelStore

log = logging.getLogger("ml_app.registry")
# Which backend serves a version is the inference side's news.
backend_log = logging.getLogger("ml_app.inference")


def build_snapshot(
    store: ModelStore, policy: LoadPolicy, default_model: str, previous: Snapshot | None
) -> Snapshot:
    """Read the whole store into a new Snapshot; nothing here raises for a bad model."""
    fingerprint = store.fingerprint()
    try:
        names = store.model_names()
    except (StoreError, OSError) as exc:
        log.error("model store %s unreadable: %s", store.root, exc)
        # Keep serving what was loaded; this fingerprint stops retries until the store changes.
        kept = previous.models if previous else {}
        return Snapshot(kept, default_model, _reason(store, exc), fingerprint)
    old = previous.models if previous else {}
    entries = (_build_entry(store, policy, name, old.get(name)) for name in names)
    # A folder with no version yet (a first registration in progress) is not a model yet.
    models = {entry.name: entry for entry in entries if entry.versions or entry.error}
    error = None if models else "no models in the model store"
    return Snapshot(models, default_model, error, fingerprint)


def _build_entry(
    store: ModelStore, policy: LoadPolicy, name: str, previous: ModelEntry | None
) -> ModelEntry:
    try:
        versions = store.versions(name)
        aliases = store.aliases(name)
        routing = RoutingConfig.from_json(store.routing(name))
    except (StoreError, OSError) as exc:
        log.error("model %s unreadable: %s", name, exc)
        reason = _reason(store, exc)
        if previous is None:
            return ModelEntry(name=name, versions={}, aliases={}, error=reason)
        # A half-edited control file must not take a serving model down: keep the last good.
        problem = f"store unreadable, still serving the last good state: {reason}"
        return _with_problems(previous, (problem,), error=reason)
    cached = previous.versions if previous else {}
    states = {v: _version_state(store, policy, name, v, cached.get(v)) for v in versions}
    return _route_entry(name, states, aliases, routing)


def _route_entry(
    name: str, states: dict[str, VersionState], aliases: dict[str, str], routing: RoutingConfig
) -> ModelEntry:
    problems = [
        f"version {version} failed re-verification; still serving the copy verified earlier: "
        f"{state.reverify_error}"
        for version, state in states.items()
        if state.reverify_error
    ]
    serving = {
        alias: _alias_target(alias, target, routing.history.get(alias, ()), states, problems)
        for alias, target in aliases.items()
    }
    default = serving.get(DEFAULT_ALIAS) or _newest_loaded(states, problems)
    split = _split(routing, serving, states, problems)
    shadow = []
    for target in routing.shadow:
        version = serving.get(target, target)
        if _is_loaded(states, version):
            shadow.append(version)
        else:
            problems.append(f"shadow {target} is off: {_why_not(states, version)}")
    return ModelEntry(
        name=name,
        versions=states,
        aliases=aliases,
        serving=serving,
        default=default,
        split=split,
        shadow=tuple(shadow),
        problems=tuple(problems),
    )


def _alias_target(
    alias: str, target: str, history: tuple[str, ...], states: dict, problems: list[str]
) -> str:
    if _is_loaded(states, target):
        return target
    for earlier in reversed(history):
        if earlier != target and _is_loaded(states, earlier):
            problems.append(
                f"alias {alias} -> {target} is not in force ({_why_not(states, target)}); "
                f"still serving version {earlier}"
            )
            return earlier
    problems.append(f"alias {alias} -> {target}: {_why_not(states, target)}")
    return target


def _newest_loaded(states: dict[str, VersionState], problems: list[str]) -> str | None:
    newest = next(reversed(states), None)
    if newest is None or _is_loaded(states, newest):
        return newest
    for version in reversed(states):
        if _is_loaded(states, version):
            problems.append(
                f"newest version {newest} is not served ({_why_not(states, newest)}); "
                f"still serving version {version}"
            )
            return version
    return newest


def _split(
    routing: RoutingConfig, serving: dict[str, str], states: dict, problems: list[str]
) -> TrafficSplit | None:
    if not routing.split:
        return None
    weights = [(serving.get(target, target), weight) for target, weight in routing.split]
    broken = [v for v, weight in weights if weight > 0 and not _is_loaded(states, v)]
    if broken:
        # Part of a split cannot serve: the whole split waits, the default keeps serving.
        reasons = "; ".join(f"{v}: {_why_not(states, v)}" for v in broken)
        problems.append(f"traffic split is not in force ({reasons})")
        return None
    return TrafficSplit.from_weights(weights)


def _is_loaded(states: dict[str, VersionState], version: str | None) -> bool:
    state = states.get(version) if version else None
    return bool(state and state.model)


def _why_not(states: dict[str, VersionState], version: str | None) -> str:
    state = states.get(version) if version else None
    if state is None:
        return f"version {version} is not in the store"
    return f"version {version} failed to load: {state.error}"


def _with_problems(entry: ModelEntry, problems: tuple[str, ...], error: str) -> ModelEntry:
    fields = {**entry.__dict__, "problems": entry.problems + problems, "error": error}
    return ModelEntry(**fields)


def _version_state(
    store: ModelStore, policy: LoadPolicy, name: str, version: str, cached: VersionState | None
) -> VersionState:
    stamp = store.version_stamp(name, version)
    if cached is not None and cached.stamp == stamp:
        return cached  # versions are immutable: the same folder is the same model
    fresh = load_version(store, policy, name, version, stamp)
    if fresh.model is None and cached is not None and cached.model is not None:
        # The copy in memory verified; a damaged or unreadable file is reported, not obeyed.
        # The new stamp stops retries until the folder changes again (e.g. it is restored).
        return replace(cached, stamp=stamp, reverify_error=fresh.error)
    return fresh


def _reason(store: ModelStore, exc: BaseException) -> str:
    """Why loading failed, for answers: store files named relative to the store."""
    if isinstance(exc, OSError):
        return store.explain(exc)
    return str(exc) or type(exc).__name__


def load_version(
    store: ModelStore, policy: LoadPolicy, name: str, version: str, stamp: tuple = ()
) -> VersionState:
    """Load and verify one version; a failure is recorded on the state, never raised."""
    started = time.perf_counter()
    state = VersionState(version=version, stamp=stamp)
    try:
        if stamp[:1] == (UNREADABLE,):
            raise StoreError(stamp[1])
        state.metadata = store.read_metadata(name, version)
        state.model = load_model(store, name, version, state.metadata, policy)
    except Exception as exc:  # noqa: BLE001 - any broken artifact must leave the server up
        state.error = _reason(store, exc)
        metrics.VERSION_LOAD_FAILURES.labels(model=name, version=version).inc()
    state.load_seconds = time.perf_counter() - started
    fields = {
        "model": name,
        "version": version,
        "load_seconds": round(state.load_seconds, 4),
        "store": str(store.root),  # answers name files relative to it; operators need where
    }
    if state.model:
        log.info(
            "model %s version %s loaded in %.3fs",
            name,
            version,
            state.load_seconds,
            extra={"fields": fields},
        )
    else:
        log.error(
            "model %s version %s failed to load: %s",
            name,
            version,
            state.error,
            extra={"fields": {**fields, "error": state.error}},
        )
    return state


def load_estimator(
    store: ModelStore, name: str, version: str, metadata: dict[str, Any], policy: LoadPolicy
) -> Any:
    """A version's estimator: sha256 and scikit-learn version checked, then loaded safely."""
    artifact = store.artifact_path(name, version, metadata)
    trained_with = str(metadata.get("versions", {}).get("sklearn", "")) or None
    check_sklearn_version(trained_with, policy, f"model {name} version {version}")
    return read_estimator(artifact, policy, store.shown(artifact))[0]


def load_model(
    store: ModelStore, name: str, version: str, metadata: dict[str, Any], policy: LoadPolicy
) -> LoadedModel:
    """Verify and load a version from the store; choose its backend as the policy says."""
    model = LoadedModel(
        name, version, load_estimator(store, name, version, metadata, policy), metadata
    )
    if policy.backend == "sklearn":
        model.backend_info = {"name": "sklearn", "reason": "ML_APP_BACKEND=sklearn"}
        return model
    try:
        model.use_onnx(*store.read_onnx(name, version, metadata))
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        if policy.backend == "onnx":
            raise StoreError(f"ML_APP_BACKEND=onnx, but ONNX cannot serve it: {reason}") from exc
        model.backend_info = {"name": "sklearn", "reason": reason}
        backend_log.warning(
            "model %s version %s serves with scikit-learn, not ONNX: %s", name, version, reason
        )
        return model
    backend_log.info("model %s version %s serves with ONNX Runtime", name, version)
    return model
