"""Reference bins and the population stability index (PSI): one definition for live counts,
Prometheus' recording rules and offline reports.

A feature's reference holds quantile `bin_edges` (n + 1 of them) and the share of training rows
in each of the n bins, as `numpy.histogram` counts them: [e0, e1), [e1, e2), ..., [e(n-1), en].
Live values outside the reference range get two more slots, so a feature with n bins has
n + 2 slots: "below", "0" ... "n-1", "above".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BELOW = "below"
ABOVE = "above"
# A share of zero (an empty bin, or the below/above slots of the reference) would make PSI
# infinite; every share is floored at this, here and in the recording rules (clamp_min).
PSI_FLOOR = 1e-4


def slot_labels(edges: Sequence[float]) -> tuple[str, ...]:
    """Slot names for these edges: "below", "0" ... "n-1", "above"."""
    return (BELOW, *(str(i) for i in range(len(edges) - 1)), ABOVE)


def slot_indices(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's slot: 0 below the range, 1..n inside, n + 1 above (one search per batch)."""
    slots = np.searchsorted(edges, values, side="right")
    # The top edge belongs to the last bin, as numpy.histogram counts it.
    slots[values == edges[-1]] = len(edges) - 1
    return slots


def slot_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many values fall in each of the n + 2 slots."""
    return np.bincount(slot_indices(edges, values), minlength=len(edges) + 1)


class EdgeTable:
    """Several features' edges side by side: every (row, feature) slot of a batch at once.

    A value's slot is its feature's "above" slot minus how many of the feature's edges lie
    above it, which is slot_indices' searchsorted(side="right") once the top edge is replaced
    by the next float above it (a value on the top edge stays in the last bin). NaN compares
    less than no edge, so it lands in "above", where searchsorted sorts it. Features with fewer
    edges are padded with -inf, which no value is less than.
    """

    def __init__(self, edges: Sequence[np.ndarray]) -> None:
        width = max(len(feature_edges) for feature_edges in edges)
        table = np.full((width, len(edges), 1), -np.inf)
        for feature, feature_edges in enumerate(edges):
            table[width - len(feature_edges) : width - 1, feature, 0] = feature_edges[:-1]
            table[width - 1, feature, 0] = np.nextafter(feature_edges[-1], np.inf)
        self._table = table
        slots = np.array([len(feature_edges) + 1 for feature_edges in edges])
        self.offsets = np.concatenate(([0], np.cumsum(slots)[:-1]))
        self.size = int(slots.sum())
        self._above_slots = (self.offsets + slots - 1)[:, None]
        # The count of edges above a value fits a byte while there are at most 255 edges
        # (bins are capped at 10), and summing bytes is much faster than summing into int64.
        self._tally = np.uint8 if width <= np.iinfo(np.uint8).max else np.intp

    def counts(self, columns: np.ndarray) -> np.ndarray:
        """Values per slot, features one after another; columns is features x rows."""
        edges_above = (columns < self._table).sum(0, dtype=self._tally)
        return np.bincount((self._above_slots - edges_above).ravel(), minlength=self.size)


def reference_shares(proportions: Sequence[float]) -> np.ndarray:
    """The reference proportions laid out on the n + 2 slots (nothing below or above)."""
    return np.concatenate(([0.0], np.asarray(proportions, np.float64), [0.0]))


def psi(expected: Sequence[float], observed_counts: Sequence[float]) -> float:
    """PSI = sum (a - e) * ln(a / e) over slots, shares floored at PSI_FLOOR; nan with no rows."""
    counts = np.asarray(observed_counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return math.nan
    actual = np.maximum(counts / total, PSI_FLOOR)
    reference = np.maximum(np.asarray(expected, np.float64), PSI_FLOOR)
    return float(np.sum((actual - reference) * np.log(actual / reference)))
