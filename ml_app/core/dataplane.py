"""The prediction data plane every route shares: predict with the routed model, mirror the
request to its shadows, render the native answer.

The web layer (ml_app.web.serving) resolves the route for each request, on the native routes
and every protocol alike, and hands it here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ml_app.core.drift import DriftRecorder
from ml_app.core.metrics import observed_predict
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.shadow import ShadowJob, ShadowRunner
from ml_app.core.snapshot import Route

# Beyond this many classes, probabilities are keyed with dict(zip()) rather than compiled code.
_MAX_DISPLAY_CLASSES = 64


def predict_routed(
    route: Route,
    matrix: np.ndarray,
    shadow: ShadowRunner | None,
    request_id: str | None,
    drift: DriftRecorder | None = None,
) -> tuple[Outputs, Callable[[], None] | None]:
    """Predict with the routed model, counting drift; also the call that mirrors the request
    to its shadows.

    The mirror call (None without shadows) is meant to run once the answer has been sent, so a
    shadow never delays or changes it.
    """
    outputs = observed_predict(route.model, matrix)
    if drift is not None:
        drift.record(route.model, matrix, outputs)
    if not route.shadows or shadow is None:
        return outputs, None
    job = ShadowJob(route.shadows, matrix, route.model, outputs, request_id)
    return outputs, functools.partial(shadow.submit, job)


def render_native(model: LoadedModel, outputs: Outputs, single_row: bool) -> dict[str, Any]:
    """The native answer: a prediction (one row) or predictions (a batch), and what served it."""
    if single_row:
        body = _one_row(model, outputs)
    elif outputs.values is not None:
        body = {"predictions": outputs.values}
    else:
        body = {"predictions": outputs.labels}
        if outputs.probabilities is not None:
            body["probabilities"] = rows_by_label(model.class_labels, outputs.probabilities)
    body.update(model=model.name, version=model.version)
    return body


def rows_by_label(labels: list[Any], probabilities: np.ndarray) -> list[dict[Any, float]]:
    """Each row of a probability matrix as {class label: probability}."""
    rows = probabilities.tolist()
    if len(labels) > _MAX_DISPLAY_CLASSES:
        return [dict(zip(labels, row, strict=True)) for row in rows]
    return _dict_display(len(labels))(labels, rows)


@functools.cache
def _dict_display(classes: int) -> Callable[[list[Any], list[list[float]]], list[dict]]:
    """`lambda labels, rows: [{labels[0]: row[0], ...} for row in rows]` for a class count.

    A dict display builds each row's dict in one step, five times faster than
    dict(zip(labels, row)): for a 100-row answer that was most of the rendering time. As with
    collections.namedtuple, the source is generated from a count alone, never from a label.
    """
    keys = ", ".join(f"k{i}" for i in range(classes))
    values = "".join(f"v{i}, " for i in range(classes))
    pairs = ", ".join(f"k{i}: v{i}" for i in range(classes))
    source = f"lambda {keys}: lambda rows: [{{{pairs}}} for {values}in rows]"
    make = eval(source, {})  # noqa: S307 - built from an int, see above
    return lambda labels, rows: make(*labels)(rows)


def _one_row(model: LoadedModel, outputs: Outputs) -> dict[str, Any]:
    if outputs.values is not None:
        return {"prediction": outputs.values[0]}
    body: dict[str, Any] = {"prediction": outputs.labels[0]}
    if outputs.probabilities is not None:
        body["probabilities"] = dict(
            zip(model.class_labels, outputs.probabilities[0].tolist(), strict=True)
        )
    return body
