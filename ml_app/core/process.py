"""This process's id, cached: asked on every request, it changes only when a process forks."""

from __future__ import annotations

import os

_pid = [os.getpid()]
# A forked child (a Gunicorn worker) learns its own before it runs any Python.
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def process_id() -> int:
    """os.getpid(), without a system call each time."""
    return _pid[0]
