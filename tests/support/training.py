"""Train small candidate models and save them as a data scientist would hand them over."""

from __future__ import annotations

from pathlib import Path

import skops.io
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.neighbors import NearestCentroid


def save_iris_forest(path: Path, trees: int = 5, seed: int = 0) -> Path:
    """A random forest fitted on iris, saved with skops at `path`."""
    x, y = datasets.load_iris(return_X_y=True)
    skops.io.dump(RandomForestClassifier(n_estimators=trees, random_state=seed).fit(x, y), path)
    return path


# What skops must be told to trust to load save_iris_boosting's artifact (ML_APP_TRUSTED_TYPES).
BOOSTING_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


def save_iris_boosting(path: Path, iterations: int = 5) -> Path:
    """A HistGradientBoostingClassifier fitted on iris (its skops file needs BOOSTING_TYPES)."""
    x, y = datasets.load_iris(return_X_y=True)
    estimator = HistGradientBoostingClassifier(max_iter=iterations, random_state=0).fit(x, y)
    skops.io.dump(estimator, path)
    return path


def save_iris_nearest_centroid(path: Path) -> Path:
    """A NearestCentroid fitted on iris: skl2onnx has no converter for it (served by sklearn)."""
    x, y = datasets.load_iris(return_X_y=True)
    skops.io.dump(NearestCentroid().fit(x, y), path)
    return path
