"""Prometheus metrics, defined once per process: HTTP by URL rule, and per model and version.

Under Gunicorn, prometheus_client runs in multiprocess mode (PROMETHEUS_MULTIPROC_DIR set by
the start command): every worker writes its samples to files and `/metrics` merges them all.
Without it (Flask's test client, `flask run`) the same objects count in-process. Either way the
metric objects are created once, at import, so any number of apps can share them.

The data plane calls `observed_predict(model, matrix)` instead of `model.predict(matrix)`; the
web layer counts each answered request with `observe_request`. Nothing here knows Flask or the
registry: the model state is published from a Snapshot.
"""

from __future__ import annotations

import re
import time
from collections import Counter as Tally
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from ml_app.core import metrics_files
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.snapshot import Snapshot

MODEL_LABELS = ("model", "version")
# Error codes that mean "the request did not fit the model" once a model was resolved.
VALIDATION_REASONS = ("bad_request", "invalid_input", "payload_too_large", "unsupported_media_type")
# Probes and scrapes arrive every few seconds and answer in microseconds: timed, they would drown
# the latency of real traffic. They are still counted.
_UNTIMED_ROUTE = re.compile(r"(^|/)(health|metrics|ping)(/|$)")
_UNMATCHED_ROUTE = "unmatched"  # 404/405: no URL rule matched, so no unbounded raw paths
# Any other method a client invents is counted as "other": labels must stay a bounded set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "ml_app_http_requests",
    "HTTP requests answered, by method, URL rule and status.",
    ("method", "route", "status"),
)
HTTP_LATENCY = Histogram(
    "ml_app_http_request_duration_seconds",
    "Time from the request reaching the app to its response, by URL rule (probes excluded).",
    ("method", "route"),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PREDICTIONS = Counter(
    "ml_app_predictions",
    "Rows predicted, by predicted class for classifiers (empty class for regressors).",
    (*MODEL_LABELS, "class"),
)
ROWS = Histogram(
    "ml_app_prediction_rows",
    "Rows per prediction request.",
    MODEL_LABELS,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
INFERENCE_SECONDS = Histogram(
    "ml_app_inference_duration_seconds",
    "Time spent in the model call alone (no parsing, validation or rendering).",
    MODEL_LABELS,
    # 10 us (a linear model on one row) to 1 s (a large forest on a big batch).
    buckets=(
        *(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3),
        *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    ),
)
VALIDATION_FAILURES = Counter(
    "ml_app_validation_failures",
    "Prediction requests refused before the model call, by reason (the error code).",
    (*MODEL_LABELS, "reason"),
)
# Gauges: a worker that dies takes its values with it (child_exit); the others still report.
MODEL_READY = Gauge(
    "ml_app_model_ready",
    "1 when the model version is loaded and serving, 0 when it failed to load.",
    MODEL_LABELS,
    multiprocess_mode="livemax",
)
MODEL_BACKEND = Gauge(
    "ml_app_model_backend",
    "1 for the inference backend serving the model version (onnx or sklearn), 0 for the other; "
    "sklearn where ONNX was wanted is a fallback, its reason on /models/<name>.",
    (*MODEL_LABELS, "backend"),
    multiprocess_mode="livemax",
)
MODEL_LOAD_SECONDS = Gauge(
    "ml_app_model_load_duration_seconds",
    "How long loading and verifying the model version took.",
    MODEL_LABELS,
    multiprocess_mode="livemax",
)


# --- Model lifecycle: loading and hot reload -----------------------------------------------
VERSION_LOAD_FAILURES = Counter(
    "ml_app_model_load_failures",
    "Attempts to load a model version that failed (integrity, version check, bad artifact).",
    MODEL_LABELS,
)
STORE_RELOADS = Counter(
    "ml_app_store_reloads",
    "Store changes a worker picked up: applied, or failed (the previous state kept serving).",
    ("outcome",),
)
RATE_LIMIT_DECISIONS = Counter(
    "ml_app_rate_limit_decisions",
    "Rate-limit decisions: allowed, limited, or store_down_allowed / store_down_refused.",
    ("outcome",),
)
ROUTING_PROBLEMS = Gauge(
    "ml_app_model_routing_problems",
    "Aliases, splits or shadows configured in the store but not in force (a version failed).",
    ("model",),
    multiprocess_mode="livemax",
)

# --- Shadow traffic (answers recorded, never returned) ----------------------------------------
SHADOW_PREDICTIONS = Counter(
    "ml_app_shadow_predictions",
    "Copies of requests sent to a shadow version, by outcome: ok, error, dropped (queue full).",
    (*MODEL_LABELS, "outcome"),
)
SHADOW_COMPARISONS = Counter(
    "ml_app_shadow_comparisons",
    "Rows a shadow version answered, by agreement with the version that served the caller.",
    (*MODEL_LABELS, "primary_version", "agreement"),
)
SHADOW_SECONDS = Histogram(
    "ml_app_shadow_inference_duration_seconds",
    "Time a shadow version took to predict one request (never seen by the caller).",
    MODEL_LABELS,
    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
FEATURE_LOOKUP_SECONDS = Histogram(
    "ml_app_feature_lookup_duration_seconds",
    "Time to look up entities' features in a version's feature source (one round trip).",
    ("model", "source"),
    # 100 us (Redis on loopback) to the largest ML_APP_FEATURE_STORE_TIMEOUT worth waiting for.
    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# --- Drift: live rows per reference bin, beside the reference (PSI in deploy/prometheus) --------
DRIFT_LABELS = (*MODEL_LABELS, "feature", "bin")
DRIFT_ROWS = Counter(
    "ml_app_drift_rows",
    "Predicted rows by the reference bin each feature's value fell in (below/above: outside the "
    "reference range); feature _prediction counts the predicted class or value bin.",
    DRIFT_LABELS,
)
DRIFT_REFERENCE_SHARE = Gauge(
    "ml_app_drift_reference_share",
    "Share of the reference rows in each bin, per feature (the version's metadata).",
    DRIFT_LABELS,
    multiprocess_mode="livemax",  # every worker sets the same value: one, not their sum
)

# --- The metrics files themselves ---------------------------------------------------------------
METRICS_WRITE_FAILURES = Counter(
    "ml_app_metrics_write_failures",
    "Metrics files the disk refused to create or grow (full or read-only): their new series "
    "count in the worker's memory only and are missing from /metrics.",
)


class ModelSeries:
    """One model version's series, resolved once so a request does no label lookups."""

    def __init__(self, name: str, version: str, class_labels: list[Any]) -> None:
        self._labels = (name, version)
        self.rows = ROWS.labels(*self._labels)
        self.inference = INFERENCE_SECONDS.labels(*self._labels)
        # Regressors predict no class: their rows count under the empty class.
        classes = class_labels or [""]
        self.classes = {label: PREDICTIONS.labels(*self._labels, str(label)) for label in classes}
        self.failures = {
            r: VALIDATION_FAILURES.labels(*self._labels, r) for r in VALIDATION_REASONS
        }

    def record(self, outputs: Outputs, rows: int) -> None:
        """Count one answered request: its rows and what was predicted."""
        self.rows.observe(rows)
        labels = outputs.labels
        if labels is None:
            self._class("").inc(rows)
        elif rows == 1:
            self._class(labels[0]).inc()
        else:
            for label, count in Tally(labels).items():
                self._class(label).inc(count)

    def _class(self, label: Any) -> Any:
        child = self.classes.get(label)
        if child is None:  # a label the metadata did not list: still counted, cached from now on
            child = self.classes[label] = PREDICTIONS.labels(*self._labels, str(label))
        return child


# Keyed by name and version, not by model object: a reloaded copy of a version shares its series.
_SERIES: dict[tuple[str, str], ModelSeries] = {}
_HTTP_SERIES: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}


def series_for(model: LoadedModel) -> ModelSeries:
    """The model version's series, created (at zero) on first use."""
    series = _SERIES.get((model.name, model.version))
    if series is None:
        series = ModelSeries(model.name, model.version, model.class_labels)
        _SERIES[(model.name, model.version)] = series
    return series


def observed_predict(model: LoadedModel, matrix: np.ndarray) -> Outputs:
    """`model.predict(matrix)`, recording inference time, rows and predictions."""
    series = series_for(model)
    started = time.perf_counter()
    outputs = model.predict(matrix)
    series.inference.observe(time.perf_counter() - started)
    series.record(outputs, len(matrix))
    return outputs


def publish_snapshot(snapshot: Snapshot) -> None:
    """Set every version's ready, load-time and backend gauges; create its series at zero.

    Called whenever a registry swaps in a snapshot, and again in each Gunicorn worker as it
    starts: the preloading master's samples are wiped with the rest of the directory.
    """
    for entry in snapshot.models.values():
        for version in entry.versions.values():
            MODEL_READY.labels(entry.name, version.version).set(1 if version.model else 0)
            MODEL_LOAD_SECONDS.labels(entry.name, version.version).set(version.load_seconds)
            if version.model:
                series_for(version.model)
                _publish_backend(version.model)
        if not entry.versions:  # the model's folder could not be read
            MODEL_READY.labels(entry.name, "").set(0)
        ROUTING_PROBLEMS.labels(entry.name).set(len(entry.problems))
    if snapshot.default_model not in snapshot.models:
        # Say so with a series: "no ready model" must be visible even with an empty store.
        MODEL_READY.labels(snapshot.default_model, "").set(0)


def _publish_backend(model: LoadedModel) -> None:
    for backend in ("onnx", "sklearn"):
        serving = 1 if model.backend.name == backend else 0
        MODEL_BACKEND.labels(model.name, model.version, backend).set(serving)


def _http_series(method: str, route: str | None, status: int) -> tuple[Any, Any]:
    key = (method, route, status)
    series = _HTTP_SERIES.get(key)
    if series is None:
        label = route or _UNMATCHED_ROUTE
        latency = None if _UNTIMED_ROUTE.search(label) else HTTP_LATENCY.labels(method, label)
        series = _HTTP_SERIES[key] = (HTTP_REQUESTS.labels(method, label, str(status)), latency)
    return series


def observe_http(method: str, rule: str | None, status: int, started: float | None) -> None:
    """Count one answered request by URL rule (None: no rule matched), and time it."""
    count, latency = _http_series(method if method in _METHODS else "other", rule, status)
    count.inc()
    failures = metrics_files.take_write_failures()
    if failures:  # counted here, not where they happen: that is inside prometheus_client's lock
        METRICS_WRITE_FAILURES.inc(failures)
    if latency is not None and started is not None:
        latency.observe(time.perf_counter() - started)


def count_refusal(model: LoadedModel, error_code: str | None) -> None:
    """A prediction request refused after its model was resolved counts as a validation failure."""
    if error_code in VALIDATION_REASONS:
        series_for(model).failures[error_code].inc()
