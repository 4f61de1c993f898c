"""The one bin and PSI definition shared by live drift counts and offline reports."""

import math

import numpy as np
import pytest

from ml_app.core.drift_bins import (
    EdgeTable,
    psi,
    reference_shares,
    slot_counts,
    slot_indices,
    slot_labels,
)
from tests.support.random_bins import random_edges, random_matrix

EDGES = np.array([0.0, 1.0, 2.0, 4.0])


def test_slots_match_numpy_histogram_inside_the_range():
    values = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.9, 4.0])
    inside, _ = np.histogram(values, bins=EDGES)
    counts = slot_counts(EDGES, values)
    assert counts.tolist() == [0, *inside.tolist(), 0]


def test_values_outside_the_range_get_their_own_slots():
    values = np.array([-1.0, -0.0001, 4.0001, 100.0, 2.5])
    assert slot_indices(EDGES, values).tolist() == [0, 0, 4, 4, 3]
    assert slot_labels(EDGES) == ("below", "0", "1", "2", "above")


def test_psi_is_zero_for_the_reference_itself_and_grows_with_shift():
    shares = reference_shares([0.25, 0.25, 0.5])
    assert psi(shares, [0, 25, 25, 50, 0]) == pytest.approx(0.0)
    shifted = psi(shares, [0, 0, 0, 50, 50])
    expected = sum(
        (a - e) * math.log(a / e)
        for a, e in zip([1e-4, 1e-4, 1e-4, 0.5, 0.5], [1e-4, 0.25, 0.25, 0.5, 1e-4], strict=True)
    )
    assert shifted == pytest.approx(expected)
    assert shifted > 0.25


def test_psi_without_rows_is_nan():
    assert math.isnan(psi(reference_shares([0.5, 0.5]), [0, 0, 0, 0]))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("rows", [1, 100])
@pytest.mark.parametrize("features", [1, 30])
def test_an_edge_table_counts_each_feature_as_slot_counts_does(seed, rows, features):
    random = np.random.default_rng(seed)
    edges = random_edges(random, features)
    matrix = random_matrix(random, rows, edges)
    table = EdgeTable(edges)
    want = [slot_counts(e, matrix[:, f]) for f, e in enumerate(edges)]
    assert table.counts(np.ascontiguousarray(matrix.T)).tolist() == np.concatenate(want).tolist()
    sizes = [len(slot_labels(e)) for e in edges]
    assert table.size == sum(sizes)
    assert table.offsets.tolist() == np.cumsum([0, *sizes[:-1]]).tolist()


def test_an_edge_table_with_many_edges_counts_past_a_bytes_range():
    """More than 255 edges (not from the API, whose bins are capped at 10) still count exactly."""
    random = np.random.default_rng(7)
    edges = [*random_edges(random, 3), np.sort(random.normal(0, 3, 400)), EDGES]
    matrix = random_matrix(random, 500, edges)
    want = [slot_counts(e, matrix[:, f]) for f, e in enumerate(edges)]
    assert EdgeTable(edges).counts(matrix.T).tolist() == np.concatenate(want).tolist()
