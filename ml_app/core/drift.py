"""Drift counting: each predicted row's reference bin, per feature and for its prediction.

A request costs one vectorised bin search over the whole batch (every counted feature at once)
and one bincount, added to the version's pending counts in this process's memory. A multiprocess
counter update takes a lock and a file write, so the counters (`ml_app_drift_rows`) are updated
once per non-empty bin by a background thread every `flush_seconds`, and once more at worker
exit (`flush`): a SIGKILLed worker loses at most one interval of drift counts, nothing else.
Each version's edges, counter children and reference gauges are prepared once, when a snapshot
is published or the version first predicts, so a request does no label lookups.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from ml_app.core.drift_bins import slot_counts, slot_labels
from ml_app.core.drift_reference import CLASSES, PREDICTIONS_KEY
from ml_app.core.metrics import DRIFT_REFERENCE_SHARE, DRIFT_ROWS
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.process import process_id
from ml_app.core.snapshot import Snapshot

log = logging.getLogger("ml_app.drift")
# The `feature` label of the prediction's own bins; features are counted under their names.
PREDICTION_FEATURE = "_prediction"


class VersionBins:
    """One version's counted features and prediction: edges, slots, series and pending counts."""

    def __init__(self, model: LoadedModel, features: tuple[str, ...], max_bins: int) -> None:
        self.model = model
        self._lock = threading.Lock()
        baseline = model.metadata.get("baseline") or {}
        chosen = [f for f in model.feature_names if not features or f in features]
        edges: list[np.ndarray] = []
        self.counted: list[str] = []
        shares: list[np.ndarray] = []
        for feature in chosen:
            reference = _reference(model, feature, baseline.get(feature), max_bins)
            if reference is not None:
                self.counted.append(feature)
                edges.append(reference[0])
                shares.append(reference[1])
        self._columns = np.array([model.feature_index[f] for f in self.counted], np.intp)
        widths = [len(e) for e in edges]
        self._edges = np.full((len(edges), max(widths, default=1)), np.inf)
        for row, feature_edges in enumerate(edges):
            self._edges[row, : len(feature_edges)] = feature_edges
        self._top = np.array([e[-1] for e in edges], np.float64)
        self._top_slot = np.array(widths, np.intp) - 1
        self._offsets = np.cumsum([0, *(w + 1 for w in widths)])[:-1].astype(np.intp)
        slots = [
            (f, label) for f, e in zip(self.counted, edges, strict=True) for label in slot_labels(e)
        ]
        self._prediction_offset = len(slots)
        self._prediction = _prediction_reference(model, max_bins)
        if self._prediction is not None:
            slots += [(PREDICTION_FEATURE, label) for label in self._prediction["labels"]]
            shares.append(self._prediction["shares"])
        self.size = len(slots)
        self._pending = np.zeros(self.size, np.int64)
        labels = (model.name, model.version)
        self._counters = [DRIFT_ROWS.labels(*labels, f, b) for f, b in slots]
        values = np.concatenate(shares or [[]]).tolist()
        self._reference = [
            (DRIFT_REFERENCE_SHARE.labels(*labels, *slot), share)
            for slot, share in zip(slots, values, strict=True)
        ]
        self.publish()

    def publish(self) -> None:
        """Set the reference gauges (again in each worker: the master's samples are wiped)."""
        for gauge, share in self._reference:
            gauge.set(share)

    def count(self, matrix: np.ndarray, outputs: Outputs) -> None:
        """Add a batch's rows to the pending counts: one bin search for every feature at once."""
        values = matrix[:, self._columns]
        # Edges <= value is numpy's searchsorted(side="right"), as drift_bins.slot_indices;
        # padding edges are +inf, never <= a finite value.
        slots = (values[:, :, None] >= self._edges).sum(axis=2)
        slots = np.where(values == self._top, self._top_slot, slots)  # top edge: last bin
        counts = np.bincount((slots + self._offsets).ravel(), minlength=self.size)
        if self._prediction is not None:
            counts[self._prediction_offset :] += self._prediction_counts(outputs)
        with self._lock:
            self._pending += counts

    def flush(self) -> None:
        """Add the pending counts to the counters: one update per non-empty bin."""
        with self._lock:
            pending, self._pending = self._pending, np.zeros(self.size, np.int64)
        for index in np.flatnonzero(pending).tolist():
            self._counters[index].inc(int(pending[index]))

    def _prediction_counts(self, outputs: Outputs) -> np.ndarray:
        reference = self._prediction
        if "edges" in reference:
            return slot_counts(reference["edges"], np.asarray(outputs.values, np.float64))
        position = reference["positions"]
        indices = np.fromiter((position[label] for label in outputs.labels), np.intp)
        return np.bincount(indices, minlength=len(position))


