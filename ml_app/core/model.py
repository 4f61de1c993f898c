"""LoadedModel: one verified estimator and its metadata, turning an input matrix into Outputs."""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from sklearn.base import is_classifier

from ml_app.core.backends import Backend, SklearnBackend
from ml_app.core.errors import StoreError

# How far ONNX Runtime may stray from scikit-learn on the reference sample: probabilities
# absolutely, regression values relative to their size (float32 forests land near 1e-6).
PARITY_TOLERANCE = 1e-5


class ParityError(StoreError):
    """The ONNX model does not answer like the estimator on the reference sample."""


class Outputs(NamedTuple):
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
        self._label_positions = (
            {c: i for i, c in enumerate(estimator.classes_.tolist())} if self.is_classifier else {}
        )
        self.labels_from_proba = self.has_proba and self._argmax_matches_predict()
        self.backend: Backend = SklearnBackend(estimator)
        self.backend_info: dict[str, Any] = {"name": "sklearn", "reason": "not asked for ONNX"}

    @property
    def n_features(self) -> int:
        """How many columns a row must have."""
        return len(self.feature_names)

    def predict(self, matrix: np.ndarray) -> Outputs:
        """Predict a 2-D float matrix whose columns follow feature_names."""
        return self._outputs(self.backend, matrix)

    def describe(self) -> dict[str, Any]:
        """Metadata for the API, without the bulky reference sample, and the serving backend."""
        described = shown_metadata(
            {k: v for k, v in self.metadata.items() if k != "reference_sample"}
        )
        described["backend"] = self.backend_info
        return described

    def use_onnx(self, model: bytes, input_dtype: str) -> None:
        """Serve with this ONNX model from now on; ParityError when it answers differently."""
        from ml_app.core.onnx_runtime import OnnxBackend  # only where ONNX serves (see module)

        backend = OnnxBackend(model, input_dtype)
        parity = self.onnx_parity(backend)
        self.backend = backend
        self.backend_info = {"name": "onnx", "input_dtype": input_dtype, "parity": parity}

    def onnx_parity(self, candidate: Backend) -> dict[str, Any]:
        """Compare a backend with scikit-learn on the reference sample; raises ParityError."""
        sample = self.metadata.get("reference_sample")
        if not sample:
            raise ParityError("metadata.json has no reference_sample to check parity on")
        rows = np.asarray(sample, dtype=np.float64)
        expected = self._outputs(SklearnBackend(self.estimator), rows)
        actual = self._outputs(candidate, rows)
        if actual.labels != expected.labels:
            raise ParityError("labels differ from scikit-learn's on the reference sample")
        if self.is_classifier and not self.has_proba:
            return {"rows": len(rows), "max_abs_diff": 0.0}
        if self.has_proba:
            want, got = expected.probabilities, actual.probabilities
            scale = np.ones_like(want)
        else:
            want, got = np.asarray(expected.values), np.asarray(actual.values)
            scale = np.maximum(np.abs(want), 1.0)
        if want.shape != got.shape:
            raise ParityError(f"output shape {got.shape} differs from scikit-learn's {want.shape}")
        difference = np.abs(got - want)
        if not (difference <= PARITY_TOLERANCE * scale).all():
            raise ParityError(
                f"answers differ from scikit-learn's by up to {difference.max():.3g} "
                f"on the reference sample (tolerance {PARITY_TOLERANCE:g})"
            )
        return {"rows": len(rows), "max_abs_diff": float(difference.max())}

    def _outputs(self, backend: Backend, matrix: np.ndarray) -> Outputs:
        if not self.is_classifier:
            return Outputs(values=backend.values(matrix).tolist())
        if not self.has_proba:
            return Outputs(labels=self._labels(backend.labels(matrix)))
        probabilities = backend.probabilities(matrix)
        if self.labels_from_proba:
            # One model call instead of two: predict() is argmax(predict_proba()) for this model,
            # which was checked on the reference sample at load time.
            labels = [self.class_labels[i] for i in probabilities.argmax(axis=1).tolist()]
        else:
            labels = self._labels(backend.labels(matrix))
        return Outputs(labels=labels, probabilities=probabilities)

    def _labels(self, predicted: np.ndarray) -> list[Any]:
        return [self.class_labels[self._label_positions[c]] for c in predicted.tolist()]

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


def shown_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as the API shows it: a feature source's password masked (the URL may hold one)."""
    source = metadata.get("feature_source")
    if not isinstance(source, str):
        return metadata
    parts = urlsplit(source)
    if parts.password is None:
        return metadata
    host = parts.netloc.rpartition("@")[2]
    masked = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    return {**metadata, "feature_source": masked}
