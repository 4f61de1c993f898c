"""The request pipeline's first and last steps, registered once for every route.

`open_request` (before_request) gives each request a RequestContext: its id (the caller's
X-Request-ID when it is a plain token) and start time. Views and hooks fill in what they learn
(the route that served it, each prediction's rows and outputs, an error). `close_request`
(after_request) writes what every answer carries: X-Request-ID and X-Model-Version, the HTTP and
validation metrics, the payload log events of a prediction request (one per prediction, when
on), and the one JSON access line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flask import Flask, Response, current_app, g, request

from ml_app.core import metrics
from ml_app.core.apikeys import ApiKey
from ml_app.core.logformat import log_access
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.payload_events import REQUEST_ID_HEADER, InferenceRecord, request_id_from
from ml_app.core.snapshot import Route
from ml_app.web.state import EXTENSION_KEY, AppState

MODEL_VERSION_HEADER = "X-Model-Version"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"  # how WSGI servers pass the X-Request-ID header
_G_ATTRIBUTE = "ml_app_request"


@dataclass(slots=True)
class Predicted:
    """One predict call: what served it, its rows (looked-up features included), its outputs."""

    route: Route
    matrix: np.ndarray  # a reference: the payload log writes it only when on
    outputs: Outputs | None = None  # None until (or when) the model answered


@dataclass(slots=True)
class RequestContext:
    """What the pipeline knows about one request; one object instead of loose `g` names."""

    request_id: str
    started: float
    state: AppState  # the app's settings, registry and shadow runner
    route: Route | None = None  # what serves it, once a prediction route resolved the model
    rows: int | None = None  # rows predicted
    charging: int = 0  # rows (or feedback items) last charged to the rate limit
    error_code: str | None = None  # set by the error renderer
    api_key: ApiKey | None = None  # the caller's key entry (id, models), when keys are on
    # Each predict call, in order (a GraphQL query may hold several): the payload log writes
    # one event per prediction, and X-Model-Version names the version when only one answered.
    predictions: list[Predicted] = field(default_factory=list)
    error_message: str | None = None  # set with error_code

    @property
    def model(self) -> LoadedModel | None:
        """The model version serving this request, once resolved."""
        return self.route.model if self.route is not None else None

    @property
    def key_id(self) -> str | None:
        """The caller's API key id (never the key), when keys are on."""
        return self.api_key.id if self.api_key is not None else None


def request_id_for(environ: dict[str, Any]) -> str:
    """The caller's X-Request-ID when it is a short plain token, else a fresh random one."""
    return request_id_from(environ.get(_REQUEST_ID_ENVIRON, ""))


def request_context() -> RequestContext:
    """This request's context (made here if a hook before ours failed before opening it)."""
    g_object = g._get_current_object()  # one proxy lookup, not one per attribute
    context = getattr(g_object, _G_ATTRIBUTE, None)
    if context is None:
        context = _open(g_object)
    return context


def open_request() -> None:
    """before_request: the request's id and start time; a fresh worker catches up first."""
    context = _open(g._get_current_object())
    watcher = context.state.watcher
    if watcher is not None:  # cheap once this process polls the store (see ml_app.web.worker)
        watcher.ensure_running()


def _open(g_object: Any) -> RequestContext:
    state = current_app.extensions[EXTENSION_KEY]
    context = RequestContext(request_id_for(request.environ), time.perf_counter(), state)
    setattr(g_object, _G_ATTRIBUTE, context)
    return context


def close_request(response: Response) -> Response:
    """after_request: headers every answer carries, metrics, and the access line."""
    context = request_context()
    headers = response.headers
    headers[REQUEST_ID_HEADER] = context.request_id
    served = answering_model(context)
    if served is not None:  # whichever protocol answered, the caller can see what served it
        headers[MODEL_VERSION_HEADER] = served.version
    current = request._get_current_object()  # one proxy lookup, not one per attribute
    rule = current.url_rule
    route = rule.rule if rule is not None else None
    status = response.status_code
    metrics.observe_http(current.method, route, status, context.started)
    model = context.model
    if model is not None and context.error_code is not None:
        metrics.count_refusal(model, context.error_code)
    fields: dict[str, Any] = {
        "method": current.method,
        "route": route,
        "path": current.path,
        "status": status,
        "client": current.remote_addr,
    }
    _add_served(fields, context, served)
    if context.rows is not None:
        fields["rows"] = context.rows
    if context.error_code is not None:
        fields["error_code"] = context.error_code
    if context.key_id is not None:
        fields["key_id"] = context.key_id
    payload = context.state.payload
    if payload is not None and _is_prediction(context, current.method, rule, payload.endpoints):
        # Before the answer leaves the worker: an answered prediction is always on disk.
        payload.record(_inference_records(context, route, status))
    log_access(context.request_id, context.started, fields)
    return response


def answering_model(context: RequestContext) -> LoadedModel | None:
    """The one model version that answered (else the one resolved); None when several did.

    A GraphQL query may predict with several: one header cannot name them honestly, and each
    of its fields carries its own model and version.
    """
    predictions = context.predictions
    if len(predictions) <= 1:
        return predictions[0].route.model if predictions else context.model
    first = predictions[0].route.model
    for predicted in predictions[1:]:
        other = predicted.route.model
        if other is not first and (other.name, other.version) != (first.name, first.version):
            return None
    return first


def _add_served(
    fields: dict[str, Any], context: RequestContext, served: LoadedModel | None
) -> None:
    """The access line's model and version; `models` (name:version) when several answered."""
    if served is not None:
        fields["model"], fields["version"] = served.name, served.version
    elif context.predictions:
        answered = (f"{p.route.model.name}:{p.route.model.version}" for p in context.predictions)
        fields["models"] = sorted(set(answered))


def _is_prediction(
    context: RequestContext, method: str, rule: Any, endpoints: frozenset[str]
) -> bool:
    """A request to a prediction route (answered or refused), or one that reached the model.

    Flask answers a CORS preflight (OPTIONS) on the prediction route's rule: not a prediction.
    """
    if context.route is not None:
        return True
    return rule is not None and rule.endpoint in endpoints and method != "OPTIONS"


def _inference_records(
    context: RequestContext, route: str | None, status: int
) -> list[InferenceRecord]:
    """One record per prediction made; one for the request when none was (refused before)."""
    common: dict[str, Any] = {
        "request_id": context.request_id,
        "route": route,
        "status": status,
        "latency_ms": (time.perf_counter() - context.started) * 1000,
        "key_id": context.key_id,
    }
    error = None
    if context.error_code is not None:
        error = (context.error_code, context.error_message or "")
    if not context.predictions:
        return [InferenceRecord(**common, **_served_by(context.route), error=error)]
    return [
        InferenceRecord(
            **common,
            **_served_by(predicted.route),
            matrix=predicted.matrix,
            outputs=predicted.outputs,
            # A query's other fields may have failed: their error is not this prediction's.
            error=error if status >= 400 or predicted.outputs is None else None,
            ordinal=ordinal,
        )
        for ordinal, predicted in enumerate(context.predictions, 1)
    ]


def _served_by(route: Route | None) -> dict[str, Any]:
    if route is None:
        return {}
    return {"model": route.model, "arm": route.arm, "shadows": route.shadows}


def register_request_context(app: Flask) -> None:
    """Open and close every request; first before_request hook, so others can rely on it."""
    app.before_request(open_request)
    app.after_request(close_request)
