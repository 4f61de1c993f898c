"""Ship closed payload log segments to a sink, oldest first; delete one only once all of it
was acknowledged (at-least-once: an event may arrive twice, never not at all).

Within one process a segment the sink failed part-way resumes after the last acknowledged
event. A stop request (SIGTERM) ends the process after one more pass over the segments closed
by then, so a server that stopped first has its last segments shipped; while the sink fails,
that pass ends at the first failure, without waiting to retry.

A process stopped or killed part-way remembers nothing: the next one sends that segment again
from its first line, so the sink may see those events twice; the event id (the request
id) makes the copies removable.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

from ml_app.core.payload_segments import (
    SegmentError,
    closed_segments,
    reject_segment,
    segment_batches,
)
from ml_app.core.payload_sinks import Sink, SinkError

log = logging.getLogger("ml_app.shipper")

# Waits after a failed pass: doubling from the first, never longer than the last.
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 30.0


def retry_delay(failures: int) -> float:
    """Seconds to wait after `failures` failed passes in a row (1, 2, ...)."""
    return min(LONGEST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))


@dataclasses.dataclass
class ShipperStats:
    """Running totals since the shipper started."""

    events_shipped: int = 0
    segments_shipped: int = 0
    send_failures: int = 0
    segments_rejected: int = 0


class Shipper:
    """Sends the closed segments of one directory to one sink."""

    def __init__(self, directory: Path, sink: Sink, stop: threading.Event | None = None) -> None:
        self.directory = directory
        self.sink = sink
        self.stop = stop or threading.Event()
        self.stats = ShipperStats()
        # Events of a segment the sink already acknowledged, by segment name: a retry in this
        # process resumes after them.
        self._acknowledged: dict[str, int] = {}

    def ship_pending(self) -> bool:
        """Send every closed segment there now, oldest first; False at the first failure."""
        for path in closed_segments(self.directory):
            try:
                self._ship_segment(path)
            except SinkError as exc:
                self.stats.send_failures += 1
                log.warning(
                    "sink refused or failed",
                    extra={"fields": {"segment": path.name, "error": str(exc)}},
                )
                return False
        return True

    def _ship_segment(self, path: Path) -> None:
        done = sent = self._acknowledged.pop(path.name, 0)
        try:
            for batch in segment_batches(path, skip=done):
                try:
                    self.sink.send(batch)
                except SinkError as exc:
                    self._acknowledged[path.name] = sent + exc.acknowledged
                    self.stats.events_shipped += exc.acknowledged
                    raise
                sent += len(batch)
                self.stats.events_shipped += len(batch)
        except FileNotFoundError:  # another shipper on the same directory took it
            return
        except SegmentError as exc:
            self._reject(path, exc)
            return
        # Only now is every line of it held by the sink.
        path.unlink()
        self.stats.segments_shipped += 1
        log.info(
            "segment shipped",
            extra={"fields": {"segment": path.name, "events": sent, "resumed_at": done}},
        )

    def _reject(self, path: Path, exc: SegmentError) -> None:
        """Set aside a segment with a bad line; the events before it may have been sent."""
        kept = reject_segment(path)
        self.stats.segments_rejected += 1
        log.error("segment rejected", extra={"fields": {"kept": kept.name, "error": str(exc)}})

    def run(self, poll_seconds: float, attempts: int | None = None) -> bool:
        """Ship until stopped (or, with `attempts`, until one pass succeeds); False if the last
        pass left segments behind.

        Waits `poll_seconds` between passes, and a doubling delay after failed ones; once
        stopped, makes one last pass and returns.
        """
        failures = 0
        while True:
            stopping = self.stop.is_set()
            shipped = self.ship_pending()
            if stopping or (shipped and attempts is not None):
                return shipped
            if shipped:
                failures = 0
                delay = poll_seconds
            else:
                failures += 1
                if attempts is not None and failures >= attempts:
                    return False
                delay = retry_delay(failures)
            self.stop.wait(delay)
