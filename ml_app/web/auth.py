"""The one bearer-token check (constant-time), and the /metrics guard built on it."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import request

from ml_app.web.errors import unauthorized
from ml_app.web.state import app_state


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
