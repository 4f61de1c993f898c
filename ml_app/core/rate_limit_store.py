"""Rate-limit counts in Redis at one round trip per charge, window headers included.

`limits`' fixed window charges with one round trip (INCRBY, EXPIRE when new), but the answer's
X-RateLimit-* headers then cost two more (GET and TTL). `ChargingRedisStorage` charges and reads
the window's expiry in one Lua script; `ChargedWindowRateLimiter` (a fixed window, the strategy
`charged-fixed-window`) keeps what each charge returned, so the window stats read right after
it cost no round trip. Both are registered the ways `limits` registers its own: the storage by
its URI schemes (`charged+redis://`, `charged+rediss://`, `charged+redis+unix://`), the strategy
in `limits.strategies.STRATEGIES`, where Flask-Limiter looks strategies up by name.
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

from limits.errors import StorageError
from limits.limits import RateLimitItem
from limits.storage import RedisStorage, Storage
from limits.strategies import STRATEGIES, FixedWindowRateLimiter
from limits.util import WindowStats

SCHEME_PREFIX = "charged+"
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix")  # limits' RedisStorage's, valkey's aside
STRATEGY = "charged-fixed-window"
# Charge ARGV[2] to KEYS[1]; a key without an expiry (a new window) expires in ARGV[1] seconds.
# Returns the count after the charge and the milliseconds left in the window.
_CHARGE_SCRIPT = """
local count = redis.call("incrby", KEYS[1], ARGV[2])
local left = redis.call("pttl", KEYS[1])
if left < 0 then
    redis.call("expire", KEYS[1], ARGV[1])
    left = tonumber(ARGV[1]) * 1000
end
return {count, left}
"""
# Charges kept per thread until their window is read; more than this (a charge whose window is
# never read, e.g. a limit behind one that was breached) drops the oldest.
_KEPT_CHARGES = 16


def charged_uri(uri: str) -> str:
    """The URI of ChargingRedisStorage for a Redis URI; any other URI as it is."""
    if uri.startswith(tuple(f"{scheme}://" for scheme in _REDIS_SCHEMES)):
        return SCHEME_PREFIX + uri
    return uri


class ChargingRedisStorage(RedisStorage):
    """limits' Redis storage, plus `charge`: the count and the window's end in one round trip."""

    STORAGE_SCHEME: ClassVar[list[str]] = [SCHEME_PREFIX + scheme for scheme in _REDIS_SCHEMES]

    def __init__(self, uri: str, **options: float | str | bool) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)

    def initialize_storage(self, uri: str) -> None:
        """Register limits' scripts and the charge script (loaded on first use)."""
        super().initialize_storage(uri)
        self.lua_charge = self.get_connection().register_script(_CHARGE_SCRIPT)

    def charge(self, key: str, expiry: int, amount: int) -> tuple[int, float]:
        """Add `amount` to the key's count; its count after and when its window ends (epoch)."""
        try:
            count, left_ms = self.lua_charge([self.prefixed_key(key)], [expiry, amount])
        except self.base_exceptions as exc:
            if self.wrap_exceptions:
                raise StorageError(exc) from exc
            raise
        return int(count), time.time() + int(left_ms) / 1000


class ChargedWindowRateLimiter(FixedWindowRateLimiter):
    """A fixed window whose window stats, read right after a charge, come from that charge."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        self._charged = threading.local()  # each thread reads back only its own charges

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Charge `cost`; True when the count stays within the limit."""
        if not isinstance(self.storage, ChargingRedisStorage):
            return super().hit(item, *identifiers, cost=cost)
        key = item.key_for(*identifiers)
        count, reset_at = self.storage.charge(key, item.get_expiry(), cost)
        charges = self._charges()
        charges.pop(key, None)  # re-inserted last, so the oldest is dropped first
        if len(charges) >= _KEPT_CHARGES:
            del charges[next(iter(charges))]
        charges[key] = WindowStats(reset_at, max(0, item.amount - count))
        return count <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """The window as this thread's last charge of it left it, once; else read from the store."""
        charged = self._charges().pop(item.key_for(*identifiers), None)
        if charged is not None and charged.reset_time > time.time():
            return charged
        return super().get_window_stats(item, *identifiers)

    def _charges(self) -> dict[str, WindowStats]:
        charges = getattr(self._charged, "windows", None)
        if charges is None:
            charges = self._charged.windows = {}
        return charges


STRATEGIES.setdefault(STRATEGY, ChargedWindowRateLimiter)
