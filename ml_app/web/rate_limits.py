"""Rate limits: rows each client may predict, counted in a store every worker and replica share.

The `limits` library (Flask-Limiter's storage and strategy layer) counts in Redis, or in memory
for one process. A batch costs its row count, known only once the body is validated, so
`charge_rows` runs in `serving.predict_matrix`, the one step every prediction route shares; a
request refused before that (bad body, unknown model) costs nothing. Flask-Limiter itself is not
bound: its before/after/teardown hooks would add ~80 us to every request on every route
(measured with the test client) and have nothing to check, the charge being by rows.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, RateLimiter

from ml_app.core import metrics
from ml_app.core.config import Settings
from ml_app.core.errors import RateLimited, RateLimitStoreDown
from ml_app.web.context import request_context

log = logging.getLogger("ml_app.rate_limits")
EXTENSION_KEY = "ml_app_rate_limits"
# A stopped Redis must cost a request a second at most, not a hung worker.
_REDIS_TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}


@dataclass(frozen=True, slots=True)
class RateLimits:
    """This app's strategy (over its storage), the configured limits and the down policy."""

    strategy: RateLimiter
    limits: tuple[RateLimitItem, ...]
    fail_closed: bool


def limits_for(key_id: str | None, rate_limits: RateLimits) -> tuple[RateLimitItem, ...]:
    """The limits that apply to an API key id (or to a client without one)."""
    # Per-key limits from the keys file plug in here; until then every identity shares one.
    return rate_limits.limits


def client_identity() -> tuple[str | None, str]:
    """The API key id when the request carried one, and the counting key (key id, else IP)."""
    key_id = request_context().key_id
    return key_id, f"key:{key_id}" if key_id else f"ip:{request.remote_addr}"


def charge_rows(rows: int) -> None:
    """Charge this request's rows to its client; raise RateLimited past the limit."""
    rate_limits: RateLimits | None = current_app.extensions.get(EXTENSION_KEY)
    if rate_limits is None:  # no ML_APP_RATE_LIMIT: off
        return
    key_id, identity = client_identity()
    strategy = rate_limits.strategy
    try:
        for item in limits_for(key_id, rate_limits):
            if not strategy.hit(item, identity, cost=rows):
                metrics.RATE_LIMIT_DECISIONS.labels("limited").inc()
                raise _refusal(strategy, item, identity)
    except StorageError as exc:
        _store_down(rate_limits, exc)
        return
    metrics.RATE_LIMIT_DECISIONS.labels("allowed").inc()


def _refusal(strategy: RateLimiter, item: RateLimitItem, identity: str) -> RateLimited:
    reset_at, remaining = strategy.get_window_stats(item, identity)
    retry_after = max(1, math.ceil(reset_at - time.time()))
    headers = {
        "Retry-After": str(retry_after),
        "X-RateLimit-Limit": str(item.amount),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(math.ceil(reset_at)),
    }
    return RateLimited(f"Rate limit exceeded: {item}. Retry in {retry_after} s.", headers=headers)


def _store_down(rate_limits: RateLimits, exc: StorageError) -> None:
    cause = type(exc.storage_error).__name__
    if rate_limits.fail_closed:
        metrics.RATE_LIMIT_DECISIONS.labels("store_down_refused").inc()
        log.warning("rate-limit store unreachable (%s): refusing", cause)
        raise RateLimitStoreDown("The rate-limit store is unreachable; try again shortly.")
    metrics.RATE_LIMIT_DECISIONS.labels("store_down_allowed").inc()
    log.warning("rate-limit store unreachable (%s): serving without a limit", cause)


def register_rate_limits(app: Flask, settings: Settings) -> None:
    """Give the app its rate-limit storage when ML_APP_RATE_LIMIT is set; see predict_matrix."""
    if not settings.rate_limit:
        return
    uri = settings.rate_limit_storage_uri
    options: dict[str, str | int] = {"wrap_exceptions": True}
    if uri.startswith(("redis://", "rediss://", "unix://")):
        options.update(_REDIS_TIMEOUTS)
    storage = storage_from_string(uri, **options)
    app.extensions[EXTENSION_KEY] = RateLimits(
        # Fixed window: one atomic INCRBY per limit per request, exact across replicas.
        strategy=FixedWindowRateLimiter(storage),
        limits=tuple(parse_many(settings.rate_limit)),
        fail_closed=settings.rate_limit_redis_down == "closed",
    )
