"""prometheus_client's multiprocess files: dead workers folded into an archive, full disks survived.

Every Gunicorn worker writes `counter_<pid>.db`, `histogram_<pid>.db` (and gauge files) in
PROMETHEUS_MULTIPROC_DIR, and every scrape merges all of them. Left alone, each recycled worker
adds files for good, so a scrape gets slower without end (~0.16 ms per file) and a small tmpfs
fills up. When a worker exits, `MetricsArchive.fold` adds its counter and histogram samples into
`counter_archive.db` / `histogram_archive.db` (prometheus_client's own file format, which the stock
`MultiProcessCollector` merges like any worker's) and removes its files: the directory holds the
live workers' files plus one archive per type, and totals stay exact.

prometheus_client sizes its files with `truncate` and writes through mmap; on a full tmpfs the
first write to a page that cannot be backed kills the process with SIGBUS. The files here reserve
their blocks with `posix_fallocate` first, so a full disk is an OSError: the worker logs it once,
counts its new series in memory only, and keeps serving.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import prometheus_client.values
from prometheus_client.mmap_dict import (
    _INITIAL_MMAP_SIZE,
    MmapedDict,
    _pack_two_doubles,
    _unpack_two_doubles,
)
from prometheus_client.multiprocess import mark_process_dead

from ml_app.core.process import process_id

log = logging.getLogger("ml_app.metrics")

# Types whose samples add across processes (the collector sums them), so folding is a sum.
FOLDED_TYPES = ("counter", "histogram", "summary")
ARCHIVE_ID = "archive"  # takes the place of a pid in the file name: counter_archive.db
_LOCK_NAME = "archive.lock"
_NEW_SUFFIX = ".new"  # not *.db: a scrape never reads a half-written archive
_JOURNAL_SUFFIX = ".journal"

_pending_failures = 0


def _entry_size(key: str) -> int:
    """Bytes MmapedDict._init_value appends for `key` (length, padded key, value, timestamp)."""
    encoded = len(key.encode("utf-8"))
    return 4 + encoded + (8 - (encoded + 4) % 8) + 16


def _reserve(fd: int, size: int) -> None:
    """Back the first `size` bytes of the file with real blocks: ENOSPC now, not SIGBUS later."""
    os.posix_fallocate(fd, 0, max(size, os.fstat(fd).st_size))


class ReservedMmapedDict(MmapedDict):
    """MmapedDict whose pages are allocated before they are mapped: a full disk raises OSError."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _reserve(fd, _INITIAL_MMAP_SIZE)
            except OSError:
                if os.fstat(fd).st_size == 0:  # an empty *.db would fail every scrape
                    os.unlink(filename)
                raise
            finally:
                os.close(fd)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        needed = self._used + _entry_size(key)
        capacity = self._capacity
        while needed > capacity:  # the parent doubles the same way, then truncates and remaps
            capacity *= 2
        if capacity > self._capacity:
            _reserve(self._f.fileno(), capacity)
        super()._init_value(key)


class BestEffortMmapedDict(ReservedMmapedDict):
    """A worker's metrics file: when the disk refuses it, new series count in memory only.

    Series already in the file keep counting there (their blocks are reserved); the failure is
    logged and counted once per file, and never reaches the request being served.
    """

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        self._in_memory: dict[str, tuple[float, float]] = {}
        self._refused = False
        try:
            super().__init__(filename, read_mode)
        except OSError as exc:
            # Nothing mapped: close() sees no file, every series lives in _in_memory.
            self._f = self._m = None
            self._fname, self._positions, self._used, self._capacity = filename, {}, 8, 0
            self._refuse(exc)

    # read_value and write_value are the parent's, with the disk's refusal handled; written out
    # rather than wrapped with super(), since every metric update of every request passes here.
    def read_value(self, key: str) -> tuple[float, float]:
        """The stored value and timestamp of `key`, creating it at zero."""
        if key not in self._positions and not self._place(key):
            return self._in_memory.setdefault(key, (0.0, 0.0))
        return _unpack_two_doubles(self._m, self._positions[key])

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        """Store `key`'s value: in the file when it has room, else in this process's memory."""
        if key not in self._positions and not self._place(key):
            self._in_memory[key] = (value, timestamp)
            return
        _pack_two_doubles(self._m, self._positions[key], value, timestamp)

    def _place(self, key: str) -> bool:
        """Give `key` its place in the file; False once the disk refused (memory from then on)."""
        if self._refused:
            return False
        try:
            self._init_value(key)
        except OSError as exc:
            self._refuse(exc)
            return False
        return True

    def _refuse(self, exc: OSError) -> None:
        global _pending_failures  # noqa: PLW0603 - drained outside prometheus_client's lock
        self._refused = True
        _pending_failures += 1
        log.error(
            "metrics file %s cannot grow (%s): its new series are counted in this worker's "
            "memory only and are missing from /metrics",
            self._fname,
            exc.strerror or exc,
        )


