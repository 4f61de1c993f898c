"""What the payload log says about each model version: rows, accuracy or MAE against the truths
sent as feedback, and PSI per feature against the version's reference.

Predictions and feedback are joined by the inference event's id (the request id, or
`<request id>#<n>` for a GraphQL query's n-th prediction; a feedback event names it in
`data.request_id`). Events seen twice (a shipper's at-least-once
copies) count once. PSI uses the one definition in drift_bins, the same Prometheus computes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ml_app.core import drift_bins
from ml_app.core.errors import StoreError
from ml_app.core.payload_events import FEEDBACK, INFERENCE
from ml_app.core.store import ModelStore


@dataclasses.dataclass
class VersionReport:
    """One model version's tally over the payload log."""

    model: str
    version: str
    task: str | None = None  # from the store's metadata; else guessed from the predictions
    requests: int = 0
    refused: int = 0  # answered with an error status
    truncated: int = 0  # answered, but logged without the data (over the size setting)
    rows: int = 0
    rows_with_truth: int = 0
    correct: int = 0
    absolute_error: float = 0.0
    # Rows counted per feature into the reference's n + 2 slots; reference shares likewise.
    slot_counts: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    reference: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """Share of rows with truth predicted right (classifiers)."""
        if self.task != "classification" or not self.rows_with_truth:
            return None
        return self.correct / self.rows_with_truth

    @property
    def mae(self) -> float | None:
        """Mean absolute error over rows with truth (regressors)."""
        if self.task != "regression" or not self.rows_with_truth:
            return None
        return self.absolute_error / self.rows_with_truth

    def psi(self) -> dict[str, float | None]:
        """PSI per feature of the reference (None with no rows)."""
        found = {}
        for feature, (_, shares) in self.reference.items():
            value = drift_bins.psi(shares, self.slot_counts[feature])
            found[feature] = None if math.isnan(value) else round(value, 6)
        return found

    def to_json(self) -> dict[str, Any]:
        """The report's fields for machines."""
        return {
            "model": self.model,
            "version": self.version,
            "task": self.task,
            "requests": self.requests,
            "refused": self.refused,
            "truncated": self.truncated,
            "rows": self.rows,
            "rows_with_truth": self.rows_with_truth,
            "accuracy": self.accuracy,
            "mae": self.mae,
            "psi": self.psi(),
        }


@dataclasses.dataclass
class Report:
    """Every version's tally, and what could not be joined."""

    versions: dict[tuple[str, str], VersionReport]
    duplicates: int = 0  # events seen more than once, counted once
    without_model: int = 0  # requests refused before a model was resolved (e.g. 404, 401)
    feedback_unmatched: int = 0  # truths for requests not in the log (or with no predictions)
    feedback_mismatched: int = 0  # truths whose count differs from the rows predicted

    def to_json(self) -> dict[str, Any]:
        """The whole report for machines."""
        return {
            "versions": [self.versions[key].to_json() for key in sorted(self.versions)],
            "duplicates": self.duplicates,
            "without_model": self.without_model,
            "feedback_unmatched": self.feedback_unmatched,
            "feedback_mismatched": self.feedback_mismatched,
        }


