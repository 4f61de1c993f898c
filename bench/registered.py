"""A forest registered through the admin API next to the built-in forest: req/s of each.

Usage: python -m bench.registered [--seconds 5] [--rounds 3] [--url URL --token TOKEN]
Without --url it trains the demo store into a scratch folder and starts ml_app on it (2 sync
workers, the project's gunicorn.conf.py, ML_APP_BACKEND=auto as in production); with --url it
registers into a server already running (e.g. the container) with that admin token. The
candidate is a 100-tree RandomForestClassifier for breast_cancer, like version 1 but with
another seed. wrk drives one row at a time, 8 connections, alternating the two versions and
flipping their order every round; the ratio is taken within each round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import skops.io
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier

from bench.bodies import bodies
from bench.servers import Server
from bench.wrk import Wrk
from model.train import main as train_demo_store

MODEL = "breast_cancer"
BUILT_IN = "1"


def register_candidate(url: str, token: str, scratch: Path) -> dict[str, Any]:
    """Register the candidate forest through the admin API; its 201 body."""
    x, y = datasets.load_breast_cancer(return_X_y=True)
    artifact = scratch / "candidate-forest.skops"
    skops.io.dump(RandomForestClassifier(n_estimators=100, random_state=1).fit(x, y), artifact)
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; '
            f'filename="{artifact.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + artifact.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(  # noqa: S310 - the URL the operator gave
        f"{url}/admin/models/{MODEL}/versions",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
        return orjson.loads(answer.read())


def served_backend(url: str, version: str) -> dict[str, Any]:
    """The backend /models/<name> says a version serves with (waits for the version)."""
    for _ in range(200):
        with urllib.request.urlopen(f"{url}/models/{MODEL}", timeout=10) as answer:  # noqa: S310
            described = orjson.loads(answer.read())
        found = [v for v in described["versions"] if v["version"] == version]
        if found and found[0]["state"] == "loaded":
            return found[0]["metadata"]["backend"]
        time.sleep(0.1)
    raise RuntimeError(f"version {version} of {MODEL} never became ready")


def compare(url: str, candidate: str, args: argparse.Namespace, scratch: Path) -> list[dict]:
    """wrk rounds over both versions, alternating; one dict per round."""
    wrk = Wrk(scratch, connections=8)
    body = scratch / "single.json"
    body.write_bytes(bodies()[MODEL, "single"])
    rounds = []
    for number in range(args.rounds):
        order = [BUILT_IN, candidate] if number % 2 == 0 else [candidate, BUILT_IN]
        rps = {}
        for version in order:
            figures = wrk.run(
                f"{url}/models/{MODEL}/versions/{version}/predict", body, args.seconds
            )
            if figures["errors"]:
                raise RuntimeError(f"version {version}: {figures['errors']} errors")
            rps[version] = figures["rps"]
        rounds.append({"built_in": rps[BUILT_IN], "registered": rps[candidate]})
    return rounds


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: the two versions' req/s and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", help="a running ml_app (default: start one on a fresh store)")
    parser.add_argument("--token", default="bench-admin-token", help="its ML_APP_ADMIN_TOKEN")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ml_app-bench-") as folder:
        scratch = Path(folder)
        server = None
        if args.url is None:
            train_demo_store(["--store", str(scratch / "store")])
            server = Server(
                "ml_app", None, 2, scratch, "/health/ready",
                ML_APP_STORE=str(scratch / "store"), ML_APP_ADMIN_TOKEN=args.token,
            )  # fmt: skip
            server.start()
        url = args.url or server.url
        try:
            registered = register_candidate(url, args.token, scratch)
            print(f"registered: {orjson.dumps(registered).decode()}")
            for version in (BUILT_IN, registered["version"]):
                print(f"version {version} serves with {served_backend(url, version)}")
            rounds = compare(url, registered["version"], args, scratch)
        finally:
            if server is not None:
                server.stop()
    for number, entry in enumerate(rounds, 1):
        ratio = entry["registered"] / entry["built_in"]
        print(
            f"round {number}: built-in {entry['built_in']:8,.0f} req/s   "
            f"registered {entry['registered']:8,.0f} req/s   ratio {ratio:.3f}"
        )
    ratios = [entry["registered"] / entry["built_in"] for entry in rounds]
    print(f"median ratio registered / built-in: {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
