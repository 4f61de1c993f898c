"""The native answer's rendering: probabilities keyed by class label, whatever the labels."""

from __future__ import annotations

import numpy as np
import pytest

from ml_app.core.dataplane import rows_by_label

ODD_LABELS = ['a"b', "k0", "v0: 1}", "", "\u00e9t\u00e9", 7, None, "rows"]


def _unique(label, i: int):
    """Class labels are distinct: make the repeated odd ones so, keeping their kind."""
    if isinstance(label, str):
        return f"{label}-{i}"
    if label is None:
        return None if i < len(ODD_LABELS) else f"none-{i}"
    return label * 1000 + i


@pytest.mark.parametrize("classes", [1, 2, 3, 8, 64, 65, 200])
def test_rows_are_keyed_like_dict_zip(classes):
    labels = (ODD_LABELS * (classes // len(ODD_LABELS) + 1))[:classes]
    labels = [_unique(label, i) for i, label in enumerate(labels)]
    probabilities = np.random.default_rng(classes).random((5, classes))
    expected = [dict(zip(labels, row, strict=True)) for row in probabilities.tolist()]
    assert rows_by_label(labels, probabilities) == expected
    assert [list(row) for row in rows_by_label(labels, probabilities)] == [labels] * 5


@pytest.mark.parametrize("classes", [2, 100])
def test_a_row_of_another_width_is_an_error(classes):
    with pytest.raises(ValueError):
        rows_by_label(list(range(classes)), np.zeros((2, classes + 1)))
