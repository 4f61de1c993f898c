"""What API keys and Redis-backed rate limits cost, each next to ml_app without either.

Usage: python -m bench.rate_limits [--seconds 5] [--rounds 3] [--baseline CHECKOUT]
Trains the demo store into a scratch folder, starts redis-server (Debian's, installed with
apt-get when missing) on a free loopback port and three ml_app servers (2 sync workers each, the
project's gunicorn.conf.py): one with neither keys nor limits, one with API keys on (a keys file
of one key), one with a limit no run reaches counted in that Redis. wrk drives one iris row at a
time with the key in X-API-Key (ignored where keys are off), 8 connections, each server in turn,
the order rotating every round; the ratios are taken within each round. With --baseline (a
checkout of another commit, e.g. `git archive main | tar -x -C DIR`), a fourth server,
`redis-baseline`, serves the same limit in the same Redis with that checkout's code.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.bodies import bodies
from bench.servers import Server, running
from bench.side_by_side import measure, rounds_parser, scratch_store, turn_order
from bench.wrk import Wrk
from ml_app.core import apikeys
from tests.support.redis_server import RedisServer

MODEL = "iris"
LIMIT = "1000000000/day"  # counted on every request, never reached


def compare(
    servers: dict[str, Server], args: argparse.Namespace, scratch: Path, key: str
) -> list[dict]:
    """wrk rounds over every server, the order rotating each round; req/s of each per round."""
    wrk = Wrk(scratch, connections=8)
    body = scratch / "single.json"
    body.write_bytes(bodies()[MODEL, "single"])
    rounds = []
    for number in range(args.rounds):
        figures_of = {}
        for name in turn_order(list(servers), number):
            route = f"/models/{MODEL}/predict"
            figures = measure(servers[name], wrk, route, body, args.seconds, api_key=key)
            figures_of[name] = {"rps": figures["rps"], "cpu_us": figures["cpu_us"]}
        rounds.append(figures_of)
    return rounds


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: req/s without and with Redis-backed limits, and their ratio."""
    parser = rounds_parser(__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another commit's checkout, side by side")
    args = parser.parse_args(argv)
    with scratch_store() as (scratch, store_root), RedisServer(scratch) as redis:
        keys_file = scratch / "keys.json"
        key = apikeys.add_key(keys_file, "bench")
        store = {"ML_APP_STORE": str(store_root)}
        keyed = {"ML_APP_API_KEYS_FILE": str(keys_file)}
        limited = {"ML_APP_RATE_LIMIT": LIMIT, "ML_APP_RATE_LIMIT_STORAGE_URI": redis.url}
        servers = {
            "plain": Server("plain", None, 2, scratch, "/health/ready", **store),
            "keys": Server("keys", None, 2, scratch, "/health/ready", **store, **keyed),
            "redis": Server("redis", None, 2, scratch, "/health/ready", **store, **limited),
        }
        if args.baseline is not None:
            baseline = Server(
                "redis-baseline", None, 2, scratch, "/health/ready", **store, **limited
            )
            baseline.root = args.baseline.resolve()
            servers["redis-baseline"] = baseline
        with running(*servers.values()):
            rounds = compare(servers, args, scratch, key)
    report(rounds)
    return 0


def report(rounds: list[dict]) -> None:
    """Per round: req/s and server CPU per request of each, ratios to the plain one; medians."""
    names = [name for name in rounds[0] if name != "plain"]
    ratios: dict[str, list[float]] = {name: [] for name in names}
    extra_cpu: dict[str, list[float]] = {name: [] for name in names}
    for number, entry in enumerate(rounds, 1):
        plain = entry["plain"]
        for name, values in ratios.items():
            values.append(entry[name]["rps"] / plain["rps"])
            extra_cpu[name].append(entry[name]["cpu_us"] - plain["cpu_us"])
        print(
            f"round {number}: "
            + "   ".join(
                f"{name} {entry[name]['rps']:6,.0f} req/s {entry[name]['cpu_us']:4.0f} us CPU"
                for name in ("plain", *names)
            )
        )
    labels = {"keys": "keys on (auth alone)", "redis": "Redis-limited"}
    for name in names:
        label = labels.get(name, name)
        print(
            f"{label} / plain: median ratio {statistics.median(ratios[name]):.3f} "
            f"(rounds {', '.join(f'{r:.3f}' for r in ratios[name])}), "
            f"median extra server CPU {statistics.median(extra_cpu[name]):+.0f} us/request"
        )
    if "redis-baseline" in names:
        gains = [r / b for r, b in zip(ratios["redis"], ratios["redis-baseline"], strict=True)]
        print(
            f"Redis-limited / redis-baseline: median {statistics.median(gains):.2f}x "
            f"(rounds {', '.join(f'{gain:.2f}' for gain in gains)})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
