"""The drain marker: a file whose presence tells every worker the server is shutting down.

The Gunicorn master creates it on SIGTERM (a Kubernetes preStop hook may create it earlier);
readiness answers 503 while it exists, so balancers stop sending before the listener closes.
A file works across the master, its workers and a preStop command alike.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class DrainMarker:
    """A drain marker at `path`; with no path, the server never reports draining."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None

    def start(self) -> None:
        """Say the server is draining (idempotent: an existing marker keeps its age)."""
        if self.path is not None and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def clear(self) -> None:
        """Say the server is serving (a marker left by an earlier run is removed)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def active(self) -> bool:
        """True while the server is draining."""
        return self.path is not None and self.path.exists()

    def age(self) -> float:
        """Seconds since draining began (0 when it has not)."""
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime) if self.path else 0.0
        except FileNotFoundError:
            return 0.0