class _Builder:
    """Reads events once, keeping per request only its predictions (for the join at the end)."""

    def __init__(self, store: ModelStore | None) -> None:
        self.store = store
        self.report = Report({})
        self.seen: set[tuple[str, str]] = set()
        self.predictions: dict[str, tuple[VersionReport, list[Any]]] = {}
        self.truths: dict[str, Any] = {}

    def add(self, event: dict[str, Any]) -> None:
        key = (event.get("type"), event.get("id"))
        if key in self.seen:
            self.report.duplicates += 1
            return
        self.seen.add(key)
        data = event.get("data") or {}
        if event.get("type") == INFERENCE:
            if data.get("model") and data.get("version"):
                self._inference(event["id"], data)
            else:
                self.report.without_model += 1
        elif event.get("type") == FEEDBACK and data.get("request_id"):
            self.truths[data["request_id"]] = data.get("truth")  # a later truth corrects

    def _inference(self, request_id: str, data: dict[str, Any]) -> None:
        tally = self._version(str(data["model"]), str(data["version"]))
        tally.requests += 1
        if int(data.get("status") or 0) >= 400:
            tally.refused += 1
            return
        inputs, outputs = data.get("inputs"), data.get("outputs")
        if not inputs or not outputs:
            tally.truncated += data.get("truncated") is not None
            return
        predictions = list(outputs.get("predictions") or [])
        tally.rows += len(predictions)
        self.predictions[request_id] = (tally, predictions)
        _count_slots(tally, inputs)

    def _version(self, model: str, version: str) -> VersionReport:
        key = (model, version)
        if key not in self.report.versions:
            tally = VersionReport(model, version)
            _load_reference(tally, self.store)
            self.report.versions[key] = tally
        return self.report.versions[key]

    def finish(self) -> Report:
        for request_id, truth in self.truths.items():
            if request_id not in self.predictions:
                self.report.feedback_unmatched += 1
                continue
            tally, predictions = self.predictions[request_id]
            truths = truth if isinstance(truth, list) else [truth]
            if tally.task is None:
                tally.task = _guess_task(predictions)
            if len(truths) != len(predictions) or not _usable(tally.task, truths):
                self.report.feedback_mismatched += 1
                continue
            _score(tally, predictions, truths)
        return self.report


def _load_reference(tally: VersionReport, store: ModelStore | None) -> None:
    """The version's task and per-feature reference from its metadata, when the store has it."""
    if store is None:
        return
    try:
        metadata = store.read_metadata(tally.model, tally.version)
    except (StoreError, OSError, ValueError):
        return  # not in this store: no PSI, task guessed
    tally.task = metadata.get("task")
    for feature, reference in (metadata.get("baseline") or {}).items():
        edges = np.asarray(reference["bin_edges"], np.float64)
        tally.reference[feature] = (edges, drift_bins.reference_shares(reference["proportions"]))
        tally.slot_counts[feature] = np.zeros(len(edges) + 1, np.int64)


def _count_slots(tally: VersionReport, inputs: dict[str, Any]) -> None:
    """Add a request's rows to the slot counts of every reference feature it carries."""
    if not tally.reference or not inputs.get("rows"):
        return
    try:
        matrix = np.asarray(inputs["rows"], np.float64)
    except (TypeError, ValueError):
        return  # values that are not numbers have no bin
    names = inputs.get("feature_names") or []
    for feature, (edges, _) in tally.reference.items():
        if feature in names and matrix.ndim == 2:
            column = matrix[:, names.index(feature)]
            tally.slot_counts[feature] += drift_bins.slot_counts(edges, column)


def _guess_task(predictions: list[Any]) -> str:
    """Classification when every prediction is a label (text or whole number), else regression."""
    labels = all(isinstance(p, str | bool | int) for p in predictions)
    return "classification" if labels else "regression"


def _usable(task: str, truths: list[Any]) -> bool:
    """A regressor's truths must be numbers; a classifier's may be any label."""
    if task != "regression":
        return True
    return all(isinstance(t, int | float) and not isinstance(t, bool) for t in truths)


def _same(prediction: Any, truth: Any) -> bool:
    numbers = (int, float)
    if isinstance(prediction, numbers) and isinstance(truth, numbers):
        return float(prediction) == float(truth)
    return str(prediction) == str(truth)


def _score(tally: VersionReport, predictions: list[Any], truths: list[Any]) -> None:
    tally.rows_with_truth += len(truths)
    pairs = list(zip(predictions, truths, strict=True))
    if tally.task == "regression":
        tally.absolute_error += sum(abs(float(p) - float(t)) for p, t in pairs)
    else:
        tally.correct += sum(_same(p, t) for p, t in pairs)


def build_report(events: Iterable[dict[str, Any]], store: ModelStore | None = None) -> Report:
    """Tally the events per model version, then join the feedback to the predictions."""
    builder = _Builder(store)
    for event in events:
        builder.add(event)
    return builder.finish()
