"""The one bearer-token check (constant-time), the /metrics guard, and the API key hook."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Flask, request

from ml_app.web.context import request_context
from ml_app.web.errors import unauthorized
from ml_app.web.state import app_state

API_KEY_HEADER = "X-API-Key"
_API_KEY_ENVIRON = "HTTP_X_API_KEY"  # how WSGI servers pass that header
_AUTHORIZATION_ENVIRON = "HTTP_AUTHORIZATION"
# Routes a load balancer, an orchestrator or a browser reaches without a key (admin and
# /metrics have their own tokens); every other route, including ones added later, needs one.
OPEN_BLUEPRINTS = frozenset({"health", "openapi", "swagger_ui", "admin"})
OPEN_ENDPOINTS = frozenset(
    {"prometheus_metrics", "v2.server_metadata", "v2.live", "v2.ready", "v1.server_live"}
    | {"mlflow.ping", "mlflow.version"}
)


def bearer_matches(expected: str) -> bool:
    """True when the request carries `Authorization: Bearer <expected>`."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes as long for a near miss as for a wild guess: no timing oracle.
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def require_metrics_token(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard the /metrics view with ML_APP_METRICS_TOKEN as a bearer token, when one is set."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        expected = app_state().settings.metrics_token
        if expected and not bearer_matches(expected):
            return unauthorized("/metrics needs 'Authorization: Bearer <token>'.", "metrics")
        return view(*args, **kwargs)

    return guarded


def presented_key(environ: dict[str, Any]) -> str:
    """The API key the caller sent: X-API-Key, else `Authorization: Bearer <key>`, else the
    password of `Authorization: Basic`; or ''."""
    key = environ.get(_API_KEY_ENVIRON, "")
    if key:
        return key.strip()
    scheme, _, given = environ.get(_AUTHORIZATION_ENVIRON, "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return given.strip()
    if scheme == "basic":
        return basic_password(given.strip())
    return ""


def basic_password(credentials: str) -> str:
    """The password of Basic credentials (the user name is not checked); '' when malformed.

    Some clients can only send Basic auth (MLflow's scoring client, through requests' netrc
    support; curl -u): the key is their password.
    """
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def require_api_key() -> Any:
    """before_request: 401 unless the request carries a valid key."""
    current = request._get_current_object()  # one proxy lookup, not one per attribute
    if current.method == "OPTIONS" or not requires_api_key(current.endpoint):
        return None  # CORS preflight carries no credentials by design: never refused here
    context = request_context()
    ring = context.state.api_keys
    if ring is None:  # an app built with keys, then its state replaced (tests)
        return None
    key = presented_key(current.environ)
    entry = ring.find(key) if key else None
    if entry is None:
        reason = "is not a valid key" if key else "is missing"
        return unauthorized(
            f"The API key {reason}: send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}'.",
            "ml_app",
        )
    context.api_key = entry
    return None


def requires_api_key(endpoint: str | None) -> bool:
    """True when the route needs a key (once keys are on); health, docs, /metrics do not."""
    # No endpoint: routing failed, and the 404/405 says nothing a key would protect.
    if endpoint is None or endpoint in OPEN_ENDPOINTS:
        return False
    blueprint, dot, _ = endpoint.partition(".")
    return not (dot and blueprint in OPEN_BLUEPRINTS)


def register_api_keys(app: Flask, enabled: bool) -> None:
    """Check API keys on every request, right after the request context opens (when on)."""
    if enabled:  # off, the hook is not there at all: no cost per request
        app.before_request(require_api_key)
