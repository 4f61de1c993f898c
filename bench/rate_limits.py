"""What Redis-backed rate limits cost: ml_app without a limit next to ml_app limited in Redis.

Usage: python -m bench.rate_limits [--seconds 5] [--rounds 3]
Trains the demo store into a scratch folder, starts redis-server (Debian's, installed with
apt-get when missing) on a free loopback port and two ml_app servers (2 sync workers each, the
project's gunicorn.conf.py): one without ML_APP_RATE_LIMIT, one with a limit no run reaches,
counted in that Redis. wrk drives one iris row at a time, 8 connections, alternating the two and
flipping their order every round; the ratio is taken within each round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.bodies import bodies
from bench.servers import Server, free_port, running
from bench.wrk import Wrk
from model.train import main as train_demo_store

MODEL = "iris"
LIMIT = "1000000000/day"  # counted on every request, never reached


def start_redis(scratch: Path) -> tuple[subprocess.Popen, str]:
    """redis-server on a free loopback port, no persistence; (process, storage URI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
        binary = shutil.which("redis-server") or "redis-server"
    port = free_port()
    arguments = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *arguments, "--dir", str(scratch)], stdout=subprocess.DEVNULL
    )
    time.sleep(0.5)  # the servers' first limited request would otherwise find it starting
    return process, f"redis://127.0.0.1:{port}/0"


def compare(servers: dict[str, Server], args: argparse.Namespace, scratch: Path) -> list[dict]:
    """wrk rounds over both servers, alternating; req/s of each per round."""
    wrk = Wrk(scratch, connections=8)
    body = scratch / "single.json"
    body.write_bytes(bodies()[MODEL, "single"])
    rounds = []
    for number in range(args.rounds):
        names = list(servers) if number % 2 == 0 else list(reversed(servers))
        rps = {}
        for name in names:
            figures = wrk.run(f"{servers[name].url}/models/{MODEL}/predict", body, args.seconds)
            if figures["errors"]:
                raise RuntimeError(f"{name}: {figures['errors']} errors")
            rps[name] = figures["rps"]
        rounds.append(rps)
    return rounds


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: req/s without and with Redis-backed limits, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ml_app-bench-") as folder:
        scratch = Path(folder)
        train_demo_store(["--store", str(scratch / "store")])
        redis, uri = start_redis(scratch)
        store = {"ML_APP_STORE": str(scratch / "store")}
        limited = {"ML_APP_RATE_LIMIT": LIMIT, "ML_APP_RATE_LIMIT_STORAGE_URI": uri}
        servers = {
            "unlimited": Server("unlimited", None, 2, scratch, "/health/ready", **store),
            "redis": Server("redis", None, 2, scratch, "/health/ready", **store, **limited),
        }
        try:
            with running(*servers.values()):
                rounds = compare(servers, args, scratch)
        finally:
            redis.terminate()
            redis.wait()
    ratios = [entry["redis"] / entry["unlimited"] for entry in rounds]
    for number, (entry, ratio) in enumerate(zip(rounds, ratios, strict=True), 1):
        print(
            f"round {number}: no limit {entry['unlimited']:8,.0f} req/s   "
            f"Redis limit {entry['redis']:8,.0f} req/s   ratio {ratio:.3f}"
        )
    print(f"median ratio Redis-limited / unlimited: {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
