"""The /metrics exporter's class: multiprocess scrapes under the metrics directory's lock."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics

from ml_app.core.config import multiprocess_directory
from ml_app.core.metrics_files import scrape_lock


class ArchiveAwareMetrics(PrometheusMetrics):
    """PrometheusMetrics whose multiprocess scrape never sees a dead worker's fold half done."""

    def generate_metrics(self, accept_header: Any = None, names: Any = None) -> tuple[str, str]:
        """Merge the metrics files under the directory's shared lock (a fold takes it exclusive).

        Only the families in `names` (`?name[]=...`) when given: the exporter's own multiprocess
        path cannot filter (it adds the collector to the filtered view, which refuses it).
        """
        directory = multiprocess_directory()
        if directory is None:
            return super().generate_metrics(accept_header, names)
        # The multiprocess collector cannot say its names up front: kept by the name filter only
        # when the registry is told to keep such collectors.
        registry = CollectorRegistry(support_collectors_without_names=True)
        MultiProcessCollector(registry, path=directory)
        source = registry.restricted_registry(names) if names else registry
        encode, content_type = choose_encoder(accept_header)
        with scrape_lock(directory):
            return encode(source).decode(), content_type