def install_best_effort_files() -> None:
    """Make prometheus_client's multiprocess values use BestEffortMmapedDict (before any metric).

    Their process identifier becomes a pid cached per process (refreshed in a forked child
    before it runs any Python): each value update asked the kernel with getpid(), eight system
    calls per prediction, for an answer that only changes at fork.
    """
    prometheus_client.values.MmapedDict = BestEffortMmapedDict
    if getattr(prometheus_client.values.ValueClass, "_multiprocess", False):
        values = prometheus_client.values
        values.ValueClass = values.MultiProcessValue(process_identifier=process_id)


def take_write_failures() -> int:
    """Metrics files refused since the last call; called outside prometheus_client's lock."""
    global _pending_failures
    if not _pending_failures:  # every request asks: the common answer costs one global read
        return 0
    taken, _pending_failures = _pending_failures, 0
    return taken


@contextmanager
def fold_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the directory's lock exclusively: no scrape reads while a fold changes files."""
    fd = os.open(os.path.join(directory, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def scrape_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """The lock shared by scrapes, or none when its file cannot be made (read-only, full).

    Without the lock file no fold can run either (it takes the same lock), so there is no half
    fold to see, and a scrape must not fail because of it.
    """
    try:
        fd = os.open(os.path.join(directory, _LOCK_NAME), os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


class MetricsArchive:
    """The archive of one multiprocess directory, kept by the Gunicorn master."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        # Dead workers whose fold failed: their files still count, and the next fold retries.
        self._unfolded: set[int] = set()

    def clear(self) -> None:
        """Remove every metrics file, archive and journal: a new server starts from zero."""
        for pattern in ("*.db", f"*{_NEW_SUFFIX}", f"*{_JOURNAL_SUFFIX}"):
            for stale in self.directory.glob(pattern):
                stale.unlink()

    def fold(self, pid: int) -> bool:
        """Drop a dead worker's gauges; add its counters and histograms to the archive and remove
        its files (and those of workers whose fold failed before). True when nothing is left over.

        Never raises: a fold that fails (disk full, unreadable file) is logged and leaves the
        worker's files where they are, still counted by every scrape.
        """
        self._unfolded.add(pid)
        try:
            mark_process_dead(pid, str(self.directory))
            with fold_lock(self.directory):
                _finish_interrupted_folds(self.directory)
                for dead in sorted(self._unfolded):
                    for kind in FOLDED_TYPES:
                        _fold_file(self.directory, kind, dead)
                    self._unfolded.discard(dead)
        except (OSError, RuntimeError, ValueError, struct.error) as exc:
            log.error("could not fold dead workers' metrics %s: %s", sorted(self._unfolded), exc)
            return False
        return True


def archive_path(directory: Path, kind: str) -> Path:
    """Where the samples of dead workers of one metric type add up."""
    return directory / f"{kind}_{ARCHIVE_ID}.db"


def _read_samples(path: Path, into: dict[str, float]) -> None:
    for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
        into[key] = into.get(key, 0.0) + value


def _fold_file(directory: Path, kind: str, pid: int) -> None:
    """Archive + worker file -> new archive beside, journal, rename, then remove the worker's."""
    worker = directory / f"{kind}_{pid}.db"
    if not worker.exists():
        return
    archive = archive_path(directory, kind)
    totals: dict[str, float] = {}
    if archive.exists():
        _read_samples(archive, totals)
    _read_samples(worker, totals)
    new = archive.with_name(archive.name + _NEW_SUFFIX)
    new.unlink(missing_ok=True)
    written = ReservedMmapedDict(str(new))
    try:
        for key, value in totals.items():
            written.write_value(key, value, 0.0)
    finally:
        written.close()
    # The journal names the worker and the new archive's inode: after a crash, an archive with
    # that inode already holds the worker's samples, so only the worker's file is left to remove.
    journal = archive.with_name(archive.name + _JOURNAL_SUFFIX)
    journal.write_text(json.dumps({"worker": str(worker), "inode": new.stat().st_ino}))
    os.replace(new, archive)
    worker.unlink()
    journal.unlink()


def _finish_interrupted_folds(directory: Path) -> None:
    """Complete or undo folds cut short after their journal was written (lock held)."""
    for journal in directory.glob(f"*{_JOURNAL_SUFFIX}"):
        archive = journal.with_name(journal.name.removesuffix(_JOURNAL_SUFFIX))
        try:
            entry = json.loads(journal.read_text())
            renamed = archive.exists() and archive.stat().st_ino == entry["inode"]
        except (ValueError, KeyError):  # cut short while writing the journal: before the rename
            renamed = False
        if renamed:
            Path(entry["worker"]).unlink(missing_ok=True)
        archive.with_name(archive.name + _NEW_SUFFIX).unlink(missing_ok=True)
        journal.unlink()
