"""Inference backends: what LoadedModel asks of one, and scikit-learn's own methods.

The ONNX Runtime backend lives in ml_app.core.onnx_runtime, imported only when a version is
served or converted with it, so the command line never loads ONNX Runtime.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import sklearn


class Backend(Protocol):
    """What LoadedModel asks of an inference backend; rows are a float64 2-D matrix."""

    name: str

    def labels(self, matrix: np.ndarray) -> np.ndarray:
        """Predicted classes, as values of the estimator's classes_."""

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Rows x classes, float64, columns in classes_ order."""

    def values(self, matrix: np.ndarray) -> np.ndarray:
        """Regression outputs, float64."""


class SklearnBackend:
    """The estimator's own methods."""

    name = "sklearn"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def labels(self, matrix: np.ndarray) -> np.ndarray:
        """estimator.predict."""
        with _validated_input():
            return self.estimator.predict(matrix)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """estimator.predict_proba."""
        with _validated_input():
            return self.estimator.predict_proba(matrix)

    def values(self, matrix: np.ndarray) -> np.ndarray:
        """estimator.predict as float64."""
        with _validated_input():
            return self.estimator.predict(matrix).astype(np.float64, copy=False)


def _validated_input() -> Any:
    # Request matrices are checked finite by the schema already; scikit-learn's own check of
    # every cell is a fixed cost per call that buys nothing here.
    return sklearn.config_context(assume_finite=True)
