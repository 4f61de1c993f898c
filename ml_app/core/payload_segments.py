"""Closed payload log segments: which are there (oldest first) and the CloudEvents each holds.

A Gunicorn worker appends to `<hostname>-<pid>-<start time_ns>.open` and closes it by renaming
it to the same name ending `.jsonl` (ml_app.core.payload_log); a closed segment holds complete
lines only and is never written again, so a reader may take it at its own pace and, once it is
safely elsewhere, delete it. Segments are read line by line, in batches of bounded size: a
segment may be far larger than the memory a reader should need.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ml_app.core.payload_log import CLOSED_SUFFIX

# A segment that cannot be read as events is renamed to this, out of the shipper's way, and
# kept for an operator to look at: never deleted.
REJECTED_SUFFIX = ".rejected"
# The attributes every event needs to be sent in CloudEvents binary mode.
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
# A batch ends at whichever comes first; a line is at most the payload log's size setting
# (1 MiB by default) plus its envelope.
BATCH_EVENTS = 500
BATCH_BYTES = 8 * 1024 * 1024


class SegmentError(ValueError):
    """A closed segment holds a line that is not a CloudEvent in JSON form."""


@dataclasses.dataclass(frozen=True)
class SegmentEvent:
    """One line of a segment: the event parsed, and the line exactly as written."""

    event: dict[str, Any]
    line: bytes

    @property
    def id(self) -> str:
        """The event's id (a request id for inference events)."""
        return self.event["id"]


def _start_time(path: Path) -> int:
    """The start time_ns a writer put at the end of the name; 0 when the name has none."""
    stem = path.name.removesuffix(CLOSED_SUFFIX)
    _, _, tail = stem.rpartition("-")
    return int(tail) if tail.isdigit() else 0


def closed_segments(directory: Path) -> list[Path]:
    """Closed segments in `directory`, oldest first (start time, then closing time, then name)."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(CLOSED_SUFFIX) and entry.is_file(follow_symlinks=False):
                path = Path(entry.path)
                try:
                    closed_at = entry.stat(follow_symlinks=False).st_mtime_ns
                except FileNotFoundError:  # shipped and deleted by another reader meanwhile
                    continue
                found.append((_start_time(path), closed_at, path.name, path))
    return [path for *_, path in sorted(found)]


def _parse(path: Path, number: int, line: bytes) -> SegmentEvent:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise SegmentError(f"{path.name} line {number} is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise SegmentError(f"{path.name} line {number} is not a JSON object")
    missing = [name for name in REQUIRED_ATTRIBUTES if not isinstance(event.get(name), str)]
    if missing:
        raise SegmentError(f"{path.name} line {number} has no {', '.join(missing)}")
    return SegmentEvent(event, line.rstrip(b"\n"))


def read_segment(path: Path) -> Iterator[SegmentEvent]:
    """The events of a closed segment, in order; SegmentError at the first bad line."""
    with path.open("rb") as segment:
        for number, line in enumerate(segment, start=1):
            if line.strip():
                yield _parse(path, number, line)


def segment_batches(path: Path, skip: int = 0) -> Iterator[list[SegmentEvent]]:
    """The events after the first `skip`, in batches of BATCH_EVENTS or BATCH_BYTES at most."""
    batch: list[SegmentEvent] = []
    size = 0
    for index, item in enumerate(read_segment(path)):
        if index < skip:
            continue
        batch.append(item)
        size += len(item.line)
        if len(batch) >= BATCH_EVENTS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def reject_segment(path: Path) -> Path:
    """Move a segment that cannot be read out of the way (kept, renamed); the new path."""
    rejected = path.with_name(path.name + REJECTED_SUFFIX)
    os.rename(path, rejected)
    return rejected
