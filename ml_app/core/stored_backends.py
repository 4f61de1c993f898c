"""The backend the store's conversion gives each version, and warnings when compared ones differ.

A canary (split) or shadow comparison between a version served by ONNX Runtime and one served by
scikit-learn measures the backend as much as the model (a forest: microseconds against
milliseconds per call), so the commands that set one say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ml_app.core.errors import StoreError
from ml_app.core.routing import RoutingConfig
from ml_app.core.store import ModelStore

PRODUCTION = "production"


def stored_backend(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """{"name": "onnx", "input_dtype": ...} or {"name": "sklearn", "reason": ...} for a version."""
    described = metadata.get("onnx") or {}
    if described.get("sha256") and not described.get("error"):
        return {"name": "onnx", "input_dtype": described.get("input_dtype")}
    reason = described.get("error") or "the version has no ONNX conversion"
    return {"name": "sklearn", "reason": f"no ONNX model: {reason}"}


def describe_backend(backend: Mapping[str, Any]) -> str:
    """One line for an operator: `onnx (float32 input)` or `sklearn (no ONNX model: ...)`."""
    if backend["name"] == "onnx":
        return f"onnx ({backend.get('input_dtype')} input)"
    return f"{backend['name']} ({backend.get('reason')})"


def mixed_backend_warnings(store: ModelStore, name: str, routing: RoutingConfig) -> list[str]:
    """Warnings for a split or shadow whose versions run on different backends."""
    aliases = store.aliases(name)
    versions = store.versions(name)

    def version_of(target: str) -> str:
        return aliases.get(target, target)

    split = [version_of(target) for target, _ in routing.split]
    warnings = []
    if len({_backend_name(store, name, v) for v in split}) > 1:
        warnings.append(f"split of {name} mixes backends: {_listing(store, name, split)}")
    primary = split or [version_of(PRODUCTION) if PRODUCTION in aliases else versions[-1]]
    for version in dict.fromkeys(version_of(target) for target in routing.shadow):
        compared = [
            v
            for v in primary
            if _backend_name(store, name, v) != _backend_name(store, name, version)
        ]
        if compared:
            warnings.append(
                f"shadow of {name} compares backends: {_listing(store, name, [version])} "
                f"against {_listing(store, name, compared)}"
            )
    return warnings


def _backend(store: ModelStore, name: str, version: str) -> dict[str, Any]:
    try:
        return stored_backend(store.read_metadata(name, version))
    except StoreError as exc:
        return {"name": "unknown", "reason": str(exc)}


def _backend_name(store: ModelStore, name: str, version: str) -> str:
    return _backend(store, name, version)["name"]


def _listing(store: ModelStore, name: str, versions: Iterable[str]) -> str:
    return ", ".join(
        f"version {v} on {describe_backend(_backend(store, name, v))}" for v in versions
    )
