"""`python -m ml_app monitor report ...`: accuracy or MAE and drift per model version, offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from ml_app.core.config import Settings
from ml_app.core.payload_report import VersionReport, build_report
from ml_app.core.payload_segments import SegmentError, closed_segments, read_segment
from ml_app.core.store import ModelStore


@click.group("monitor")
def monitor() -> None:
    """Look back over the payload log."""


def _events(directory: Path, unreadable: list[str]) -> Iterator[dict[str, Any]]:
    """Every event of the closed segments; a bad line ends its segment's events, and is named."""
    for path in closed_segments(directory):
        try:
            yield from (item.event for item in read_segment(path))
        except FileNotFoundError:  # shipped and deleted since it was listed
            continue
        except SegmentError as exc:
            unreadable.append(str(exc))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _version_lines(tally: VersionReport) -> list[str]:
    data = tally.to_json()
    metric = "MAE" if tally.task == "regression" else "accuracy"
    value = data["mae"] if tally.task == "regression" else data["accuracy"]
    lines = [
        f"{tally.model} version {tally.version} ({tally.task or 'task unknown'})",
        f"  requests {tally.requests} (refused {tally.refused}, without data {tally.truncated})",
        f"  rows {tally.rows}, with truth {tally.rows_with_truth}, {metric} {_number(value)}",
    ]
    if data["psi"]:
        shown = ", ".join(f"{name} {_number(psi)}" for name, psi in data["psi"].items())
        lines.append(f"  PSI {shown}")
    else:
        lines.append("  PSI - (no reference: pass --store with this version)")
    return lines


@monitor.command()
@click.option(
    "--payloads",
    "directory",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A payload log directory (its closed *.jsonl segments are read).",
)
@click.option(
    "--store",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model store with each version's reference (default: ML_APP_STORE).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
def report(directory: Path, store: Path | None, as_json: bool) -> None:
    """Per model and version: rows, rows with truth, accuracy or MAE, and PSI per feature."""
    models = ModelStore(store or Settings.from_env().store)
    unreadable: list[str] = []
    result = build_report(_events(directory, unreadable), models)
    if as_json:
        document = {**result.to_json(), "unreadable_segments": unreadable}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    for key in sorted(result.versions):
        click.echo("\n".join(_version_lines(result.versions[key])))
    click.echo(
        f"refused before a model {result.without_model}, duplicates {result.duplicates}, "
        f"feedback unmatched {result.feedback_unmatched}, "
        f"feedback not matching the rows {result.feedback_mismatched}"
    )
    for problem in unreadable:
        click.echo(f"skipped: {problem}", err=True)
