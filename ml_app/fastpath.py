"""A WSGI fast path for the native prediction routes, in front of the Flask app.

Flask's request machinery (contexts, routing, request and response objects, hooks) costs more
CPU per request than validating and predicting a row. This middleware answers well-formed
`POST /predict`-family requests itself, with the same data plane as the Flask views
(ml_app.serving), the same marshmallow validation, metrics, access line and headers.

Anything else goes to the Flask app untouched: other routes, other methods, unusual requests
(no Content-Length, another content type, an oversized body) and every request that fails on
the way (bad JSON, unknown model, invalid input, a model error), with its body replayed. So
every error is rendered, logged and counted in one place, the Flask app, exactly as before.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask
from marshmallow import Schema

from ml_app.api.predict import ANY_SHAPE_RULES, BATCH_ONLY, BATCH_RULES
from ml_app.json_provider import dump_bytes
from ml_app.logging import MODEL_VERSION_HEADER, REQUEST_ID_HEADER, log_access, request_id_for
from ml_app.metrics import observe_http
from ml_app.schemas import SingleRowRequest, parse_json_object, validate_matrix
from ml_app.serving import predict_routed, render_native
from ml_app.state import EXTENSION_KEY, AppState

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_ROUTING_KEY_ENVIRON = "HTTP_X_ROUTING_KEY"  # how WSGI servers pass the X-Routing-Key header
_CONVERTER = re.compile(r"<(\w+)>")
_ONE_KEY_SCHEMAS = {"features": SingleRowRequest(), "instances": BATCH_ONLY}


@dataclass(frozen=True)
class _FastRoute:
    """One URL rule the fast path answers: its pattern, the rule's text and its schema.

    `schema` is None on the rules that take one row or a batch: the fast path then validates with
    the one-field schema for the body's only key (SingleRowRequest or BatchPredictRequest, the
    same fields as PredictRequest without its exactly-one check, which costs as much as a field).
    A body with both keys, neither, or another goes to Flask, where PredictRequest says so.
    """

    pattern: re.Pattern[str]
    rule: str
    schema: Schema | None


def _fast_routes() -> tuple[_FastRoute, ...]:
    """The native prediction rules as anchored patterns (`<name>`: one path segment)."""
    routes = []
    for rules, schema in ((ANY_SHAPE_RULES, None), (BATCH_RULES, BATCH_ONLY)):
        for rule in rules:
            parts = _CONVERTER.split(rule)  # literal, name, literal, name, ..., literal
            regex = "".join(
                re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                for i, part in enumerate(parts)
            )
            routes.append(_FastRoute(re.compile(regex), rule, schema))
    return tuple(routes)


class PredictFastPath:
    """WSGI middleware: answers well-formed native predictions, hands the rest to Flask."""

    def __init__(self, app: Flask, wrapped: WsgiApp) -> None:
        self.wrapped = wrapped  # the Flask WSGI app: every other request, and every failure
        self.state: AppState = app.extensions[EXTENSION_KEY]
        self.routes = _fast_routes()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        if environ.get("REQUEST_METHOD") != "POST":
            return self.wrapped(environ, start_response)
        path = environ.get("PATH_INFO", "")
        if path.isascii():  # other paths need Werkzeug's decoding: Flask matches them
            for route in self.routes:
                match = route.pattern.fullmatch(path)
                if match is not None:
                    return self._predict(environ, start_response, route, path, match.groupdict())
        return self.wrapped(environ, start_response)

    def _predict(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        route: _FastRoute,
        path: str,
        names: dict[str, str],
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        length = self._body_length(environ)
        if length is None:
            return self.wrapped(environ, start_response)
        raw = environ["wsgi.input"].read(length)
        state = self.state
        if state.watcher is not None:
            state.watcher.ensure_running()
        request_id = request_id_for(environ)
        try:
            body = parse_json_object(raw)
            routed = state.registry.route(
                names.get("name"), names.get("version"), environ.get(_ROUTING_KEY_ENVIRON) or None
            )
            model = routed.model
            schema = route.schema or _ONE_KEY_SCHEMAS[_only_key(body)]
            matrix, single_row = validate_matrix(schema, body, model, state.settings.max_batch_rows)
            outputs, mirror = predict_routed(state, routed, matrix, request_id)
            payload = dump_bytes(render_native(model, outputs, single_row))
        except Exception:  # noqa: BLE001 - whatever it is, the Flask app answers it
            # Flask answers it (error shape, log line, validation metrics) from the same bytes.
            # A failure inside the model call runs it a second time there: rare, and still
            # answered the one way errors are.
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.wrapped(environ, start_response)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                (REQUEST_ID_HEADER, request_id),
                (MODEL_VERSION_HEADER, model.version),
            ],
        )
        observe_http("POST", route.rule, 200, started)
        fields = {
            "method": "POST",
            "route": route.rule,
            "path": path,
            "status": 200,
            "model": model.name,
            "version": model.version,
            "rows": len(matrix),
        }
        log_access(request_id, started, fields)
        if mirror is None:
            return [payload]
        return _ThenRun(payload, mirror)

    def _body_length(self, environ: dict[str, Any]) -> int | None:
        """The body's length when the fast path can take it: JSON, sized, within the limit."""
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type != "application/json" and (
            content_type.partition(";")[0].strip().lower() != "application/json"
        ):
            return None
        declared = environ.get("CONTENT_LENGTH", "")
        if not declared.isdigit():  # absent (chunked), or not a plain number
            return None
        length = int(declared)
        if not 0 < length <= self.state.settings.max_body_bytes:
            return None  # empty (400) or too large (413): Flask says so
        return length


def _only_key(body: dict[str, Any]) -> str:
    """The body's one member name; KeyError (so Flask answers) when it has more or none."""
    if len(body) != 1:
        raise KeyError("not exactly one member")
    return next(iter(body))


class _ThenRun:
    """A one-chunk WSGI body that runs a callback once the server has sent it (close())."""

    def __init__(self, payload: bytes, callback: Callable[[], None]) -> None:
        self.payload = payload
        self.callback = callback

    def __iter__(self) -> Iterator[bytes]:
        yield self.payload

    def close(self) -> None:
        """Called by the WSGI server when the response is done."""
        self.callback()


def register_fast_path(app: Flask) -> None:
    """Put the fast path in front of the app's WSGI callable."""
    app.wsgi_app = PredictFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
