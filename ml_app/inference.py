"""LoadedModel: one verified estimator and its metadata, turning an input matrix into Outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import is_classifier

from ml_app.store import StoreError

log = logging.getLogger("ml_app.inference")


@dataclass(frozen=True)
class Outputs:
    """What a model said for a batch of rows, in input order."""

    labels: list[Any] | None = None  # classifiers: one class label per row
    probabilities: np.ndarray | None = None  # classifiers with predict_proba: rows x classes
    values: list[float] | None = None  # regressors: one number per row


class LoadedModel:
    """A model version in memory, checked against its metadata, ready to predict."""

    def __init__(self, name: str, version: str, estimator: Any, metadata: dict[str, Any]) -> None:
        self.name = name
        self.version = version
        self.estimator = estimator
        self.metadata = metadata
        self.feature_names: list[str] = list(metadata.get("feature_names") or [])
        self.feature_index = {feature: i for i, feature in enumerate(self.feature_names)}
        self.is_classifier = is_classifier(estimator)
        self.class_labels = _class_labels(estimator, metadata) if self.is_classifier else []
        self.has_proba = self.is_classifier and hasattr(estimator, "predict_proba")
        self._check_features()
        self.labels_from_proba = self.has_proba and self._argmax_matches_predict()

    @property
    def n_features(self) -> int:
        """How many columns a row must have."""
        return len(self.feature_names)

    def predict(self, matrix: np.ndarray) -> Outputs:
        """Predict a 2-D float matrix whose columns follow feature_names."""
        if not self.is_classifier:
            return Outputs(values=self.estimator.predict(matrix).astype(float).tolist())
        if not self.has_proba:
            return Outputs(labels=self._labels(self.estimator.predict(matrix)))
        probabilities = self.estimator.predict_proba(matrix)
        if self.labels_from_proba:
            # One model call instead of two: predict() is argmax(predict_proba()) for this model,
            # which was checked on the reference sample at load time.
            labels = [self.class_labels[i] for i in probabilities.argmax(axis=1)]
        else:
            labels = self._labels(self.estimator.predict(matrix))
        return Outputs(labels=labels, probabilities=probabilities)

    def describe(self) -> dict[str, Any]:
        """Metadata for the API, without the bulky reference sample."""
        return {k: v for k, v in self.metadata.items() if k != "reference_sample"}

    def _labels(self, predicted: np.ndarray) -> list[Any]:
        positions = {c: i for i, c in enumerate(self.estimator.classes_.tolist())}
        return [self.class_labels[positions[c]] for c in predicted.tolist()]

    def _check_features(self) -> None:
        expected = getattr(self.estimator, "n_features_in_", None)
        if not self.feature_names:
            raise StoreError("metadata.json lists no feature_names")
        if expected is not None and expected != self.n_features:
            raise StoreError(
                f"metadata.json lists {self.n_features} features "
                f"but the estimator expects {expected}"
            )

    def _argmax_matches_predict(self) -> bool:
        sample = self.metadata.get("reference_sample")
        if not sample:
            return False
        rows = np.asarray(sample, dtype=np.float64)
        predicted = self.estimator.predict(rows)
        derived = self.estimator.classes_[self.estimator.predict_proba(rows).argmax(axis=1)]
        return bool(np.array_equal(predicted, derived))


def _class_labels(estimator: Any, metadata: dict[str, Any]) -> list[Any]:
    """Labels to show per class, in the estimator's classes_ order."""
    classes = estimator.classes_.tolist()
    names = metadata.get("target_names")
    if names and len(names) == len(classes):
        return [str(n) for n in names]
    return classes
