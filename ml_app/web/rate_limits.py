"""Rate limits with Flask-Limiter: rows each client may predict, counted in a shared store.

One Flask-Limiter limit, shared by every prediction route: keyed by the API key id (else the
client address), its value the key's own limit from the keys file (else ML_APP_RATE_LIMIT), its
cost the request's row count. Rows are known only once the body is validated, so the limit is
checked by `charge_rows`, which `serving.predict_matrix` (the one step every prediction route
shares) calls; a request refused before that (bad body, unknown model) costs
nothing. The counts live in `limits` storage: Redis, shared by every worker and replica, or
memory for one process (gunicorn.conf.py refuses it with more than one worker). On Redis a charge
is one round trip that also returns the window's expiry (`core.rate_limit_store`), so the
answer's X-RateLimit-* headers cost none; the limit string is parsed once per distinct value.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded, RouteLimit
from flask_limiter._limits import RuntimeLimit
from limits.errors import StorageError

from ml_app.core import metrics
from ml_app.core.config import Settings
from ml_app.core.errors import RateLimited, RateLimitStoreDown
from ml_app.core.rate_limit_store import STRATEGY, charged_uri
from ml_app.web.context import request_context

log = logging.getLogger("ml_app.rate_limits")
EXTENSION_KEY = "ml_app_rate_limits"
# A stopped Redis must cost a request a second at most, not a hung worker.
_REDIS_TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}
_SCOPE = "rows"  # one count per client across every prediction route
_PARSED_LIMITS_KEPT = 256  # distinct limit strings (the default and the keys' own) kept parsed


@dataclass(frozen=True, slots=True)
class RateLimits:
    """This app's limiter, the check of its one limit on rows, and the store-down policy."""

    limiter: Limiter
    check_rows: Callable[[], None]  # raises RateLimitExceeded past the limit
    fail_closed: bool


def limit_for_client() -> str:
    """This request's limit: its API key's own (from the keys file), else ML_APP_RATE_LIMIT."""
    context = request_context()
    key = context.api_key
    if key is not None and key.rate_limit:
        return key.rate_limit
    return context.state.settings.rate_limit


def client_identity() -> str:
    """What the limit counts by: the API key id when the request carried a key, else its IP."""
    key_id = request_context().key_id
    return f"key:{key_id}" if key_id else f"ip:{request.remote_addr}"


def rows_to_charge() -> int:
    """The cost of the charge being made: the validated rows of one prediction."""
    return request_context().charging or 1


def charge_rows(rows: int) -> None:
    """Charge these rows to this request's client; raise RateLimited past the limit."""
    rate_limits: RateLimits | None = current_app.extensions.get(EXTENSION_KEY)
    if rate_limits is None:  # no ML_APP_RATE_LIMIT: off
        return
    # Flask-Limiter's cost is a callable without arguments: it reads the rows from the context
    # (a GraphQL query may predict several times in one request, each charged its own rows).
    request_context().charging = rows
    try:
        rate_limits.check_rows()
    except RateLimitExceeded as exc:
        metrics.RATE_LIMIT_DECISIONS.labels("limited").inc()
        raise RateLimited(f"Rate limit exceeded: {exc.description}.") from None
    except StorageError as exc:
        _store_down(rate_limits, exc)
        return
    metrics.RATE_LIMIT_DECISIONS.labels("allowed").inc()


def _store_down(rate_limits: RateLimits, exc: StorageError) -> None:
    cause = type(exc.storage_error).__name__
    if rate_limits.fail_closed:
        metrics.RATE_LIMIT_DECISIONS.labels("store_down_refused").inc()
        log.warning("rate-limit store unreachable (%s): refusing", cause)
        raise RateLimitStoreDown("The rate-limit store is unreachable; try again shortly.")
    metrics.RATE_LIMIT_DECISIONS.labels("store_down_allowed").inc()
    log.warning("rate-limit store unreachable (%s): serving without a limit", cause)


def add_rate_limit_headers(limiter: Limiter, response: Response) -> Response:
    """X-RateLimit-* on an answer whose rows were charged; Retry-After when it was refused."""
    current = limiter.current_limit
    if current is None:  # not charged (refused earlier, or the store was down)
        return response
    try:
        # On Redis what the charge returned (no round trip); else one read of the window.
        reset_at, remaining = current.window
    except StorageError as exc:  # the store went down since the charge: answer without them
        log.warning("rate-limit store unreachable (%s): no rate-limit headers", exc)
        return response
    headers = response.headers
    headers["X-RateLimit-Limit"] = str(current.limit.amount)
    headers["X-RateLimit-Remaining"] = str(max(0, remaining))
    headers["X-RateLimit-Reset"] = str(math.ceil(reset_at))
    if current.breached:
        headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
    return response


