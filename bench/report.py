"""What a benchmark run prints and records: the conditions, one line per run, Markdown tables."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from importlib.metadata import version
from typing import Any

from bench.servers import PROJECT_ROOT

_LABELS = {
    "ceiling": "bare WSGI ceiling",
    "ml_app_onnx": "ml_app, ONNX Runtime",
    "ml_app_sklearn": "ml_app, scikit-learn",
    "flask_textbook": "textbook Flask (label only)",
}
_MIB = 1024


def conditions(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures depend on: machine, load, versions, settings."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,  # outside a git checkout the commit is simply left empty
    ).stdout.strip()
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "python": platform.python_version(),
        "packages": {
            name: version(name)
            for name in ("gunicorn", "Flask", "scikit-learn", "onnxruntime", "numpy", "orjson")
        },
        "gunicorn": {"config": "gunicorn.conf.py", "workers": args.workers, "max_requests": 0},
        "wrk": {"threads": 1, "connections": args.connections, "seconds": args.seconds},
        "rounds": args.rounds,
        "smoke": args.smoke,
    }


def load_after() -> dict[str, Any]:
    """The machine's load average when the run ended (other work skews the figures)."""
    return {"load_average_after": os.getloadavg()}


def run_line(run: dict[str, Any]) -> str:
    """One wrk run, as it finishes."""
    model, shape = run["case"]
    return (
        f"round {run['round']} {run['server']:<15} {model:<13} {shape:<6} "
        f"{run['rps']:9.0f} req/s  p50 {run['p50_us'] / 1000:6.2f} ms  "
        f"p99 {run['p99_us'] / 1000:6.2f} ms  server CPU {run['server_cpu_us']:5.0f} us/req  "
        f"errors {run['errors']}"
    )


def memory_line(entry: dict[str, Any]) -> str:
    """One memory measurement, as it finishes."""
    workers = ", ".join(f"{kib / _MIB:.1f}" for kib in entry["worker_kib"])
    return (
        f"memory {entry['backend']:<8} {entry['workers']} worker(s): master "
        f"{entry['master_kib'] / _MIB:.1f} MiB, workers [{workers}] MiB PSS"
    )


def tables(summary: list[dict[str, Any]], memory: list[dict[str, Any]], cond: dict) -> str:
    """The throughput and memory tables in Markdown, as bench/README.md shows them."""
    lines = [
        f"\n{cond['cpus']} CPUs, load average {cond['load_average_before'][0]:.2f} before, "
        f"{cond['load_average_after'][0]:.2f} after; wrk 1 thread, {cond['wrk']['connections']} "
        f"connections, {cond['wrk']['seconds']} s x {cond['rounds']} rounds; Gunicorn "
        f"{cond['gunicorn']['workers']} sync workers, every server.\n",
        "| model | rows | server | req/s | x ceiling | p50 ms | p99 ms | server CPU us/req |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = list(_LABELS)
    for row in sorted(summary, key=lambda r: (r["model"], r["rows"], order.index(r["server"]))):
        lines.append(
            f"| {row['model']} | {row['rows']} | {_LABELS[row['server']]} | {row['rps']:,.0f} | "
            f"{row['ratio']:.2f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['server_cpu_us']:.0f} |"
        )
    lines += [
        "",
        "| backend | workers | master PSS MiB | workers PSS MiB | total MiB | per extra worker |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals = {(m["backend"], m["workers"]): m["total_kib"] for m in memory}
    for entry in memory:
        one = totals.get((entry["backend"], 1))
        extra = None
        if entry["workers"] > 1 and one is not None:
            extra = (entry["total_kib"] - one) / (entry["workers"] - 1)
        lines.append(
            f"| {entry['backend']} | {entry['workers']} | {entry['master_kib'] / _MIB:.1f} | "
            f"{sum(entry['worker_kib']) / _MIB:.1f} | {entry['total_kib'] / _MIB:.1f} | "
            + (f"{extra / _MIB:.1f} MiB |" if extra is not None else "- |")
        )
    return "\n".join(lines)
