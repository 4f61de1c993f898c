"""A version's drift reference: quantile bins of each feature and of its predictions.

Written into metadata.json when a version is trained (model/train.py) or registered
(core/registration.py): `baseline` per feature, `baseline_predictions` for the model's answers,
either predicted-class frequencies (classifiers) or quantile bins of the predicted values
(regressors), laid out like a feature's bins (see core/drift_bins.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_app.core.model import LoadedModel, Outputs

BASELINE_BINS = 10
PREDICTIONS_KEY = "baseline_predictions"
CLASSES = "classes"  # kind of a classifier's prediction reference
BINS = "bins"  # kind of a regressor's prediction reference


def quantile_bins(values: np.ndarray, bins: int = BASELINE_BINS) -> dict[str, list[float]]:
    """Quantile `bin_edges` of the values (duplicates merged) and the share in each bin."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:  # a constant: one bin holding every value
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(values, bins=edges)
    return {"bin_edges": edges.tolist(), "proportions": (counts / counts.sum()).tolist()}


def prediction_reference(outputs: Outputs, class_labels: Sequence[Any]) -> dict[str, Any]:
    """The reference for a model's answers on its reference rows."""
    if outputs.values is not None:
        return {"kind": BINS, **quantile_bins(np.asarray(outputs.values, np.float64))}
    position = {label: i for i, label in enumerate(class_labels)}
    indices = np.fromiter((position[label] for label in outputs.labels), np.int64)
    counts = np.bincount(indices, minlength=len(class_labels))
    return {
        "kind": CLASSES,
        "classes": [str(label) for label in class_labels],
        "proportions": (counts / counts.sum()).tolist(),
    }


def reference_for_rows(model: LoadedModel, rows: np.ndarray) -> dict[str, Any]:
    """Predict the reference rows and describe the answers (classes or bins)."""
    return prediction_reference(model.predict(rows), model.class_labels)
