"""`make bench`: ml_app against a bare-WSGI ceiling under the same Gunicorn settings, with wrk.

Usage: python -m bench.run [--smoke] [--seconds N] [--rounds N] [--workers N] [--connections N]
                           [--backends onnx,sklearn] [--no-textbook] [--no-memory] [--store PATH]
                           [--output FILE]
Each case (model x one row or a 100-row batch) is sent to the ceiling and to every contender in
turn, round after round (the order flips each round), so drifting load on the machine hits all
of them alike; ratios are taken within a round. Memory is the PSS of ml_app's processes with 1
and with 4 workers. Figures go to stdout (Markdown tables) and to a JSON file in bench/results/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench import report
from bench.bodies import BATCH_ROWS, bodies, path
from bench.servers import PROJECT_ROOT, Server, post, pss_kib, running
from bench.wrk import Wrk
from ml_app.core.config import Settings

RESULTS = PROJECT_ROOT / "bench" / "results"
BACKENDS = ("onnx", "sklearn")


class Bench:
    """One benchmark run: its options, scratch folder, wrk and the bodies it sends."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.wrk = Wrk(scratch, args.connections)
        self.bodies = bodies()
        self.body_files = {}
        for (model, shape), body in self.bodies.items():
            self.body_files[model, shape] = scratch / f"{model}-{shape}.json"
            self.body_files[model, shape].write_bytes(body)

    def ml_app(self, backend: str, workers: int) -> Server:
        """ml_app with one backend forced, so a silent fallback cannot pass for ONNX."""
        return Server(
            f"ml_app_{backend}",
            None,
            workers,
            self.scratch,
            "/health/live",
            ML_APP_BACKEND=backend,
            ML_APP_STORE=str(self.args.store),
        )

    def load(self, server: Server, case: tuple[str, str], seconds: int) -> dict[str, Any]:
        """One wrk run of a case against a server."""
        url = server.url + path(*case)
        cpu_before = server.cpu_seconds()
        figures = self.wrk.run(url, self.body_files[case], seconds)
        figures["server_cpu_s"] = server.cpu_seconds() - cpu_before
        # CPU per request is what other work on the machine disturbs least: it does not count
        # the time a process waited for a core.
        figures["server_cpu_us"] = figures["server_cpu_s"] / figures["requests"] * 1e6
        figures["wrk_cpu_us"] = figures["wrk_cpu_s"] / figures["requests"] * 1e6
        return figures

    def throughput(self) -> list[dict[str, Any]]:
        """Every case against the ceiling and the contenders, alternating, round after round."""
        workers, scratch = self.args.workers, self.scratch
        ceiling = Server("ceiling", "bench.ceiling:app", workers, scratch, None)
        contenders = [self.ml_app(backend, workers) for backend in self.args.backends]
        if self.args.textbook:
            textbook = Server("flask_textbook", "bench.textbook:app", workers, scratch, None)
            textbook.env["ML_APP_STORE"] = str(self.args.store)
            contenders.append(textbook)
        runs = []
        with running(ceiling, *contenders):
            for server in contenders[: len(self.args.backends)]:
                _check_ready(server)
            for server in (ceiling, *contenders):
                for case in self._cases(server):
                    post(server.url + path(*case), self.bodies[case])  # answers 200, or raises
                    if not self.args.smoke:
                        self.load(server, case, 1)  # warm-up: caches, ONNX sessions, page faults
            for round_no in range(self.args.rounds):
                for case in self.bodies:
                    order = [ceiling, *(s for s in contenders if case in self._cases(s))]
                    for server in order if round_no % 2 == 0 else reversed(order):
                        figures = self.load(server, case, self.args.seconds)
                        runs.append({"server": server.name, "case": case, "round": round_no})
                        runs[-1].update(figures)
                        print(report.run_line(runs[-1]), flush=True)
        return runs

    def memory(self) -> list[dict[str, Any]]:
        """PSS of ml_app's master and workers after serving the forest, with 1 and 4 workers."""
        measured = []
        for backend in self.args.backends if self.args.memory else ():
            for workers in (1, 4):
                server = self.ml_app(backend, workers)
                with running(server):
                    _check_ready(server)
                    _wait_for_workers(server, workers)
                    for case in (("breast_cancer", "single"), ("breast_cancer", "batch")):
                        self.load(server, case, self.args.memory_seconds)
                    pids = server.worker_pids()
                    master = pss_kib(server.process.pid)
                    per_worker = [pss_kib(pid) for pid in pids]
                measured.append(
                    {"backend": backend, "workers": workers, "master_kib": master,
                     "worker_kib": per_worker, "total_kib": master + sum(per_worker)}
                )  # fmt: skip
                print(report.memory_line(measured[-1]), flush=True)
        return measured

    def _cases(self, server: Server) -> list[tuple[str, str]]:
        # The textbook app takes one row under `features`, nothing else.
        if server.name == "flask_textbook":
            return [case for case in self.bodies if case[1] == "single"]
        return list(self.bodies)


