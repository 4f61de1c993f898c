"""Train the demo models on datasets bundled with scikit-learn and write them to the store.

Usage: python -m model.train [--store PATH] [--only NAME ...]
Models already in the store are left alone, so `make model` is cheap after the first run.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_app.core.config import Settings
from ml_app.core.conversion import write_converted_version
from ml_app.core.drift_reference import PREDICTIONS_KEY, quantile_bins, reference_for_rows
from ml_app.core.model import LoadedModel
from ml_app.core.store import ModelStore

SEED = 0
REFERENCE_ROWS = 20


def _iris() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))


def _breast_cancer() -> Any:
    return RandomForestClassifier(n_estimators=100, random_state=SEED)


def _diabetes() -> Any:
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0))


# name -> (dataset loader, estimator factory, task)
DEMO_MODELS: dict[str, tuple[Callable[..., Any], Callable[[], Any], str]] = {
    "iris": (datasets.load_iris, _iris, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, _breast_cancer, "classification"),
    "diabetes": (datasets.load_diabetes, _diabetes, "regression"),
}


def feature_name(raw: str) -> str:
    """'sepal length (cm)' -> 'sepal_length': names clients can type as JSON keys."""
    return re.sub(r"\s*\(.*?\)", "", raw).strip().replace(" ", "_")


def baseline_statistics(x: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-feature quantile bin edges and the share of training rows in each bin."""
    stats = {}
    for column, name in enumerate(names):
        values = x[:, column]
        stats[name] = {
            **quantile_bins(values),
            "mean": float(values.mean()),
            "std": float(values.std()),
        }
    return stats


def _metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        }
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
    }


def train_model(name: str) -> tuple[Any, dict[str, Any]]:
    """Fit one demo model (fixed seeds) and build its metadata."""
    load, make_estimator, task = DEMO_MODELS[name]
    data = load()
    x, y = data.data.astype(np.float64), data.target
    names = [feature_name(n) for n in data.feature_names]
    stratify = y if task == "classification" else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=SEED, stratify=stratify
    )
    estimator = make_estimator().fit(x_train, y_train)
    metadata: dict[str, Any] = {
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task,
        "estimator": type(estimator).__name__,
        "feature_names": names,
        "versions": {
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
            "python": platform.python_version(),
        },
        "training": {
            "dataset": f"sklearn.datasets.load_{name}",
            "rows_train": len(x_train),
            "rows_test": len(x_test),
            "metrics": _metrics(task, y_test, estimator.predict(x_test)),
        },
        "baseline": baseline_statistics(x_train, names),
        "reference_sample": x_test[:REFERENCE_ROWS].tolist(),
    }
    if task == "classification":
        metadata["target_names"] = [str(data.target_names[c]) for c in estimator.classes_]
    # What the model answered for its own training rows: the reference for prediction drift.
    model = LoadedModel(name, "1", estimator, metadata)
    metadata[PREDICTIONS_KEY] = reference_for_rows(model, x_train)
    return estimator, metadata


def train_demo_models(store_root: Path, only: list[str] | None = None) -> list[str]:
    """Train the demo models missing from the store as version 1; returns the names trained."""
    store = ModelStore(store_root)
    trained = []
    for name in only or list(DEMO_MODELS):
        if (store.root / name).exists():
            continue
        estimator, metadata = train_model(name)
        write_converted_version(store, name, "1", estimator, {**metadata, "version": "1"})
        trained.append(name)
    return trained


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="default: ML_APP_STORE")
    parser.add_argument("--only", nargs="*", choices=sorted(DEMO_MODELS), default=None)
    args = parser.parse_args(argv)
    store_root = args.store or Settings.from_env().store
    trained = train_demo_models(store_root, args.only)
    for name in trained:
        print(f"trained {name} -> {store_root / name / '1'}")
    if not trained:
        print(f"model store {store_root} already has the demo models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
