"""The /metrics exporter's class: multiprocess scrapes under the metrics directory's lock."""

from __future__ import annotations

from typing import Any

from prometheus_flask_exporter import PrometheusMetrics

from ml_app.core.config import multiprocess_directory
from ml_app.core.metrics_files import scrape_lock


class ArchiveAwareMetrics(PrometheusMetrics):
    """PrometheusMetrics whose multiprocess scrape never sees a dead worker's fold half done."""

    def generate_metrics(self, accept_header: Any = None, names: Any = None) -> tuple[str, str]:
        """Merge the metrics files under the directory's shared lock (a fold takes it exclusive)."""
        directory = multiprocess_directory()
        if directory is None:
            return super().generate_metrics(accept_header, names)
        with scrape_lock(directory):
            return super().generate_metrics(accept_header, names)