class DriftRecorder:
    """Counts every predicted row into its version's bins; flushes them to the counters."""

    def __init__(self, features: tuple[str, ...], max_bins: int, flush_seconds: float) -> None:
        self.features = features
        self.max_bins = max_bins
        self.flush_seconds = flush_seconds
        self._versions: dict[tuple[str, str], VersionBins] = {}
        self._pid: int | None = None
        self._lock = threading.Lock()

    def publish(self, snapshot: Snapshot) -> None:
        """Prepare every loaded version's bins and set its reference gauges."""
        for entry in snapshot.models.values():
            for state in entry.versions.values():
                if state.model is not None:
                    self.bins_for(state.model).publish()

    def bins_for(self, model: LoadedModel) -> VersionBins:
        """The version's prepared bins (a reloaded copy of a version gets its own)."""
        bins = self._versions.get((model.name, model.version))
        if bins is None or bins.model is not model:
            if bins is not None:
                bins.flush()  # the copy it replaces keeps no counts back
            bins = self._versions[(model.name, model.version)] = VersionBins(
                model, self.features, self.max_bins
            )
        return bins

    def record(self, model: LoadedModel, matrix: np.ndarray, outputs: Outputs) -> None:
        """Count one answered batch; with no flush interval, straight into the counters."""
        bins = self.bins_for(model)
        if not bins.size:
            return
        bins.count(matrix, outputs)
        if self.flush_seconds <= 0:
            bins.flush()
        elif self._pid != process_id():
            self._start_flushing()

    def flush(self) -> None:
        """Add every version's pending counts to the counters (worker exit, tests)."""
        for bins in list(self._versions.values()):
            bins.flush()

    def _start_flushing(self) -> None:
        with self._lock:
            if self._pid != process_id():  # first count in this process: threads do not fork
                thread = threading.Thread(target=self._flush_forever, name="ml_app-drift")
                thread.daemon = True
                thread.start()
                self._pid = process_id()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # the next interval tries again; counts stay pending
                log.exception("drift counts not flushed")


def _reference(
    model: LoadedModel, feature: str, reference: Any, max_bins: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """A feature's (edges, shares on its slots), or None when it cannot be counted (logged)."""
    try:
        edges = np.asarray(reference["bin_edges"], np.float64)
        proportions = np.asarray(reference["proportions"], np.float64)
        usable = (
            len(edges) >= 2
            and len(proportions) == len(edges) - 1
            and np.all(np.diff(edges) >= 0)
            and np.isfinite(edges).all()
        )
    except (KeyError, TypeError, ValueError):
        usable = False
    if not usable or len(proportions) > max_bins:
        why = "has no usable reference" if not usable else f"has more than {max_bins} bins"
        log.warning(
            "drift of %s %s feature %r not counted: it %s", model.name, model.version, feature, why
        )
        return None
    return edges, np.concatenate(([0.0], proportions, [0.0]))


def _prediction_reference(model: LoadedModel, max_bins: int) -> dict[str, Any] | None:
    """The prediction's slots: class labels, or value bins like a feature's; None without one."""
    reference = model.metadata.get(PREDICTIONS_KEY)
    if not isinstance(reference, dict):
        return None
    if reference.get("kind") != CLASSES:
        bins = _reference(model, PREDICTION_FEATURE, reference, max_bins)
        if bins is None:
            return None
        return {"edges": bins[0], "labels": slot_labels(bins[0]), "shares": bins[1]}
    classes = [str(label) for label in model.class_labels]
    proportions = reference.get("proportions") or []
    if (
        reference.get("classes") != classes
        or len(proportions) != len(classes)
        or len(classes) > max_bins
    ):
        log.warning(
            "drift of %s %s predictions not counted: its class reference does not fit",
            model.name,
            model.version,
        )
        return None
    positions = {label: i for i, label in enumerate(model.class_labels)}
    return {"positions": positions, "labels": classes, "shares": np.asarray(proportions)}
