"""Extension objects, created unbound and bound to each app in create_app with init_app."""

from __future__ import annotations

from flask_cors import CORS

from ml_app.web.auth import require_metrics_token
from ml_app.web.exporter import ArchiveAwareMetrics

# Serves /metrics on the app's own port. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) each
# scrape merges the live workers' files and the archive of dead ones; otherwise it reads this
# process's registry. The base class does both, so the same object serves Gunicorn and the test
# client. Its default HTTP metrics are off: ml_app.core.metrics defines its own, once per
# process, labelled by URL rule (init_app on a second app would otherwise find them registered
# and skip that app).
exporter = ArchiveAwareMetrics.for_app_factory(
    export_defaults=False, metrics_decorator=require_metrics_token
)

# Bound only when ML_APP_CORS_ORIGINS names an origin; its options live in ml_app.web.cors.
cors = CORS()
