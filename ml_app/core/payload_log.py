"""The payload log's files: each process appends JSON lines to its own segment, closed by rename.

A segment is `<dir>/<hostname>-<pid>-<start time_ns>.open` while written and is renamed to the
same name ending `.jsonl` when closed (by size, by age, at exit); only closed segments are
shipped, and a closed segment is never written again. Each append is one `os.write` on an
O_APPEND descriptor, so a process killed at any instant leaves whole lines behind; a write the
disk cuts short (full) is cut back to the last whole line at once. Nothing is shared between
processes: the file is opened after fork, on the first event, with the pid in its name.

A disk that is full or not writable never fails the caller: the events are dropped, counted in
`ml_app_payload_log_errors_total` and logged once per run of failures; the next event that fits
is written as usual.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import socket
import threading
import time
import weakref
from pathlib import Path

from ml_app.core import payload_metrics

log = logging.getLogger("ml_app.payload_log")
OPEN_SUFFIX = ".open"
CLOSED_SUFFIX = ".jsonl"
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_TAIL_CHUNK = 64 * 1024  # read back from the end of a segment to find its last whole line


def failure_reason(exc: OSError) -> str:
    """A bounded label for why the disk refused: disk_full, not_writable or io_error."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "disk_full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR):
        return "not_writable"
    return "io_error"


class PayloadLog:
    """This process's segment of the payload log in `directory`; thread-safe, fork-aware."""

    def __init__(self, directory: Path, segment_bytes: int, segment_seconds: float) -> None:
        self.directory = directory
        self.hostname = socket.gethostname()
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds  # 0: closed by size and at exit only
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._failing = 0  # events dropped since the last one written
        _ALL.add(self)

    @property
    def segment(self) -> Path | None:
        """The open segment's path, or None when none is open."""
        return self._path

    def append(self, lines: bytes, event_type: str, events: int = 1) -> bool:
        """Write whole JSON lines in one write; False (counted, logged) when the disk refused."""
        with self._lock:
            try:
                self._write(lines)
            except OSError as exc:
                self._dropped(exc, event_type, events)
                return False
            dropped, self._failing = self._failing, 0
        payload_metrics.events_written(event_type).inc(events)
        if dropped:
            log.warning("payload log writable again after %d events were dropped", dropped)
        return True

    def close(self) -> None:
        """Close the open segment (rename to .jsonl); the next event opens a new one."""
        with self._lock:
            self._close()

    def _write(self, lines: bytes) -> None:
        if self._fd is not None and self._expired():
            self._close()
        if self._fd is None:
            self._open()
        assert self._fd is not None
        try:
            written = os.write(self._fd, lines)
        except OSError:
            self._cut_back()
            raise
        if written != len(lines):  # the disk filled up part-way through the line
            self._cut_back()
            raise OSError(errno.ENOSPC, "short write to the payload log")
        self._size += written
        if self._size >= self.segment_bytes:
            self._close()

    def _expired(self) -> bool:
        return 0 < self.segment_seconds <= time.monotonic() - self._opened

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self.hostname}-{os.getpid()}-{time.time_ns()}{OPEN_SUFFIX}"
        path = self.directory / name
        self._fd = os.open(path, _FLAGS, 0o644)
        self._path, self._size, self._opened = path, 0, time.monotonic()
        if self.segment_seconds > 0:  # an idle process must not keep its lines from shipping
            timer = threading.Timer(self.segment_seconds, self._close_if_current, (path,))
            timer.daemon = True
            timer.start()

    def _close_if_current(self, path: Path) -> None:
        with self._lock:
            if self._path == path:
                self._close()

    def _close(self) -> None:
        fd, path = self._fd, self._path
        self._fd, self._path, self._size = None, None, 0
        if fd is None or path is None:
            return
        try:
            os.close(fd)
            close_segment(path)
        except OSError as exc:
            log.error("could not close payload segment %s: %s", path, exc)

    def _cut_back(self) -> None:
        """Drop a partial line at the end of the segment, so it keeps only whole lines."""
        try:
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]
        except OSError:
            self._close()  # close_segment trims it instead

    def _dropped(self, exc: OSError, event_type: str, events: int) -> None:
        reason = failure_reason(exc)
        payload_metrics.events_dropped(event_type, reason).inc(events)
        if not self._failing:
            log.error(
                "payload log %s refused an event (%s: %s); events are dropped and counted in "
                "ml_app_payload_log_errors_total until one fits",
                self.directory,
                reason,
                exc.strerror or exc,
            )
        self._failing += events

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's segment is the parent's; open our own when needed."""
        self._lock = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path, self._size, self._failing = None, None, 0, 0


def close_segment(path: Path) -> Path | None:
    """Trim a partial last line, then rename `.open` to `.jsonl`; an empty segment is removed."""
    with path.open("rb+") as segment:
        size = segment.seek(0, os.SEEK_END)
        whole = _whole_lines_size(segment, size)
        if whole != size:
            segment.truncate(whole)
    if whole == 0:
        path.unlink()
        return None
    closed = path.with_suffix(CLOSED_SUFFIX)
    os.rename(path, closed)
    return closed


def _whole_lines_size(segment: object, size: int) -> int:
    """Bytes up to and including the last newline (the file's whole lines)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        segment.seek(start)  # type: ignore[attr-defined]
        newline = segment.read(end - start).rfind(b"\n")  # type: ignore[attr-defined]
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def close_orphaned_segments(directory: Path, pid: int | None = None) -> list[Path]:
    """Close open segments of this host left by a dead process: `pid`, or any pid not running.

    The Gunicorn master calls it for each worker that exits (a SIGKILLed worker cannot close its
    own) and at start, for segments a crashed earlier run left open.
    """
    prefix = f"{socket.gethostname()}-"
    closed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return closed
    for entry in entries:
        owner = _segment_pid(entry.name, prefix)
        if owner is None or (owner != pid if pid is not None else _running(owner)):
            continue
        try:
            result = close_segment(Path(entry.path))
        except OSError as exc:
            log.error("could not close orphaned payload segment %s: %s", entry.path, exc)
            continue
        if result is not None:
            closed.append(result)
    return closed


def _segment_pid(name: str, prefix: str) -> int | None:
    if not (name.startswith(prefix) and name.endswith(OPEN_SUFFIX)):
        return None
    pid, _, started = name[len(prefix) : -len(OPEN_SUFFIX)].partition("-")
    return int(pid) if pid.isdigit() and started.isdigit() else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_ALL: weakref.WeakSet[PayloadLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for payload_log in list(_ALL):
        payload_log._forget_after_fork()


def _close_all() -> None:
    # Under servers without an exit hook of their own; Gunicorn's worker_exit closes it first.
    for payload_log in list(_ALL):
        payload_log.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
