"""Debian packages a test needs, installed with apt-get by the test setup when missing."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def ensure_commands(packages: tuple[str, ...], commands: tuple[str, ...]) -> list[str]:
    """Paths of `commands`; apt-get installs `packages` first when any command is missing."""
    found = [shutil.which(command) for command in commands]
    if all(found):
        return found  # type: ignore[return-value]
    if os.geteuid() != 0:
        pytest.fail(f"Install {' '.join(packages)} (apt-get needs root to do it here).")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    subprocess.run([*apt, "update"], check=True, capture_output=True, env=env, timeout=900)
    subprocess.run(
        [*apt, "install", "-y", "--no-install-recommends", *packages],
        check=True,
        capture_output=True,
        env=env,
        timeout=1200,
    )
    found = [shutil.which(command) for command in commands]
    assert all(found), f"apt-get installed {packages} but {commands} are not all on PATH"
    return found  # type: ignore[return-value]
