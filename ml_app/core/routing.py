"""A model's traffic settings (split weights, shadow versions, alias history) and split choice."""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ml_app.core.errors import StoreError
from ml_app.core.store import version_sort_key

# Past targets kept per alias: enough to fall back over a run of broken releases.
HISTORY_LIMIT = 20
_POINTS = float(1 << 64)


@dataclass(frozen=True)
class RoutingConfig:
    """What routing.json holds for one model."""

    split: tuple[tuple[str, float], ...] = ()  # (version or alias, weight)
    shadow: tuple[str, ...] = ()  # versions or aliases that get a copy of the traffic
    history: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # alias -> old targets

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RoutingConfig:
        """Parse routing.json's object; StoreError says what is wrong."""
        try:
            split = tuple(check_weights(raw.get("split") or {}).items())
            shadow = tuple(_strings(raw.get("shadow") or [], "shadow"))
            history = {
                str(alias): tuple(_strings(targets, f"history.{alias}"))
                for alias, targets in dict(raw.get("history") or {}).items()
            }
        except (TypeError, ValueError) as exc:
            raise StoreError(f"routing.json: {exc}") from exc
        return cls(split=split, shadow=shadow, history=history)

    def to_json(self) -> dict[str, Any]:
        """The routing.json object."""
        return {
            "split": dict(self.split),
            "shadow": list(self.shadow),
            "history": {alias: list(targets) for alias, targets in self.history.items()},
        }

    def with_alias_target(self, alias: str, version: str) -> RoutingConfig:
        """This config with `version` appended to the alias's history."""
        past = [v for v in self.history.get(alias, ()) if v != version][-(HISTORY_LIMIT - 1) :]
        return replace(self, history={**self.history, alias: (*past, version)})


def check_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """Validate split weights (finite, not negative, some positive); ValueError otherwise."""
    if not isinstance(weights, Mapping):
        raise ValueError("split must be an object of version -> weight")
    checked: dict[str, float] = {}
    for target, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"weight of {target!r} must be a number")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {target!r} must be a finite number >= 0")
        checked[str(target)] = float(weight)
    if checked and not any(checked.values()):
        raise ValueError("at least one weight must be greater than zero")
    return checked


def _strings(values: Iterable[Any], what: str) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, list | tuple):
        raise ValueError(f"{what} must be a list of versions")
    return [str(v) for v in values]


@dataclass(frozen=True)
class TrafficSplit:
    """Versions with cumulative shares of [0, 1); a point in that range picks one version."""

    versions: tuple[str, ...]
    bounds: tuple[float, ...]  # upper bound of each version's range; the last is 1.0

    @classmethod
    def from_weights(cls, weights: Iterable[tuple[str, float]]) -> TrafficSplit:
        """Merge weights per version and lay them out in version order (stable across edits)."""
        merged: dict[str, float] = {}
        for version, weight in weights:
            if weight > 0:
                merged[version] = merged.get(version, 0.0) + weight
        versions = tuple(sorted(merged, key=version_sort_key))
        total, running, bounds = sum(merged.values()), 0.0, []
        for version in versions:
            running += merged[version]
            bounds.append(running / total)
        bounds[-1] = 1.0  # no gap at the top from rounding
        return cls(versions=versions, bounds=tuple(bounds))

    def choose(self, model: str, routing_key: str | None) -> str:
        """The version for one request: sticky per routing key, random without one."""
        point = sticky_point(model, routing_key) if routing_key else random.random()  # noqa: S311
        return self.versions[min(bisect_right(self.bounds, point), len(self.versions) - 1)]

    def shares(self) -> dict[str, float]:
        """Each version's share of the traffic, for the API."""
        lows = (0.0, *self.bounds[:-1])
        return {
            v: round(hi - lo, 6) for v, lo, hi in zip(self.versions, lows, self.bounds, strict=True)
        }


def sticky_point(model: str, routing_key: str) -> float:
    """A point in [0, 1) fixed by model and key, the same in every process and on every host.

    Python's hash() is salted per process, so a keyed digest is used instead.
    """
    digest = hashlib.blake2b(f"{model}\0{routing_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _POINTS
