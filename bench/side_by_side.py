"""Servers measured side by side in one run: each wrk run with the server CPU it cost, the order
of the servers turning every round, so neither always runs first on a warm or busy machine."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.servers import Server
from bench.wrk import Wrk
from model.train import main as train_demo_store


@contextmanager
def scratch_store(store: Path | None = None) -> Iterator[tuple[Path, Path]]:
    """A scratch folder, removed afterwards, and a store: `store`, else the demo models trained
    into the scratch folder."""
    with tempfile.TemporaryDirectory(prefix="ml_app-bench-") as folder:
        scratch = Path(folder)
        if store is None:
            store = scratch / "store"
            train_demo_store(["--store", str(store)])
        yield scratch, store


def rounds_parser(description: str) -> argparse.ArgumentParser:
    """A parser with `--seconds` per wrk run and `--rounds`, as every side-by-side bench has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def turn_order(names: list[str], round_number: int) -> list[str]:
    """The names rotated by the round's number: each goes first in turn."""
    shift = round_number % len(names)
    return names[shift:] + names[:shift]


def measure(
    server: Server, wrk: Wrk, path: str, body: Path, seconds: int, **wrk_options: Any
) -> dict[str, Any]:
    """One wrk run on `server`: wrk's figures plus `cpu_us`, the server's CPU per request (which
    other work on the machine moves far less than req/s). A run with errors is refused."""
    cpu_before = server.cpu_seconds()
    figures = wrk.run(server.url + path, body, seconds, **wrk_options)
    if figures["errors"]:
        raise RuntimeError(f"{server.name} {path}: {figures['errors']} errors")
    used = server.cpu_seconds() - cpu_before
    return {**figures, "cpu_us": used / figures["requests"] * 1e6}
