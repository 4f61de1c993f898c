"""What drift counting costs: ml_app with ML_APP_DRIFT on next to the same server with it off.

Usage: python -m bench.drift [--seconds 5] [--rounds 3] [--store PATH]
Trains the demo store into a scratch folder (unless --store is given) and starts two ml_app
servers (2 sync workers each, the project's gunicorn.conf.py) that differ only in ML_APP_DRIFT.
wrk drives each case (iris: 4 features; breast_cancer: 30; one row, a 100-row batch), 8
connections, alternating the two servers and flipping their order every round; the ratio
drift on / drift off is taken within each round and its median reported. Then, in this process,
the time counting takes inside real requests, and its share of each request.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import timeit
from pathlib import Path

from bench.bodies import BATCH_ROWS, bodies, path
from bench.servers import Server, running
from bench.side_by_side import measure, rounds_parser, scratch_store, turn_order
from bench.wrk import Wrk
from ml_app import create_app

SIDES = ("off", "on")
CASES = (
    ("iris", "single"),
    ("iris", "batch"),
    ("breast_cancer", "single"),
    ("breast_cancer", "batch"),
)


def compare(servers: dict[str, Server], args: argparse.Namespace, scratch: Path) -> dict:
    """case -> req/s of each server, one entry per round (alternating servers)."""
    wrk = Wrk(scratch, connections=8)
    rounds: dict[tuple[str, str], list[dict[str, float]]] = {case: [] for case in CASES}
    for case, body in bodies().items():
        if case not in rounds:
            continue
        body_file = scratch / f"{case[0]}-{case[1]}.json"
        body_file.write_bytes(body)
        for number in range(args.rounds):
            rps = {}
            for name in turn_order(list(servers), number):
                figures = measure(servers[name], wrk, path(*case), body_file, args.seconds)
                rps[name], rps[f"{name}_cpu_us"] = figures["rps"], figures["cpu_us"]
            rounds[case].append(rps)
    return rounds


def in_process_cost(store_root: Path) -> None:
    """Print the time drift counting takes inside real requests (Flask's test client).

    The app's recorder is wrapped with a timer: its median per request, beside the whole
    request's mean time, is the counting's share, which the load of a busy machine blurs far
    less than a throughput ratio.
    """
    app = create_app({"store": store_root, "log_level": "CRITICAL"})
    recorder, client = app.extensions["ml_app"].drift, app.test_client()
    record, spent = recorder.record, []

    def timed_record(*args: object) -> None:
        started = time.perf_counter()
        record(*args)
        spent.append(time.perf_counter() - started)

    recorder.record = timed_record
    print(
        "\n| model | rows | drift counting, µs per request (median) | request, µs (mean) | share |"
    )
    print("| --- | --- | --- | --- | --- |")
    for case in CASES:
        post = functools.partial(
            client.post, path(*case), data=bodies()[case], content_type="application/json"
        )
        spent.clear()
        calls = 3000 if case[1] == "single" else 500
        request = timeit.timeit(post, number=calls) / calls
        counting = statistics.median(spent)
        rows = BATCH_ROWS if case[1] == "batch" else 1
        print(
            f"| {case[0]} | {rows} | {counting * 1e6:.1f} | {request * 1e6:.0f} "
            f"| {counting / request:.1%} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: req/s with drift counting off and on, and their ratio."""
    parser = rounds_parser(__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="default: train into scratch")
    args = parser.parse_args(argv)
    with scratch_store(args.store) as (scratch, store):
        env = {"ML_APP_STORE": str(store)}
        servers = {
            "off": Server("drift_off", None, 2, scratch, "/health/ready", **env, ML_APP_DRIFT="0"),
            "on": Server("drift_on", None, 2, scratch, "/health/ready", **env, ML_APP_DRIFT="1"),
        }
        with running(*servers.values()):
            rounds = compare(servers, args, scratch)
        print_throughput(rounds)
        in_process_cost(store)
    return 0


def print_throughput(rounds: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    """The Markdown table of req/s with drift off and on, per case."""
    print(
        "| model | rows | drift off req/s | drift on req/s | ratio on/off per round | median "
        "| server CPU µs/request off / on |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (model, shape), entries in rounds.items():
        ratios = [entry["on"] / entry["off"] for entry in entries]
        off = statistics.median(entry["off"] for entry in entries)
        on = statistics.median(entry["on"] for entry in entries)
        rows = BATCH_ROWS if shape == "batch" else 1
        each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        median = statistics.median(ratios)
        cpu = [statistics.median(entry[f"{name}_cpu_us"] for entry in entries) for name in SIDES]
        print(
            f"| {model} | {rows} | {off:,.0f} | {on:,.0f} | {each} | {median:.3f} "
            f"| {cpu[0]:.0f} / {cpu[1]:.0f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
