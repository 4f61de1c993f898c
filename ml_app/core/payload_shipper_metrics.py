"""The payload shipper's own Prometheus metrics, read at scrape time from its running totals
and from the directory (how much waits to be shipped, and for how long)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_app.core.payload_segments import closed_segments
from ml_app.core.payload_shipper import Shipper


class ShipperCollector:
    """Yields the shipper's metrics; no metric objects, so nothing touches multiprocess files."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper

    def collect(self) -> Iterator[Metric]:
        """The metrics as they are now."""
        stats = self.shipper.stats
        totals = (
            ("events", "Events the sink acknowledged.", stats.events_shipped),
            ("segments", "Segments shipped whole and deleted.", stats.segments_shipped),
            ("failures", "Passes the sink failed or refused.", stats.send_failures),
            ("rejected_segments", "Segments set aside unreadable.", stats.segments_rejected),
        )
        for name, text, value in totals:
            yield CounterMetricFamily(f"ml_app_payload_shipper_{name}", text, value=value)
        waiting, size, oldest = _backlog(self.shipper)
        yield GaugeMetricFamily(
            "ml_app_payload_shipper_backlog_segments", "Closed segments not shipped yet.", waiting
        )
        yield GaugeMetricFamily(
            "ml_app_payload_shipper_backlog_bytes",
            "Bytes of closed segments not shipped yet.",
            size,
        )
        yield GaugeMetricFamily(
            "ml_app_payload_shipper_oldest_segment_age_seconds",
            "Seconds since the oldest unshipped segment was closed (0 with none).",
            oldest,
        )


def _backlog(shipper: Shipper) -> tuple[int, int, float]:
    """Closed segments waiting, their bytes, and the age of the oldest one."""
    count, size, oldest = 0, 0, None
    for path in closed_segments(shipper.directory):
        try:
            stat = os.stat(path)
        except FileNotFoundError:  # shipped meanwhile
            continue
        count, size = count + 1, size + stat.st_size
        oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
    return count, size, 0.0 if oldest is None else max(0.0, time.time() - oldest)


def serve_metrics(shipper: Shipper, port: int, address: str) -> WSGIServer:
    """Serve /metrics for the shipper on a daemon thread; the server (its `server_port`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShipperCollector(shipper))
    server, _ = start_http_server(port, addr=address, registry=registry)
    return server
