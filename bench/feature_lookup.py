"""What a lookup by entity id adds: one iris row sent as features next to the same row by id.

Usage: python -m bench.feature_lookup [--seconds 5] [--rounds 3]
Trains the demo store into a scratch folder, starts redis-server (Debian's, installed with
apt-get when missing) on a free loopback port, seeds it with `features seed-demo --declare`
(version 2 of iris reads its features from that Redis) and starts ml_app (2 sync workers, the
project's gunicorn.conf.py). wrk with one connection (latency, not queueing) posts to
/models/iris/versions/2/predict either `{"features": row}` or `{"entities": [{"row_id": 0}]}`,
alternating the two and flipping their order every round; the added p50 is taken per round.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import orjson

from bench.servers import Server, running
from bench.side_by_side import measure, rounds_parser, scratch_store, turn_order
from bench.wrk import Wrk
from tests.support.redis_server import RedisServer

PATH = "/models/iris/versions/2/predict"
ROW_ID = 0
BODIES = {
    # Row 0 of the iris data set, as seed-demo writes it to Redis.
    "features": {"features": [5.1, 3.5, 1.4, 0.2]},
    "entity id": {"entities": [{"row_id": ROW_ID}]},
}


def seed(store: Path, redis_url: str) -> None:
    """The demo rows in Redis, and version 2 of each demo model declaring that Redis."""
    command = [sys.executable, "-m", "ml_app", "features", "seed-demo", "--redis", redis_url]
    subprocess.run([*command, "--store", str(store), "--declare"], check=True, capture_output=True)


def compare(server: Server, args: argparse.Namespace, scratch: Path) -> list[dict]:
    """wrk rounds over both bodies, alternating; p50 (us) and req/s of each per round."""
    wrk = Wrk(scratch, connections=1)
    files = {}
    for name, body in BODIES.items():
        files[name] = scratch / f"{name.replace(' ', '_')}.json"
        files[name].write_bytes(orjson.dumps(body))
    rounds = []
    for number in range(args.rounds):
        figures = {}
        for name in turn_order(list(BODIES), number):
            figures[name] = measure(server, wrk, PATH, files[name], args.seconds)
        rounds.append(figures)
    return rounds


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: p50 by features and by entity id, and the difference."""
    parser = rounds_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    with scratch_store() as (scratch, store), RedisServer(scratch) as redis:
        seed(store, redis.url)
        server = Server("features", None, 2, scratch, "/health/ready", ML_APP_STORE=str(store))
        with running(server):
            rounds = compare(server, args, scratch)
    added = []
    for number, entry in enumerate(rounds, 1):
        by_features, by_id = entry["features"], entry["entity id"]
        added.append(by_id["p50_us"] - by_features["p50_us"])
        print(
            f"round {number}: features p50 {by_features['p50_us']:5d} us "
            f"({by_features['rps']:6,.0f} req/s)   entity id p50 {by_id['p50_us']:5d} us "
            f"({by_id['rps']:6,.0f} req/s)   added {added[-1]:4d} us"
        )
    print(f"median p50 added by a one-entity Redis lookup: {statistics.median(added):.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
