"""Shadow traffic: shadow versions predict a copy of each request, off the request path.

Jobs go into a bounded queue that one daemon thread per worker drains. Handing a job over never
blocks and never raises; when the queue is full the copy is dropped and counted. So a shadow
version that raises, hangs or crawls costs the caller nothing but a queue put, and at most
`queue_size` requests' worth of memory.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ml_app.core import metrics
from ml_app.core.model import LoadedModel, Outputs

log = logging.getLogger("ml_app.shadow")
# Regression answers within 1 % of the primary's count as agreeing.
RELATIVE_TOLERANCE = 0.01


@dataclass(frozen=True)
class ShadowJob:
    """One request's copy: the input, what the primary answered, and who shadows it."""

    shadows: tuple[LoadedModel, ...]
    matrix: np.ndarray
    primary: LoadedModel
    outputs: Outputs
    request_id: str | None = None


class ShadowRunner:
    """A bounded queue and one background thread per process that run shadow predictions."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._queue: queue.Queue[ShadowJob] = queue.Queue(queue_size)
        self._pid: int | None = None
        self._lock = threading.Lock()

    def submit(self, job: ShadowJob) -> None:
        """Hand a job to the shadow thread; never blocks, never raises."""
        try:
            self._ensure_thread()
            self._queue.put_nowait(job)
        except queue.Full:
            for model in job.shadows:
                metrics.SHADOW_PREDICTIONS.labels(model.name, model.version, "dropped").inc()
        except Exception:  # a shadow must never fail the caller's request
            log.exception("shadow job not submitted", extra={"request_id": job.request_id})

    def wait_idle(self) -> None:
        """Block until every job queued in this process has run (tests, orderly shutdown)."""
        if self._pid == os.getpid():
            self._queue.join()

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid != pid:  # first use in this process: threads do not survive a fork
                self._queue = queue.Queue(self.queue_size)
                worker = threading.Thread(
                    target=_drain, args=(self._queue,), name="ml_app-shadow", daemon=True
                )
                worker.start()
                self._pid = pid


def _drain(jobs: queue.Queue[ShadowJob]) -> None:
    while True:
        job = jobs.get()
        for model in job.shadows:
            run_shadow(model, job)
        jobs.task_done()


def run_shadow(model: LoadedModel, job: ShadowJob) -> None:
    """Predict the job with one shadow version and record how it compares; never raises."""
    started = time.perf_counter()
    try:
        outputs = model.predict(job.matrix)
        agreeing, rows = agreement(job.outputs, outputs)
    except Exception as exc:  # noqa: BLE001 - a failing shadow is recorded, never propagated
        metrics.SHADOW_PREDICTIONS.labels(model.name, model.version, "error").inc()
        log.warning(
            "shadow prediction failed: %s",
            str(exc) or type(exc).__name__,
            extra={"request_id": job.request_id, "fields": _fields(model, job)},
        )
        return
    seconds = time.perf_counter() - started
    metrics.SHADOW_PREDICTIONS.labels(model.name, model.version, "ok").inc()
    metrics.SHADOW_SECONDS.labels(model.name, model.version).observe(seconds)
    comparisons = metrics.SHADOW_COMPARISONS
    labels = (model.name, model.version, job.primary.version)
    comparisons.labels(*labels, "agree").inc(agreeing)
    comparisons.labels(*labels, "disagree").inc(rows - agreeing)
    fields = {
        **_fields(model, job),
        "agreeing_rows": agreeing,
        "latency_ms": round(seconds * 1000, 3),
    }
    log.info("shadow prediction", extra={"request_id": job.request_id, "fields": fields})


def agreement(primary: Outputs, shadow: Outputs) -> tuple[int, int]:
    """(rows where the shadow agrees with the primary, rows); ValueError on a shape mismatch."""
    if primary.labels is not None:
        theirs = shadow.labels if shadow.labels is not None else []
        if len(theirs) != len(primary.labels):
            raise ValueError(f"shadow answered {len(theirs)} rows for {len(primary.labels)}")
        return sum(a == b for a, b in zip(primary.labels, theirs, strict=True)), len(theirs)
    ours = np.asarray(primary.values, dtype=np.float64)
    theirs = np.asarray(shadow.values if shadow.values is not None else [], dtype=np.float64)
    if theirs.shape != ours.shape:
        raise ValueError(f"shadow answered {theirs.size} values for {ours.size}")
    return int(np.isclose(theirs, ours, rtol=RELATIVE_TOLERANCE, atol=0).sum()), ours.size


def _fields(model: LoadedModel, job: ShadowJob) -> dict[str, object]:
    return {
        "model": model.name,
        "version": model.version,
        "primary_version": job.primary.version,
        "rows": len(job.matrix),
    }