@dataclasses.dataclass(kw_only=True, unsafe_hash=True)
class ParsedOnceLimit(RouteLimit):
    """Flask-Limiter's shared route limit, its limit string parsed once per distinct value."""

    # Flask-Limiter iterates a limit (parsing its string) twice per check: as the decorated
    # callable's limit and as the endpoint's hint. The parsed limits depend on the string alone
    # (the client is identified when the limit is evaluated), so one parse per string serves
    # every key that has that limit.
    parsed: dict[str, tuple[RuntimeLimit, ...]] = dataclasses.field(
        default_factory=dict, init=False, hash=False, compare=False, repr=False
    )

    def __iter__(self) -> Iterator[RuntimeLimit]:
        """The runtime limits of this request's limit string."""
        provider = self.limit_provider
        limit_string = provider() if callable(provider) else provider
        runtime_limits = self.parsed.get(limit_string)
        if runtime_limits is None:
            if len(self.parsed) >= _PARSED_LIMITS_KEPT:  # keys re-read with many new limits
                self.parsed.clear()
            runtime_limits = self.parsed[limit_string] = tuple(super().__iter__())
        return iter(runtime_limits)


def register_rate_limits(app: Flask, settings: Settings) -> None:
    """Bind a Flask-Limiter to the app when ML_APP_RATE_LIMIT is set; see charge_rows."""
    if not settings.rate_limit:
        return
    uri = settings.rate_limit_storage_uri
    options: dict[str, str | int] = {"wrap_exceptions": True}  # one StorageError for any store
    storage_uri = charged_uri(uri)
    if storage_uri != uri:  # a Redis store, over TCP, TLS or a Unix socket
        options.update(_REDIS_TIMEOUTS)
    # One Limiter per app, not one module-level instance: it keeps its storage on itself, and
    # a second init_app would point the first app at the second app's store.
    limiter = Limiter(
        client_identity,
        storage_uri=storage_uri,
        storage_options=options,
        # A fixed window: one atomic INCRBY per limit per request, exact across replicas.
        strategy=STRATEGY,
        headers_enabled=False,  # add_rate_limit_headers writes them (Retry-After never 0)
        swallow_errors=False,  # charge_rows applies ML_APP_RATE_LIMIT_REDIS_DOWN instead
    )
    hooks = _hook_lists(app)
    before = [len(hook_list) for hook_list in hooks]
    limiter.init_app(app)
    _replace_limiter_hooks(limiter, hooks, before)
    rows_limit = ParsedOnceLimit(
        limit_provider=limit_for_client,
        limiter=limiter,
        key_function=client_identity,
        scope=_SCOPE,
        shared=True,
        override_defaults=True,
        cost=rows_to_charge,
    )

    # Flask-Limiter checks a decorated callable's limits each time it is called, in the
    # request: called once rows are known, it charges them.
    @rows_limit
    def check_rows() -> None:
        """Charge this request's rows against its client's limit."""

    app.extensions[EXTENSION_KEY] = RateLimits(
        limiter, check_rows, fail_closed=settings.rate_limit_redis_down == "closed"
    )
    # The access line already records each 429 with its key id; no second line per refusal.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)


def _hook_lists(app: Flask) -> tuple[list[Callable], list[Callable], list[Callable]]:
    return (
        app.before_request_funcs.setdefault(None, []),
        app.after_request_funcs.setdefault(None, []),
        app.teardown_request_funcs.setdefault(None, []),
    )


def _replace_limiter_hooks(
    limiter: Limiter, hooks: tuple[list[Callable], ...], before: list[int]
) -> None:
    # init_app appended one hook to each list, each costing every request on every route. Its
    # before_request hook checks default and application limits, of which there are none (the
    # one limit is checked in charge_rows); its after_request hook writes headers (off here)
    # and conditional deductions (none); its teardown hook clears per-request state kept on
    # Flask's request context, which is dropped with the request anyway. So all three go, and
    # only requests whose rows were charged get the headers.
    if [len(hook_list) for hook_list in hooks] != [count + 1 for count in before]:
        raise RuntimeError("Flask-Limiter's init_app registered other hooks than expected")
    for hook_list in hooks:
        hook_list.pop()

    def add_headers_when_charged(response: Response) -> Response:
        if not request_context().charging:  # nothing was charged to a limit
            return response
        return add_rate_limit_headers(limiter, response)

    hooks[1].append(add_headers_when_charged)
