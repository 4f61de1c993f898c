"""The request bodies every server in the benchmark is sent: real rows from the datasets."""

from __future__ import annotations

import orjson
from sklearn import datasets

BATCH_ROWS = 100
# model -> the scikit-learn dataset its demo version was trained on
DATASETS = {"iris": datasets.load_iris, "breast_cancer": datasets.load_breast_cancer}


def bodies() -> dict[tuple[str, str], bytes]:
    """(model, "single" | "batch") -> the JSON body for that case."""
    cases = {}
    for model, load in DATASETS.items():
        rows = load().data.tolist()
        cases[model, "single"] = orjson.dumps({"features": rows[0]})
        cases[model, "batch"] = orjson.dumps({"instances": rows[:BATCH_ROWS]})
    return cases


def path(model: str, shape: str) -> str:
    """The ml_app route for a case (the ceiling answers any path)."""
    return f"/models/{model}/predict" + ("/batch" if shape == "batch" else "")
