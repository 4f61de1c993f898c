"""Closed payload log segments: which are there (oldest first) and the CloudEvents each holds.

A Gunicorn worker appends to `<hostname>-<pid>-<start time_ns>.open` and closes it by renaming
it to the same name ending `.jsonl`; a closed segment holds complete lines only and is never
written again, so a reader may take it whole and, once it is safely elsewhere, delete it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import orjson

CLOSED_SUFFIX = ".jsonl"
OPEN_SUFFIX = ".open"
# A segment that cannot be read as events is renamed to this, out of the shipper's way, and
# kept for an operator to look at: never deleted, never sent half.
REJECTED_SUFFIX = ".rejected"
INFERENCE_TYPE = "ml_app.inference"
FEEDBACK_TYPE = "ml_app.feedback"
# The attributes every event needs to be sent in CloudEvents binary mode.
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")


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


def read_segment(path: Path) -> list[SegmentEvent]:
    """Every event in a closed segment, in order; SegmentError naming the first bad line."""
    events = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SegmentError(f"{path.name} line {number} is not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise SegmentError(f"{path.name} line {number} is not a JSON object")
        missing = [name for name in REQUIRED_ATTRIBUTES if not isinstance(event.get(name), str)]
        if missing:
            raise SegmentError(f"{path.name} line {number} has no {', '.join(missing)}")
        events.append(SegmentEvent(event, line))
    return events


def reject_segment(path: Path) -> Path:
    """Move a segment that cannot be read out of the way (kept, renamed); the new path."""
    rejected = path.with_name(path.name + REJECTED_SUFFIX)
    os.rename(path, rejected)
    return rejected
