"""Test helpers that add versions to a model store the way a registration would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson

from ml_app.core import lifecycle
from ml_app.core.store import ModelStore


def add_version(
    root: Path,
    name: str,
    version: str,
    source: str = "1",
    *,
    sklearn: str | None = None,
    corrupt: bool = False,
) -> Path:
    """Copy version `source` to `version` atomically; optionally make it fail to load.

    `sklearn` records another training scikit-learn version (refused on load: fails to verify);
    `corrupt` damages the artifact (fails its sha256 integrity check).
    """
    staging = root / name / f".{version}-staging"
    shutil.copytree(root / name / source, staging)
    metadata = orjson.loads((staging / "metadata.json").read_bytes())
    metadata["version"] = version
    if sklearn:
        metadata["versions"]["sklearn"] = sklearn
    (staging / "metadata.json").write_bytes(orjson.dumps(metadata))
    if corrupt:
        artifact = staging / "model.skops"
        artifact.write_bytes(b"garbage" + artifact.read_bytes())
    final = root / name / version
    os.rename(staging, final)
    return final


def route_iris_everywhere(root: Path) -> None:
    """Iris version 2 beside 1, with a production alias, a 3:1 split and 2 as shadow."""
    add_version(root, "iris", "2")
    models = ModelStore(root)
    lifecycle.set_alias(models, "iris", "production", "1")
    lifecycle.set_split(models, "iris", {"1": 3, "2": 1})
    lifecycle.set_shadow(models, "iris", ["2"])
