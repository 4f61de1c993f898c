"""What the payload log costs: ml_app without it next to ml_app writing every request to it.

Usage: python -m bench.payload_log [--seconds 5] [--rounds 3]
Trains the demo store into a scratch folder and starts two ml_app servers (2 sync workers each,
the project's gunicorn.conf.py): one without ML_APP_PAYLOAD_LOG_DIR, one with it in the scratch
folder (one CloudEvents line per request, rows and outputs included). wrk drives iris with one
row and with a 100-row batch, 8 connections, alternating the two servers and flipping their
order every round; the ratio is taken within each round.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.bodies import BATCH_ROWS, bodies, path
from bench.servers import Server, running
from bench.side_by_side import measure, rounds_parser, scratch_store, turn_order
from bench.wrk import Wrk

MODEL = "iris"
SHAPES = ("single", "batch")


def compare(servers: dict[str, Server], args: argparse.Namespace, scratch: Path) -> dict:
    """wrk rounds over both servers for each shape, alternating; req/s per shape, per round."""
    wrk = Wrk(scratch, connections=8)
    results: dict[str, list[dict[str, float]]] = {shape: [] for shape in SHAPES}
    for shape in SHAPES:
        body = scratch / f"{shape}.json"
        body.write_bytes(bodies()[MODEL, shape])
        for number in range(args.rounds):
            rps = {}
            for name in turn_order(list(servers), number):
                figures = measure(servers[name], wrk, path(MODEL, shape), body, args.seconds)
                rps[name], rps[name + "_cpu_us"] = figures["rps"], figures["cpu_us"]
            results[shape].append(rps)
    return results


def report(results: dict, payloads: Path) -> None:
    """Print req/s and the on/off ratio per round and shape, and what was written."""
    for shape, rounds in results.items():
        rows = 1 if shape == "single" else BATCH_ROWS
        ratios = [entry["on"] / entry["off"] for entry in rounds]
        for number, (entry, ratio) in enumerate(zip(rounds, ratios, strict=True), 1):
            print(
                f"{rows:>3} row(s), round {number}: off {entry['off']:8,.0f} req/s "
                f"{entry['off_cpu_us']:6.0f} CPU us/req   on {entry['on']:8,.0f} req/s "
                f"{entry['on_cpu_us']:6.0f} CPU us/req   ratio {ratio:.3f}"
            )
        extra = [entry["on_cpu_us"] - entry["off_cpu_us"] for entry in rounds]
        cpu_ratio = [entry["on_cpu_us"] / entry["off_cpu_us"] for entry in rounds]
        print(
            f"{rows:>3} row(s): median ratio on / off: req/s {statistics.median(ratios):.3f}, "
            f"CPU per request {statistics.median(cpu_ratio):.3f} "
            f"({statistics.median(extra):+.0f} us)"
        )
    segments = list(payloads.glob("*"))
    size = sum(segment.stat().st_size for segment in segments)
    lines = sum(segment.read_bytes().count(b"\n") for segment in segments)
    print(f"payload log: {lines:,} events, {size / 1e6:,.1f} MB in {len(segments)} segments")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: req/s without and with the payload log, and their ratio."""
    parser = rounds_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    with scratch_store() as (scratch, store_root):
        store = {"ML_APP_STORE": str(store_root)}
        payloads = scratch / "payloads"
        servers = {
            "off": Server("off", None, 2, scratch, "/health/ready", **store),
            "on": Server(
                "on",
                None,
                2,
                scratch,
                "/health/ready",
                **store,
                ML_APP_PAYLOAD_LOG_DIR=str(payloads),
            ),
        }
        with running(*servers.values()):
            results = compare(servers, args, scratch)
        report(results, payloads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
