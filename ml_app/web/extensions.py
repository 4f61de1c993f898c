"""Extension objects, created unbound and bound to each app in create_app with init_app."""

from __future__ import annotations

from typing import Any

from prometheus_flask_exporter import PrometheusMetrics

from ml_app.core.config import multiprocess_directory
from ml_app.core.metrics_files import scrape_lock
from ml_app.web.auth import require_metrics_token


class ArchiveAwareMetrics(PrometheusMetrics):
    """PrometheusMetrics whose multiprocess scrape never sees a dead worker's fold half done."""

    def generate_metrics(self, accept_header: Any = None, names: Any = None) -> tuple[str, str]:
        """Merge the metrics files under the directory's shared lock (folds take it exclusive)."""
        directory = multiprocess_directory()
        if directory is None:
            return super().generate_metrics(accept_header, names)
        with scrape_lock(directory):
            return super().generate_metrics(accept_header, names)


# Serves /metrics on the app's own port. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) each
# scrape merges the files of every worker, alive or dead; otherwise it reads this process's
# registry. The base class does both, so the same object serves Gunicorn and the test client.
# Its default HTTP metrics are off: ml_app.core.metrics defines its own, once per process,
# labelled by URL rule (init_app on a second app would otherwise find them registered and
# skip that app).
exporter = ArchiveAwareMetrics.for_app_factory(
    export_defaults=False, metrics_decorator=require_metrics_token
)
