"""A small tmpfs mounted for one test (root, or passwordless sudo as on CI runners), and filled."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILLER = "filler"


def _privileged(*command: str) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=30)


@contextmanager
def small_tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_kib` KiB at `where` (world-writable), unmount it afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    _privileged("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=1777", "tmpfs", str(where))
    try:
        yield where
    finally:
        _privileged("umount", str(where))


def fill(directory: Path) -> int:
    """Take every free block of the filesystem under `directory`; returns the bytes taken."""
    taken = 0
    block = b"\0" * 4096
    with (directory / FILLER).open("ab", buffering=0) as filler:
        while True:
            try:
                taken += filler.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return taken
