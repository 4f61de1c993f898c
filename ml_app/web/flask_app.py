"""The Flask class ml_app serves with: Flask, minus per-request work whose answer never changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


class ModelServerFlask(Flask):
    """Flask, with `ensure_sync` answered once per function instead of once per call.

    Flask asks `inspect.iscoroutinefunction` about every hook and view on every request (five
    or more times a request here); the answer for a given function never changes. Overriding
    `ensure_sync` is the hook Flask documents for changing how functions are run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The function itself, or async functions wrapped to run synchronously (cached)."""
        try:
            return self._sync_functions[func]
        except KeyError:
            sync = self._sync_functions[func] = super().ensure_sync(func)
            return sync
        except TypeError:  # an unhashable callable: ask Flask every time
            return super().ensure_sync(func)
