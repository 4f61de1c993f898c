"""Random reference edges and values that probe every corner of the drift bins."""

from __future__ import annotations

import numpy as np

# Candidate edges and values: repeats make merged bins, and values land on edges exactly.
GRID = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 4.0, 7.0])
OUTSIDE = np.array([np.nan, np.inf, -np.inf, -1e9, 1e9])


def random_edges(random: np.random.Generator, features: int, most: int = 11) -> list[np.ndarray]:
    """Each feature's sorted edges (2 to `most` of them, repeats allowed), from GRID or not."""
    edges = []
    for _ in range(features):
        count = int(random.integers(2, most + 1))
        drawn = random.choice(GRID, count) if random.random() < 0.5 else random.normal(0, 3, count)
        edges.append(np.sort(drawn))
    return edges


def random_matrix(random: np.random.Generator, rows: int, edges: list[np.ndarray]) -> np.ndarray:
    """rows x features: values on edges, between them, far outside the range, NaN, infinities."""
    columns = []
    for feature_edges in edges:
        candidates = np.concatenate((feature_edges, GRID, OUTSIDE, random.normal(0, 3, 8)))
        columns.append(random.choice(candidates, rows))
    return np.column_stack(columns)
