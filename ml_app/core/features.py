"""Predictions by entity id: a version's feature declaration, and rows completed from its source.

A version's metadata may declare `entity_key` (e.g. "customer_id"), `feature_source` (a URL:
redis://host:port/db, or feast+http://host:port/<feature view>) and `feature_defaults`
({feature: number}, used when the source lacks that feature for a known entity). A request
then sends `{"entities": [{"customer_id": 42, "petal_length": 1.4}, ...]}`: features an entity
carries are used as given, the rest are looked up, all entities in one round trip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ml_app.core import metrics
from ml_app.core.errors import FeatureStoreUnavailable, InvalidInput
from ml_app.core.feature_sources import (
    EntityId,
    FeatureDeclaration,
    FeatureSource,
    declaration_of,
    source_from_url,
)
from ml_app.core.model import LoadedModel
from ml_app.core.validation import cell_problem, check_row_count

ENTITIES_FIELD = "entities"
_MAX_REPORTED = 20  # problems named in one error body: enough to fix a request, not a flood
_MAX_ID_LENGTH = 256


class Entities(NamedTuple):
    """A request's entities: their ids, and the features each one carries itself."""

    ids: list[EntityId]
    given: list[dict[str, float]]


class LookedUp(NamedTuple):
    """What the source answered: per entity, the values of `names` in that order."""

    names: dict[str, int]  # feature -> its position in each entity's values
    values: list[list[Any]]


class FeatureSources:
    """The feature sources one app reads, by URL, each made on first use (after fork)."""

    def __init__(self, timeout: float, key_prefix: str) -> None:
        self.timeout = timeout
        self.key_prefix = key_prefix
        self._sources: dict[str, FeatureSource] = {}

    def get(self, url: str) -> FeatureSource:
        """The source for a declared URL."""
        source = self._sources.get(url)
        if source is None:
            try:
                source = source_from_url(url, self.timeout, self.key_prefix)
            except ValueError as exc:  # metadata edited by hand: registration refuses these
                message = f"The declared feature source is invalid: {exc}."
                raise FeatureStoreUnavailable(message) from None
            self._sources[url] = source
        return source


def entities_of(body: Mapping[str, Any]) -> Any:
    """A by-entity body's `entities`; InvalidInput when anything else is sent beside them."""
    extra = [key for key in body if key != ENTITIES_FIELD]
    if extra:
        raise InvalidInput(
            f"Send '{ENTITIES_FIELD}' alone: the features they lack are looked up.",
            {key: ["Unknown field."] for key in extra},
        )
    return body[ENTITIES_FIELD]


def entity_rows(
    model: LoadedModel, entities: Any, sources: FeatureSources, max_rows: int
) -> np.ndarray:
    """The feature matrix for a request's entities: given features, the rest looked up."""
    declaration = declaration_of(model.metadata)
    if declaration is None:
        raise InvalidInput(
            f"Model {model.name} version {model.version} declares no feature source: "
            "send features, not entities.",
            {ENTITIES_FIELD: ["This version does not predict by entity id."]},
        )
    request = parse_entities(entities, model, declaration.entity_key, max_rows)
    needed = [name for name in model.feature_names if not all(name in g for g in request.given)]
    looked_up = LookedUp({name: i for i, name in enumerate(needed)}, [[] for _ in request.ids])
    if needed:
        source = sources.get(declaration.source)
        started = time.perf_counter()
        try:
            values = source.fetch(model.name, declaration.entity_key, request.ids, needed)
        finally:
            elapsed = time.perf_counter() - started
            metrics.FEATURE_LOOKUP_SECONDS.labels(model.name, source.kind).observe(elapsed)
        looked_up = looked_up._replace(values=values)
    return _complete(model, declaration, request, looked_up)


def parse_entities(entities: Any, model: LoadedModel, entity_key: str, max_rows: int) -> Entities:
    """Each entity's id and the features it carries; InvalidInput naming every bad place."""
    if not isinstance(entities, list) or not entities:
        raise InvalidInput(
            f"'{ENTITIES_FIELD}' must be a non-empty list of objects with {entity_key!r}.",
            {ENTITIES_FIELD: [f"Must be a non-empty list of objects with {entity_key!r}."]},
        )
    check_row_count(len(entities), max_rows)
    problems: dict[str, list[str]] = {}
    ids: list[EntityId] = []
    given: list[dict[str, float]] = []
    for index, entity in enumerate(entities):
        where = f"{ENTITIES_FIELD}.{index}"
        if type(entity) is not dict:
            problems[where] = [f"Must be an object with {entity_key!r}."]
            continue
        entity_id = entity.get(entity_key)
        if not _is_entity_id(entity_id):
            problems[f"{where}.{entity_key}"] = ["Must be an integer or a non-empty string."]
        ids.append(entity_id)
        features = {k: v for k, v in entity.items() if k != entity_key}
        for name, value in features.items():
            problem = "Unknown feature." if name not in model.feature_index else cell_problem(value)
            if problem:
                problems[f"{where}.{name}"] = [problem]
        given.append(features)
        if len(problems) >= _MAX_REPORTED:
            break
    if problems:
        raise InvalidInput(f"Invalid entities: {_summary(problems)}", problems)
    return Entities(ids, given)


def _is_entity_id(value: Any) -> bool:
    if type(value) is int:  # bool is an int subclass; type() keeps it out
        return True
    return type(value) is str and 0 < len(value) <= _MAX_ID_LENGTH and value.strip() == value


def _complete(
    model: LoadedModel, declaration: FeatureDeclaration, request: Entities, looked_up: LookedUp
) -> np.ndarray:
    """Rows in feature order; InvalidInput naming unknown entities and missing features."""
    problems: dict[str, list[str]] = {}
    rows: list[list[float]] = []
    positions = looked_up.names
    entities = zip(request.ids, request.given, looked_up.values, strict=True)
    for index, (entity_id, carried, values) in enumerate(entities):
        where = f"{ENTITIES_FIELD}.{index}"
        if positions and all(value is None for value in values):
            problems[f"{where}.{declaration.entity_key}"] = [
                f"Unknown entity {entity_id!r}: the feature source has no features for it."
            ]
            continue
        row = []
        for name in model.feature_names:
            value = carried[name] if name in carried else values[positions[name]]
            number = _stored_number(value, declaration.defaults.get(name))
            if number is None:
                problems[f"{where}.{name}"] = [
                    "Missing feature: the feature source has no usable value."
                ]
            row.append(number)
        rows.append(row)
        if len(problems) >= _MAX_REPORTED:
            break
    if problems:
        raise InvalidInput(f"Feature lookup failed: {_summary(problems)}", problems)
    return np.array(rows, dtype=np.float64)


def _stored_number(value: Any, default: float | None) -> float | None:
    """A stored value as a finite float (the declared default when absent), else None."""
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _summary(problems: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{where}: {messages[0]}" for where, messages in problems.items())
