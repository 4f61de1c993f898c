"""The demo models' own answers, loaded straight from the store, to check what protocols return."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets

from ml_app.core.loading import load_estimator
from ml_app.core.model import PARITY_TOLERANCE
from ml_app.core.store import LoadPolicy, ModelStore

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# One row of each of two iris classes the demo model tells apart with certainty.
IRIS_SETOSA = [5.1, 3.5, 1.4, 0.2]
IRIS_VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def estimator(store_root: Path, name: str, version: str = "1") -> Any:
    """The fitted estimator of a model version, loaded from the store with the default policy."""
    store = ModelStore(store_root)
    metadata = store.read_metadata(name, version)
    return load_estimator(store, name, version, metadata, LoadPolicy())


def class_names(store_root: Path, name: str) -> list[str]:
    """A classifier's labels in the estimator's class order."""
    return ModelStore(store_root).read_metadata(name, "1")["target_names"]


def labels(store_root: Path, name: str, rows: np.ndarray, version: str = "1") -> list[str]:
    """A classifier's (version's) predicted class names for rows."""
    names = class_names(store_root, name)
    fitted = estimator(store_root, name, version)
    positions = {c: i for i, c in enumerate(fitted.classes_.tolist())}
    return [names[positions[c]] for c in fitted.predict(rows).tolist()]


def sample_rows(name: str, count: int) -> np.ndarray:
    """The first `count` rows of the dataset a demo model was trained on, every few rows."""
    data = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    step = max(1, len(data) // count)
    return data[::step][:count]


def parity_misses(got: Any, want: Any) -> list[tuple[int, float, float]]:
    """(index, got, want) of each regression value further from scikit-learn's than allowed.

    The stated tolerance: PARITY_TOLERANCE relative to each value's own size, at least 1.
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    allowed = PARITY_TOLERANCE * np.maximum(np.abs(want), 1.0)
    missed = np.flatnonzero(np.abs(got - want) > allowed)
    return [(int(i), float(got[i]), float(want[i])) for i in missed]
