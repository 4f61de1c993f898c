"""Cross-origin requests from browser pages (flask-cors), for the origins the operator allows."""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask, Response, request

from ml_app.web.extensions import cors

# What a page may send: the key (either header), the body type, the routing key, its own id.
ALLOWED_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "X-Routing-Key",
    "X-Request-ID",
)
# What a page's script may read beyond the CORS-safelisted response headers.
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Model-Version",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)
_ORIGIN_ENVIRON = "HTTP_ORIGIN"  # how WSGI servers pass the Origin header


def register_cors(app: Flask, origins: Sequence[str]) -> None:
    """Answer preflights and add CORS headers for `origins`; with none, register nothing."""
    if not origins:
        return
    # Preflights are Flask's automatic OPTIONS answers, so no view, key check or rate limit
    # stands in their way. Error answers pass through after_request like any other, so
    # flask-cors need not also wrap the exception handlers. Ten minutes of preflight caching
    # spares a browser one round trip per call. always_send off: flask-cors would otherwise
    # list every allowed origin (one header each) on answers to requests without Origin.
    cors.init_app(
        app,
        origins=list(origins),
        allow_headers=list(ALLOWED_REQUEST_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        intercept_exceptions=False,
        always_send=False,
        max_age=600,
    )
    # init_app appended flask-cors' after_request hook; put a guard in its place so a request
    # without Origin (never cross-origin: curl, servers, same-origin GETs) skips its path
    # matching and option lookups.
    hooks = app.after_request_funcs.setdefault(None, [])
    add_cors_headers = hooks.pop()

    def add_cors_headers_when_cross_origin(response: Response) -> Response:
        if _ORIGIN_ENVIRON in request.environ:
            return add_cors_headers(response)
        return response

    hooks.append(add_cors_headers_when_cross_origin)
