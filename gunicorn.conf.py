"""Gunicorn settings for ml_app, read from the environment (Heroku and container conventions).

Gunicorn treats every public module-level name here as a setting, so helpers are underscored.
"""

import gc
import os
from pathlib import Path

from ml_app.core.config import Settings
from ml_app.core.drain import DrainMarker
from ml_app.core.metrics_files import MetricsArchive, install_best_effort_files
from ml_app.core.payload_log import close_orphaned_segments
from ml_app.web.shutdown import drain_on_sigterm

# Numeric libraries (OpenBLAS, MKL, OpenMP) default to one thread per core in *every* worker;
# with N workers on N cores that is N*N threads fighting over the CPU. One each, set before the
# app (and numpy) is imported by the preloading master.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# --- Server socket -------------------------------------------------------------------------
# 0.0.0.0 inside containers and on Heroku; `make run` binds 127.0.0.1 via HOST.
# GUNICORN_BIND replaces both, e.g. unix:/run/ml_app/gunicorn.sock behind nginx (make run-proxy).
bind = os.environ.get("GUNICORN_BIND") or (
    f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
)
backlog = 2048

# --- Worker processes ----------------------------------------------------------------------
# Prediction is CPU-bound and each worker runs single-threaded numeric code, so one worker per
# core keeps every core busy without context-switch thrash (the 2*cores+1 rule is for I/O-bound
# apps). Typical range: 1-2x cores. WEB_CONCURRENCY is Heroku's and many platforms' convention.
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
# Gunicorn's sync worker, except that on SIGTERM it lets go of the listening socket at once,
# even in the middle of a request, so new connections are refused instead of hanging.
worker_class = "ml_app.web.shutdown.DrainingSyncWorker"
# A prediction that takes longer than this is stuck; the master replaces the worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM, in-flight requests get this long to finish before workers are killed.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Before that: seconds during which readiness answers 503 and everything is still served, so
# load balancers stop sending before the listener closes (Kubernetes: a few seconds, or a
# preStop hook; 0 stops at once). The marker file tells every worker; see ml_app.core.drain.
_drain_seconds = float(os.environ.get("GUNICORN_DRAIN_SECONDS", "0"))
keepalive = 5
# Recycle workers now and then to bound slow leaks; jitter keeps them from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))

# --- Application ---------------------------------------------------------------------------
wsgi_app = "ml_app.app:create_app()"
# Load the models once in the master; forked workers share those pages copy-on-write.
preload_app = True

# --- Logging -------------------------------------------------------------------------------
# The app writes one JSON line per request (with request id, model, version, rows). Gunicorn's
# own access log would be a second line per request, so it is off unless ACCESS_LOG names a
# file ("-" for stdout); when on, it is JSON too.
accesslog = os.environ.get("ACCESS_LOG") or None
access_log_format = (
    '{"time":"%(t)s","logger":"gunicorn.access","remote":"%(h)s","method":"%(m)s",'
    '"path":"%(U)s","status":%(s)s,"bytes":"%(B)s","duration_us":%(D)s,'
    '"request_id":"%({x-request-id}o)s","user_agent":"%(a)s"}'
)
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# --- Control socket --------------------------------------------------------------------------
# Gunicorn's runtime control socket defaults to one fixed path per user, so two servers on one
# host (replicas, tests, a benchmark's ceiling beside the app) would fight over it, and a
# read-only or HOME-less container user cannot create it. Off unless a path is given.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or "gunicorn.ctl"
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")

# --- Metrics -------------------------------------------------------------------------------
# Each worker writes its Prometheus samples to files in PROMETHEUS_MULTIPROC_DIR and /metrics
# merges them, so counts are exact across workers and survive a worker's death. The start command
# sets it before Python starts (prometheus_client picks its mode when first imported). Without it
# every scrape would see one worker's numbers, so refuse to start instead of serving wrong ones.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if not _metrics_dir:
    raise RuntimeError(
        "PROMETHEUS_MULTIPROC_DIR is not set: point it at an empty, writable directory private "
        "to this server (e.g. PROMETHEUS_MULTIPROC_DIR=/tmp/ml_app-metrics gunicorn -c ...)"
    )
