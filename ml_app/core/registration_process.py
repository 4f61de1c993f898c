"""Register a version in a short-lived child process: `python -m ml_app models register --json`.

Converting to ONNX imports skl2onnx and onnx (tens of MB that stay resident once imported); a
serving worker that registered in process would carry them until it exits. The child does the
whole registration (load, validate, convert, parity-check, write) exactly as an operator's
command does, and exits; the worker reads its one-line JSON answer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from ml_app.core.config import Settings, child_environment
from ml_app.core.errors import RegistrationTimeout
from ml_app.core.lifecycle import (
    LifecycleError,
    NewVersion,
    NotInStore,
    Registration,
    check_new_version_names,
)

# What the child must see as the server does: where the store is and what loading allows.
_POLICY_SETTINGS = ("store", "allow_version_mismatch", "trusted_types", "backend")
# Below Gunicorn's default worker timeout (30 s): a stuck child fails the request, not the worker.
CHILD_TIMEOUT_SECONDS = 25.0


class RegistrationCrashed(RuntimeError):
    """The registering process failed without an answer (a server fault, not the upload's)."""


def register_in_child(settings: Settings, new: NewVersion, metadata_file: Path) -> Registration:
    """Run the registration command for `new` (metadata already in `metadata_file`)."""
    check_new_version_names(new)  # here too: a name the command line cannot carry (NUL)
    command = [sys.executable, "-m", "ml_app", "models", "--store", str(settings.store)]
    command += ["register", new.name, str(new.artifact), "--json", "--metadata", str(metadata_file)]
    if new.version:
        command += ["--version", new.version]
    if new.alias:
        command += ["--alias", new.alias]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=CHILD_TIMEOUT_SECONDS,
            env=child_environment(settings, _POLICY_SETTINGS),
            check=False,
        )
    except subprocess.TimeoutExpired:
        # subprocess.run killed the child. A version appears by one final rename, so the store
        # holds it whole or not at all (an alias may be missing): the client looks, then retries.
        raise RegistrationTimeout(
            f"Registration did not finish within {CHILD_TIMEOUT_SECONDS:g} s (the server is "
            f"busy): see GET /admin/models/{new.name} for what the store holds, then try again."
        ) from None
    try:
        answer = orjson.loads(done.stdout.splitlines()[-1])
    except (IndexError, orjson.JSONDecodeError):
        stderr = done.stderr.decode(errors="replace").strip().splitlines()
        raise RegistrationCrashed(
            f"registration exited {done.returncode}: {stderr[-1] if stderr else 'no output'}"
        ) from None
    if done.returncode == 0:
        path = settings.store / answer["name"] / answer["version"]
        return Registration(
            answer["name"], answer["version"], path, answer["sha256"], answer["backend"]
        )
    if answer.get("not_found"):
        raise NotInStore(answer["error"])
    raise LifecycleError(answer["error"])
