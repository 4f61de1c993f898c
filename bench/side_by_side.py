"""Servers measured side by side in one run: each wrk run with the server CPU it cost, the order
of the servers turning every round, so neither always runs first on a warm or busy machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.servers import Server
from bench.wrk import Wrk


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
