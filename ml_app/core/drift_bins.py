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
