"""Drift counting: each predicted row's reference bin, per feature and for its prediction.

A small batch is counted row by row, one bisect per feature (numpy's per-call overhead would
cost more than the searches); a larger one with a few numpy calls whatever its width: every
feature's edges in one drift_bins.EdgeTable, one comparison and one bincount for the batch.
Either way the counts are added to the version's pending counts in this process's memory. A
multiprocess counter update takes a lock and a file write, so the counters (`ml_app_drift_rows`)
are updated once per non-empty bin by a background thread every `flush_seconds`, and once more
at worker exit (`flush`): a SIGKILLed worker loses at most one interval of drift counts, nothing
else.
Each version's edges, counter children and reference gauges are prepared once, when a snapshot
is published or the version first predicts, so a request does no label lookups.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from ml_app.core.drift_bins import EdgeTable, reference_shares, slot_counts, slot_labels
from ml_app.core.drift_reference import CLASSES, PREDICTIONS_KEY
from ml_app.core.metrics import DRIFT_REFERENCE_SHARE, DRIFT_ROWS
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.process import process_id
from ml_app.core.snapshot import Snapshot

log = logging.getLogger("ml_app.drift")
# The `feature` label of the prediction's own bins; features are counted under their names.
PREDICTION_FEATURE = "_prediction"
# Up to this many bin searches (rows x (counted features + the prediction)), a batch is counted
# row by row with bisect (~0.25 µs a search); above it, with the EdgeTable (~11 µs and up).
# Rows alone would not do: bisect wins up to ~30 rows of 1 feature but only 1-2 of 30
# (`python -m bench.drift_counting --crossover`; figures in bench/README.md).
BISECT_SEARCHES = 40


class VersionBins:
    """One version's counted features and prediction: edges, slots, series and pending counts."""

    def __init__(self, model: LoadedModel, features: tuple[str, ...], max_bins: int) -> None:
        self.model = model
        self._lock = threading.Lock()
        counted = _feature_references(model, features, max_bins)
        self.counted = [feature for feature, _, _ in counted]
        # Per counted feature, for rows counted one by one: its column, its edges as a list
        # (bisect on a list beats numpy's per-call overhead) and where its slots start.
        self._bins: list[tuple[int, list[float], int]] = []
        slots: list[tuple[str, str]] = []
        shares: list[float] = []
        for feature, edges, feature_shares in counted:
            self._bins.append((model.feature_index[feature], edges.tolist(), len(slots)))
            slots += [(feature, label) for label in slot_labels(edges)]
            shares += feature_shares.tolist()
        # For larger batches: every counted feature's edges in one table, searched at once.
        self._columns = np.array([column for column, _, _ in self._bins], np.intp)
        self._table = EdgeTable([edges for _, edges, _ in counted]) if counted else None
        self._prediction_offset = len(slots)
        self._prediction = _prediction_reference(model, max_bins)
        if self._prediction is not None:
            slots += [(PREDICTION_FEATURE, label) for label in self._prediction["labels"]]
            shares += self._prediction["shares"].tolist()
        self.size = len(slots)
        self._searches_per_row = len(self._bins) + (self._prediction is not None)
        self._pending = [0] * self.size  # rows counted one by one (and predicted classes)
        self._pending_batches = np.zeros(self.size, np.int64)  # rows counted a batch at once
        labels = (model.name, model.version)
        self._counters = [DRIFT_ROWS.labels(*labels, *slot) for slot in slots]
        self._reference = [
            (DRIFT_REFERENCE_SHARE.labels(*labels, *slot), share)
            for slot, share in zip(slots, shares, strict=True)
        ]
        self.publish()

    def publish(self) -> None:
        """Set the reference gauges (again in each worker: the master's samples are wiped)."""
        for gauge, share in self._reference:
            gauge.set(share)

    def count(self, matrix: np.ndarray, outputs: Outputs) -> None:
        """Add a batch's rows to the pending counts."""
        if len(matrix) * self._searches_per_row <= BISECT_SEARCHES:
            slots = [
                slot
                for position, row in enumerate(matrix.tolist())
                for slot in self._row_slots(row, outputs, position)
            ]
            with self._lock:
                for slot in slots:
                    self._pending[slot] += 1
            return
        predictions = self._prediction_counts(outputs)
        features = None if self._table is None else self._table.counts(matrix.T[self._columns])
        with self._lock:
            if features is not None:
                self._pending_batches[: self._prediction_offset] += features
            for slot, count in predictions:
                self._pending[self._prediction_offset + slot] += count

    def _row_slots(self, row: list[float], outputs: Outputs, position: int) -> list[int]:
        """One row's slot per feature and for its prediction (as drift_bins.slot_indices)."""
        slots = [offset + _slot(edges, row[column]) for column, edges, offset in self._bins]
        reference = self._prediction
        if reference is None:
            return slots
        if "edges" in reference:
            value = outputs.values[position]
            slots.append(self._prediction_offset + _slot(reference["edge_list"], value))
        else:
            slots.append(self._prediction_offset + reference["positions"][outputs.labels[position]])
        return slots

    def flush(self) -> None:
        """Add the pending counts to the counters: one update per non-empty bin."""
        with self._lock:
            rows, self._pending = self._pending, [0] * self.size
            batches, self._pending_batches = self._pending_batches, np.zeros(self.size, np.int64)
        for counter, one_by_one, in_batches in zip(
            self._counters, rows, batches.tolist(), strict=True
        ):
            if one_by_one or in_batches:
                counter.inc(one_by_one + in_batches)

    def _prediction_counts(self, outputs: Outputs) -> Iterable[tuple[int, int]]:
        """(slot, rows) of the batch's predictions: value bins, or classes."""
        reference = self._prediction
        if reference is None:
            return ()
        if "edges" in reference:
            counts = slot_counts(reference["edges"], np.asarray(outputs.values, np.float64))
            return enumerate(counts.tolist())
        position = reference["positions"]
        return ((position[label], count) for label, count in Counter(outputs.labels).items())


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


def _feature_references(
    model: LoadedModel, features: tuple[str, ...], max_bins: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(feature, edges, shares on its slots) for each feature to count, in column order."""
    baseline = model.metadata.get("baseline")
    if not isinstance(baseline, dict):  # a version without a reference: no drift, no warning
        return []
    counted = []
    for feature in model.feature_names:
        if features and feature not in features:
            continue
        reference = _reference(model, feature, baseline.get(feature), max_bins)
        if reference is not None:
            counted.append((feature, *reference))
    return counted


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
    return edges, reference_shares(proportions)


def _prediction_reference(model: LoadedModel, max_bins: int) -> dict[str, Any] | None:
    """The prediction's slots: class labels, or value bins like a feature's; None without one."""
    reference = model.metadata.get(PREDICTIONS_KEY)
    if not isinstance(reference, dict):
        return None
    if reference.get("kind") != CLASSES:
        bins = _reference(model, PREDICTION_FEATURE, reference, max_bins)
        if bins is None:
            return None
        edges = bins[0]
        return {
            "edges": edges,
            "edge_list": edges.tolist(),
            "labels": slot_labels(edges),
            "shares": bins[1],
        }
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


def _slot(edges: list[float], value: float) -> int:
    """One value's slot, as drift_bins.slot_indices gives it: bisect is searchsorted("right")."""
    if value == edges[-1]:  # the top edge belongs to the last bin
        return len(edges) - 1
    return bisect.bisect_right(edges, value)
