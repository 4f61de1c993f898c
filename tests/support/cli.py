"""Run the `models` command on a store: in this process, or as an operator would, in its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from ml_app.ops.cli import main
from tests.support.server import PROJECT_ROOT, clean_environment


def models_cli(store: Path, *args: str) -> Result:
    """`python -m ml_app models --store <store> ...` through click's runner, in this process."""
    return CliRunner().invoke(main, ["models", "--store", str(store), *args])


def models_command(store: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The same command in a process of its own; raises if it fails."""
    return subprocess.run(
        [sys.executable, "-m", "ml_app", "models", "--store", str(store), *args],
        cwd=PROJECT_ROOT,
        env=clean_environment(),
        check=True,
        capture_output=True,
        timeout=120,
    )
