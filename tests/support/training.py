"""Train small candidate models and save them as a data scientist would hand them over."""

from __future__ import annotations

from pathlib import Path

import skops.io
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier


def save_iris_forest(path: Path, trees: int = 5, seed: int = 0) -> Path:
    """A random forest fitted on iris, saved with skops at `path`."""
    x, y = datasets.load_iris(return_X_y=True)
    skops.io.dump(RandomForestClassifier(n_estimators=trees, random_state=seed).fit(x, y), path)
    return path
