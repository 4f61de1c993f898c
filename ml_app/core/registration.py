"""Checks for a candidate version: load its artifact safely, build metadata, validate features."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
from sklearn.base import is_classifier

from ml_app.core.artifacts import check_sklearn_version, read_estimator
from ml_app.core.drift_reference import PREDICTIONS_KEY, reference_for_rows
from ml_app.core.errors import StoreError
from ml_app.core.feature_sources import check_declaration
from ml_app.core.model import LoadedModel
from ml_app.core.store import LoadPolicy, ModelStore

# Describe the model's inputs and outputs, not one training run: a new version inherits them.
INHERITED_KEYS = (
    *("feature_names", "target_names", "task", "reference_sample", "baseline"),
    *("entity_key", "feature_source", "feature_defaults"),  # where the features live
)


def load_artifact(path: Path, policy: LoadPolicy) -> tuple[Any, str]:
    """The estimator in an uploaded file and the scikit-learn version it was saved with."""
    if not path.is_file():
        raise StoreError(f"{path.name} is not a file")
    estimator, saved_with = read_estimator(path, policy)
    trained_with = saved_with or sklearn.__version__  # skops records none: taken as ours
    check_sklearn_version(trained_with, policy, path.name)
    return estimator, trained_with


def build_metadata(
    store: ModelStore, name: str, version: str, estimator: Any, given: dict[str, Any]
) -> dict[str, Any]:
    """Metadata for a new version: the model's declared inputs/outputs, then what was given."""
    check_given_metadata(given)
    metadata = {**_inherited(store, name), **given}
    if not metadata.get("feature_names") and hasattr(estimator, "feature_names_in_"):
        metadata["feature_names"] = [str(n) for n in estimator.feature_names_in_]
    _drop_stale_samples(metadata)
    task = "classification" if is_classifier(estimator) else "regression"
    if metadata.get("task", task) != task:
        raise StoreError(f"model {name} does {metadata['task']}; this artifact does {task}")
    metadata.update(
        name=name,
        version=version,
        task=task,
        estimator=type(estimator).__name__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        versions={
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
            "python": platform.python_version(),
        },
    )
    return metadata


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _number_rows(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(row, list)
        and all(isinstance(cell, int | float) and not isinstance(cell, bool) for cell in row)
        for row in value
    )


# The shape each declared key must have before anything reads it: (check, what it must be).
_GIVEN_SHAPES = {
    "feature_names": (_strings, "a list of strings"),
    "target_names": (lambda v: isinstance(v, list), "a list"),
    "task": (lambda v: isinstance(v, str), "a string"),
    "reference_sample": (_number_rows, "a list of rows of numbers"),
    "baseline": (lambda v: isinstance(v, dict), "an object"),
    "entity_key": (lambda v: isinstance(v, str), "a string"),
    "feature_source": (lambda v: isinstance(v, str), "a string"),
    "feature_defaults": (lambda v: isinstance(v, dict), "an object"),
}


def check_given_metadata(given: dict[str, Any]) -> None:
    """StoreError when a key the registration reads is given with the wrong shape."""
    for key, (fits, shape) in _GIVEN_SHAPES.items():
        if key in given and not fits(given[key]):
            raise StoreError(f"metadata: {key} must be {shape}, not {type(given[key]).__name__}")


def validate_candidate(name: str, version: str, estimator: Any, metadata: dict[str, Any]) -> None:
    """Refuse an estimator that does not fit the declared features or cannot predict."""
    declared = metadata.get("feature_names") or []
    if not declared:
        raise StoreError(
            f"model {name} declares no feature names: give them (--features or metadata)"
        )
    expected = getattr(estimator, "n_features_in_", len(declared))
    if expected != len(declared):
        raise StoreError(
            f"the estimator expects {expected} features, but model {name} declares "
            f"{len(declared)}: {', '.join(declared)}"
        )
    names_in = getattr(estimator, "feature_names_in_", None)
    if names_in is not None and [str(n) for n in names_in] != list(declared):
        raise StoreError(
            f"the estimator was fitted on features {list(names_in)}, "
            f"but model {name} declares {list(declared)}"
        )
    check_declaration(metadata)
    model = LoadedModel(name, version, estimator, metadata)  # checks the feature count
    targets = metadata.get("target_names")
    if model.is_classifier and targets and len(targets) != len(model.class_labels):
        raise StoreError(
            f"the estimator has {len(model.class_labels)} classes, but model {name} declares "
            f"{len(targets)} target names; give new target_names in the metadata"
        )
    sample = np.asarray(metadata.get("reference_sample") or [[0.0] * len(declared)], np.float64)
    try:
        outputs = model.predict(sample)
    except Exception as exc:
        raise StoreError(f"the estimator cannot predict a sample row: {exc}") from exc
    if outputs.values is not None and not np.isfinite(outputs.values).all():
        raise StoreError("the estimator predicts non-finite values for the sample rows")


def add_prediction_reference(
    name: str, version: str, estimator: Any, metadata: dict[str, Any]
) -> None:
    """Describe what this estimator answers for the reference sample (prediction drift).

    The new version's own answers, never an inherited reference: another estimator answers
    differently. Without reference rows the version simply has no prediction reference.
    """
    metadata.pop(PREDICTIONS_KEY, None)
    sample = metadata.get("reference_sample")
    if sample:
        model = LoadedModel(name, version, estimator, metadata)
        metadata[PREDICTIONS_KEY] = reference_for_rows(model, np.asarray(sample, np.float64))


def _drop_stale_samples(metadata: dict[str, Any]) -> None:
    """Inherited sample rows and baselines that no longer match the features are dropped."""
    names = list(metadata.get("feature_names") or [])
    sample = metadata.get("reference_sample") or []
    if any(len(row) != len(names) for row in sample):
        del metadata["reference_sample"]
    if set(metadata.get("baseline") or names) != set(names):
        del metadata["baseline"]


def _inherited(store: ModelStore, name: str) -> dict[str, Any]:
    """The declared inputs/outputs of the model's newest readable version ({} for a new model)."""
    if not (store.root / name).is_dir():
        return {}
    for version in reversed(store.versions(name)):
        try:
            metadata = store.read_metadata(name, version)
        except StoreError:
            continue
        return {key: metadata[key] for key in INHERITED_KEYS if key in metadata}
    return {}
