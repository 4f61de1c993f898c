"""The prediction data plane every route shares: route, predict, mirror to shadows, render.

The core (`predict_routed`, `render_native`) is free of Flask, so the WSGI fast path
(ml_app.fastpath) and the Flask views run the same code. `resolve_model` and `predict_matrix`
are its Flask side, used by the native views and every protocol adapter alike: each request
honours `X-Routing-Key` for traffic splits and sends its copy to shadow versions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Response, after_this_request, g, request

from ml_app.inference import LoadedModel, Outputs
from ml_app.metrics import observed_predict
from ml_app.shadow import ShadowJob
from ml_app.snapshot import Route
from ml_app.state import AppState, app_state

# Beyond this many classes, probabilities are keyed with dict(zip()) rather than compiled code.
_MAX_DISPLAY_CLASSES = 64
# Requests with the same key get the same version of a traffic split (per model).
ROUTING_KEY_HEADER = "X-Routing-Key"


def predict_routed(
    state: AppState, route: Route, matrix: np.ndarray, request_id: str | None
) -> tuple[Outputs, Callable[[], None] | None]:
    """Predict with the routed model; also the call that mirrors the request to its shadows.

    The mirror call (None without shadows) is meant to run once the answer has been sent, so a
    shadow never delays or changes it.
    """
    outputs = observed_predict(route.model, matrix)
    if not route.shadows or state.shadow is None:
        return outputs, None
    job = ShadowJob(route.shadows, matrix, route.model, outputs, request_id)
    return outputs, functools.partial(state.shadow.submit, job)


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


# --- The Flask side -----------------------------------------------------------------------------


def resolve_model(name: str | None = None, version: str | None = None) -> LoadedModel:
    """The model serving this request, noted for the request log and the validation metrics."""
    routing_key = request.headers.get(ROUTING_KEY_HEADER) or None
    route = app_state().registry.route(name, version, routing_key)
    state = g._get_current_object()  # one proxy lookup, not one per attribute
    state.route = route
    state.model, state.version = route.model.name, route.model.version
    return route.model


def predict_matrix(matrix: np.ndarray) -> Outputs:
    """Run the model resolve_model chose on a validated matrix: metrics, shadows once answered."""
    state = g._get_current_object()
    state.rows = len(matrix)
    outputs, mirror = predict_routed(app_state(), state.route, matrix, state.get("request_id"))
    if mirror is not None:

        @after_this_request
        def _mirror_when_sent(response: Response) -> Response:
            response.call_on_close(mirror)
            return response

    return outputs