# Rate limits in memory:// count per process: with N workers a client would get N times its
# limit. Refuse to start, as for a missing metrics directory, rather than enforce wrong numbers.
if (
    os.environ.get("ML_APP_RATE_LIMIT", "").strip()
    and os.environ.get("ML_APP_RATE_LIMIT_STORAGE_URI", "memory://").strip().startswith("memory://")
    and workers > 1
):
    raise RuntimeError(
        "ML_APP_RATE_LIMIT with memory:// storage counts per worker: set "
        "ML_APP_RATE_LIMIT_STORAGE_URI=redis://host:port/db or run one worker (WEB_CONCURRENCY=1)"
    )
# The preloaded app writes its first samples while loading, before any hook below runs.
os.makedirs(_metrics_dir, exist_ok=True)
# Private to this server like the metrics directory; the app reads ML_APP_DRAIN_FILE.
os.environ.setdefault("ML_APP_DRAIN_FILE", os.path.join(_metrics_dir, "draining"))
# prometheus_client grows its files with truncate and writes through mmap: on a full tmpfs that
# is SIGBUS, every new worker dead on its first write. Reserve the blocks first, so a full disk
# only costs the metrics that do not fit (logged, counted), never a worker or a prediction.
install_best_effort_files()
_metrics_archive = MetricsArchive(_metrics_dir)

# --- Payload log ---------------------------------------------------------------------------
# Each worker closes its own segment at exit (worker_exit); a worker that was SIGKILLed cannot,
# so the master closes it (child_exit), and at start those a crashed earlier run left open.
_payload_log_setting = Settings.from_env().payload_log_dir
_payload_log_dir = Path(_payload_log_setting).expanduser() if _payload_log_setting else None


def on_starting(server):
    """Empty the metrics directory: files from an earlier run would be counted again."""
    if server.master_pid:  # re-executed master (USR2): the old one's workers still write here
        return
    _metrics_archive.clear()
    DrainMarker(os.environ["ML_APP_DRAIN_FILE"]).clear()
    if _payload_log_dir is not None:
        close_orphaned_segments(_payload_log_dir)


def when_ready(server):
    """Poll the store in the master too; on SIGTERM, report not ready before stopping.

    A worker forked after a version's file was damaged cannot verify it again; from the
    master it inherits the copy its siblings loaded (and serve) before the damage. SIGTERM
    marks the server as draining and stops it GUNICORN_DRAIN_SECONDS later (ml_app.web.shutdown).
    """
    if server.cfg.preload_app:
        from ml_app.web.worker import start_master

        start_master(server.app.wsgi())
    if _drain_seconds > 0:
        drain_on_sigterm(server, _drain_seconds, DrainMarker(os.environ["ML_APP_DRAIN_FILE"]))


def pre_fork(server, worker):
    """Freeze the preloaded objects so a worker's garbage collector leaves their pages shared.

    A full collection in a worker writes to the header of every tracked object it visits; with
    the models and libraries preloaded that copied ~50 MiB per worker (measured by make bench).
    Frozen objects are never visited: the collector still runs for what workers allocate.
    """
    gc.freeze()


def post_worker_init(worker):
    """Bring the worker's models up to date, then publish their gauges; before any request.

    With preload_app the master's models are as old as the master: a worker forked later
    catches up with the store here, then polls it (hot reload). The samples the master wrote
    while loading were wiped with the rest of the directory; each worker writes its own.
    """
    from ml_app.web.worker import start_worker

    start_worker(worker.wsgi)


def worker_exit(server, worker):
    """Flush the worker's pending drift counts and close its payload log segment, ready to ship
    (recycled, SIGTERM drained, timed out)."""
    from ml_app.web.worker import stop_worker

    stop_worker(getattr(worker, "wsgi", None))


def child_exit(server, worker):
    """Fold a dead worker's counters into the archive files, drop its gauges; close its segment.

    Totals never drop, and recycled workers leave no files behind: the scrape stays as fast as
    on the first day and the metrics volume cannot fill up. A worker that could not close its
    payload log segment (SIGKILL, OOM) leaves it open: closed here, a partial last line trimmed.
    """
    _metrics_archive.fold(worker.pid)
    if _payload_log_dir is not None:
        close_orphaned_segments(_payload_log_dir, worker.pid)
