"""The data plane's web side: which model serves this request, and predicting with it.

The native views and every protocol adapter call these two, so each request honours
`X-Routing-Key` for traffic splits, sends its copy to shadow versions once answered, and is
recorded in the request context (access line, X-Model-Version, validation metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Response, after_this_request, request

from ml_app.core.dataplane import predict_routed
from ml_app.core.errors import Forbidden
from ml_app.core.features import entity_rows
from ml_app.core.model import LoadedModel, Outputs
from ml_app.web.context import Predicted, request_context
from ml_app.web.rate_limits import charge_rows

# Requests with the same key get the same version of a traffic split (per model).
ROUTING_KEY_HEADER = "X-Routing-Key"
_ROUTING_KEY_ENVIRON = "HTTP_X_ROUTING_KEY"  # how WSGI servers pass that header


def resolve_model(name: str | None = None, version: str | None = None) -> LoadedModel:
    """The model serving this request, noted in the request context."""
    context = request_context()
    routing_key = request.environ.get(_ROUTING_KEY_ENVIRON) or None
    route = context.state.registry.route(name, version, routing_key)
    # Checked here, where every protocol learns its model, so no route can miss it.
    check_key_allows(route.model.name)
    context.route = route
    return route.model


def check_key_allows(model_name: str) -> None:
    """Forbidden unless this request's API key (when keys are on) may use the model."""
    key = request_context().api_key
    if key is not None and not key.allows(model_name):
        raise Forbidden(f"API key {key.id} may not call model {model_name!r}.")


def predict_matrix(matrix: np.ndarray) -> Outputs:
    """Run the model resolve_model chose on a validated matrix: metrics, shadows once answered."""
    context = request_context()
    rows = len(matrix)
    # A GraphQL query may predict in several fields: the access line counts them all.
    context.rows = rows if context.rows is None else context.rows + rows
    route = context.route
    assert route is not None  # resolve_model comes first
    predicted = Predicted(route, matrix)
    context.predictions.append(predicted)  # each call its own payload log event
    charge_rows(rows)  # a batch costs its rows; known only once validated
    state = context.state
    outputs, mirror = predict_routed(route, matrix, state.shadow, context.request_id, state.drift)
    predicted.outputs = outputs
    if mirror is not None:

        @after_this_request
        def _mirror_when_sent(response: Response) -> Response:
            response.call_on_close(mirror)
            return response

    return outputs


def rows_for_entities(model: LoadedModel, entities: Any) -> np.ndarray:
    """The rows to predict for `entities`: given features, the rest from the feature source.

    Every route that predicts by entity id calls this (native routes; any protocol that
    accepts entities), then predict_matrix with its answer.
    """
    state = request_context().state
    sources = state.feature_sources
    assert sources is not None  # register_state always sets them
    return entity_rows(model, entities, sources, state.settings.max_batch_rows)