def _check_ready(server: Server) -> None:
    """ml_app serves every model with the forced backend, or the run stops here, saying why."""
    try:
        with urllib.request.urlopen(server.url + "/health/ready", timeout=10):  # noqa: S310 - http://127.0.0.1
            return
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{server.name} is not ready: {exc.read().decode()}") from exc


def _wait_for_workers(server: Server, workers: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(server.worker_pids()) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not start {workers} workers")
        time.sleep(0.1)


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per server and case; the ratio to the ceiling is taken within each round."""
    ceiling = {(r["case"], r["round"]): r["rps"] for r in runs if r["server"] == "ceiling"}
    groups: dict[tuple[str, tuple[str, str]], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["server"], run["case"]), []).append(run)
    summary = []
    for (server, case), group in groups.items():
        ratios = [r["rps"] / ceiling[case, r["round"]] for r in group]
        summary.append(
            {
                "server": server,
                "model": case[0],
                "rows": 1 if case[1] == "single" else BATCH_ROWS,
                "rps": statistics.median(r["rps"] for r in group),
                "ratio": statistics.median(ratios),
                "p50_ms": statistics.median(r["p50_us"] for r in group) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in group) / 1000,
                "server_cpu_us": statistics.median(r["server_cpu_us"] for r in group),
                "wrk_cpu_us": statistics.median(r["wrk_cpu_us"] for r in group),
                "errors": sum(r["errors"] for r in group),
                "runs": len(group),
            }
        )
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; --smoke shrinks everything to a few seconds per server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 s runs, 1 round, no textbook app")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="Gunicorn workers, every server")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (1 thread)")
    parser.add_argument(
        "--backends",
        type=lambda text: tuple(text.split(",")),
        default=BACKENDS,
        help="ml_app backends to run, comma-separated (default: onnx,sklearn)",
    )
    parser.add_argument("--no-textbook", dest="textbook", action="store_false")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--store", type=Path, default=None, help="default: ML_APP_STORE")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/")
    args = parser.parse_args(argv)
    if not set(args.backends) <= set(BACKENDS):
        parser.error(f"--backends takes {', '.join(BACKENDS)}")
    args.store = (args.store or Settings.from_env().store).resolve()
    args.memory_seconds = 2
    if args.smoke:
        args.seconds, args.rounds, args.textbook, args.memory_seconds = 1, 1, False, 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "smoke" if args.smoke else "bench"
    args.output = args.output or RESULTS / f"{kind}-{stamp}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    conditions = report.conditions(args)
    with tempfile.TemporaryDirectory(prefix="ml_app-bench-") as scratch:
        bench = Bench(args, Path(scratch))
        runs = bench.throughput()
        memory = bench.memory()
    conditions.update(report.load_after())
    summary = summarise(runs)
    result = {"conditions": conditions, "summary": summary, "memory": memory, "runs": runs}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report.tables(summary, memory, conditions))
    print(f"\nresults: {args.output}")
    failed = [row for row in summary if row["errors"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
