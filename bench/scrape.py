"""Scrape time after many recycled workers: their files folded into the archive, or left alone.

Usage: python -m bench.scrape [--workers 10 2000] [--scrapes 5] [--under /dev/shm]
Each simulated worker does what a served worker does to the metrics files (the series of the
three demo models and the HTTP routes, written under its own pid by prometheus_client's
multiprocess values, as a forked worker writes them), then exits: `MetricsArchive.fold` runs as
gunicorn.conf.py's child_exit runs it, or, for comparison, only its gauges are dropped (as before
the archive). Prints the files left and the time /metrics takes to merge them (median).
The directories go under /dev/shm when it exists: a tmpfs, like the metrics volume in production
(on ext4, replacing a file by rename also flushes it, which a tmpfs never does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# prometheus_client picks multiprocess mode when first imported; the directory itself is read
# whenever a process opens its files, so each case below points it at its own.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.gettempdir()

import prometheus_client.values
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

_simulated_pid = [1]
# Every metric object created from here on writes under the simulated pid, not os.getpid().
prometheus_client.values.ValueClass = prometheus_client.values.MultiProcessValue(
    lambda: _simulated_pid[0]
)

from ml_app.core import metrics  # noqa: E402
from ml_app.core.metrics_files import MetricsArchive, scrape_lock  # noqa: E402

MODELS = {"iris": ["setosa", "versicolor", "virginica"], "breast_cancer": [0, 1], "diabetes": []}
ROUTES = (("POST", "/predict", 200), ("POST", "/predict", 422), ("GET", "/health/ready", 200))


def serve_as(pid: int) -> None:
    """Count a few requests as worker `pid` (its first write creates its files)."""
    _simulated_pid[0] = pid
    for method, route, status in ROUTES:
        metrics.observe_http(method, route, status, time.perf_counter())
    for name, classes in MODELS.items():
        series = metrics.ModelSeries(name, "1", classes)
        series.rows.observe(1)
        series.inference.observe(0.0001)
        series.classes[classes[0] if classes else ""].inc()
        metrics.MODEL_READY.labels(name, "1").set(1)


def scrape_seconds(directory: Path, scrapes: int) -> float:
    """Median time of what /metrics does in multiprocess mode: merge every file, render."""
    times = []
    for _ in range(scrapes):
        started = time.perf_counter()
        with scrape_lock(directory):
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(directory))
            generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_case(recycled: int, fold: bool, scrapes: int, under: str) -> dict[str, Any]:
    """Recycle `recycled` workers with two live ones beside them; measure the scrape."""
    with tempfile.TemporaryDirectory(prefix="ml_app-bench-scrape-", dir=under) as name:
        directory = Path(name)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = name
        archive = MetricsArchive(directory)
        fold_seconds = 0.0
        for pid in range(100_000, 100_000 + recycled):
            serve_as(pid)
            started = time.perf_counter()
            if fold:
                archive.fold(pid)
            else:
                mark_process_dead(pid, name)
            fold_seconds += time.perf_counter() - started
        for live in (1, 2):
            serve_as(live)
        files = len(list(directory.glob("*.db")))
        scrape = scrape_seconds(directory, scrapes)
    return {"files": files, "scrape_ms": scrape * 1e3, "exit_ms": fold_seconds / recycled * 1e3}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 2000])
    parser.add_argument("--scrapes", type=int, default=5)
    shm = "/dev/shm"  # noqa: S108 - only a parent for mkdtemp, which is private
    parser.add_argument("--under", default=shm if os.path.isdir(shm) else tempfile.gettempdir())
    args = parser.parse_args(argv)
    print(f"metrics directories under {args.under}")
    print("| recycled workers | handling | files | scrape ms | child_exit ms per worker |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for recycled in args.workers:
        for fold, handling in ((True, "folded into the archive"), (False, "left in place")):
            case = run_case(recycled, fold, args.scrapes, args.under)
            print(
                f"| {recycled:,} | {handling} | {case['files']:,} | {case['scrape_ms']:.1f} "
                f"| {case['exit_ms']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
