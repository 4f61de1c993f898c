"""The on-disk model store: layout, atomic writes, integrity checks and safe loading."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sklearn
import skops.io

METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
SKOPS_ARTIFACT = "model.skops"
# Files that run code when loaded; read only when the operator opts in.
PICKLE_ARTIFACTS = ("model.joblib", "model.pkl", "model.pickle")
# scikit-learn's own compiled types that skops asks callers to trust explicitly. They hold
# arrays, not code; anything outside this list must be trusted by the operator.
BUILTIN_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StoreError(Exception):
    """A model version cannot be read or trusted; the message says why, for operators."""


@dataclass(frozen=True)
class LoadPolicy:
    """What the operator allows when loading artifacts."""

    allow_version_mismatch: bool = False
    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = ()


def is_valid_name(name: str) -> bool:
    """True for a model name or version usable as one path component."""
    return bool(_NAME.match(name))


def version_sort_key(version: str) -> tuple[int, int, str]:
    """Numeric versions sort numerically and after any non-numeric ones."""
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """Reads and writes model/store/<name>/<version>/{model.skops,metadata.json}."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def model_names(self) -> list[str]:
        """Names of the models in the store; raises StoreError when the store is unreadable."""
        if not self.root.is_dir():
            raise StoreError(f"model store {self.root} does not exist")
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_valid_name(p.name))

    def versions(self, name: str) -> list[str]:
        """Versions of one model, oldest first."""
        folder = self.root / name
        found = [p.name for p in folder.iterdir() if p.is_dir() and is_valid_name(p.name)]
        return sorted(found, key=version_sort_key)

    def aliases(self, name: str) -> dict[str, str]:
        """The model's alias -> version map ({} when it has none)."""
        path = self.root / name / ALIASES_FILE
        if not path.exists():
            return {}
        try:
            aliases = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(aliases, dict):
            raise StoreError(f"{path} must hold a JSON object of alias -> version")
        return {str(k): str(v) for k, v in aliases.items()}

    def read_metadata(self, name: str, version: str) -> dict[str, Any]:
        """The version's metadata.json as a dict."""
        path = self.root / name / version / METADATA_FILE
        try:
            metadata = orjson.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise StoreError(f"{path} is missing") from exc
        except orjson.JSONDecodeError as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(metadata, dict):
            raise StoreError(f"{path} must hold a JSON object")
        return metadata

    def load_estimator(self, name: str, version: str, metadata: dict, policy: LoadPolicy) -> Any:
        """Verify the artifact (sha256, scikit-learn version) and load it safely."""
        folder = self.root / name / version
        artifact = self._artifact_path(folder, policy)
        expected = metadata.get("sha256")
        if not expected:
            raise StoreError(f"{folder / METADATA_FILE} has no sha256 for {artifact.name}")
        actual = sha256_of(artifact)
        if actual != expected:
            raise StoreError(
                f"{artifact} failed its integrity check: sha256 is {actual}, "
                f"metadata says {expected}"
            )
        _check_sklearn_version(metadata, policy)
        if artifact.name == SKOPS_ARTIFACT:
            return _load_skops(artifact, policy)
        with artifact.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - opt-in via ML_APP_ALLOW_PICKLE

    def write_version(self, name: str, version: str, estimator: Any, metadata: dict) -> Path:
        """Write a new version atomically: a reader sees all of it or none of it."""
        if not (is_valid_name(name) and is_valid_name(version)):
            raise StoreError(f"invalid model name or version: {name!r}/{version!r}")
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        final = model_dir / version
        if final.exists():
            raise StoreError(f"{final} already exists; versions are immutable")
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
        try:
            skops.io.dump(estimator, staging / SKOPS_ARTIFACT)
            metadata = {**metadata, "sha256": sha256_of(staging / SKOPS_ARTIFACT)}
            (staging / METADATA_FILE).write_bytes(
                orjson.dumps(metadata, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
            )
            # mkdtemp makes it owner-only; the server may run as another user (containers).
            os.chmod(staging, 0o755)  # noqa: S103
            os.rename(staging, final)  # atomic on one filesystem; fails if final appeared
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def _artifact_path(self, folder: Path, policy: LoadPolicy) -> Path:
        if (folder / SKOPS_ARTIFACT).exists():
            return folder / SKOPS_ARTIFACT
        for candidate in PICKLE_ARTIFACTS:
            if (folder / candidate).exists():
                if not policy.allow_pickle:
                    raise StoreError(
                        f"{folder / candidate} is a pickle file, which can run arbitrary code when "
                        "loaded; set ML_APP_ALLOW_PICKLE=true to trust it"
                    )
                return folder / candidate
        raise StoreError(f"{folder} has no model artifact ({SKOPS_ARTIFACT})")


def _check_sklearn_version(metadata: dict, policy: LoadPolicy) -> None:
    trained = str(metadata.get("versions", {}).get("sklearn", ""))
    if _minor(trained) == _minor(sklearn.__version__) or policy.allow_version_mismatch:
        return
    raise StoreError(
        f"model was trained with scikit-learn {trained or 'unknown'} but this server runs "
        f"{sklearn.__version__}; predictions may differ. Retrain it, or set "
        "ML_APP_ALLOW_VERSION_MISMATCH=true to load it anyway"
    )


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _load_skops(artifact: Path, policy: LoadPolicy) -> Any:
    untrusted = skops.io.get_untrusted_types(file=artifact)
    trusted = BUILTIN_TRUSTED_TYPES + policy.trusted_types
    refused = [t for t in untrusted if t not in trusted]
    if refused:
        raise StoreError(
            f"{artifact} contains types that are not trusted: {', '.join(refused)}; list them in "
            "ML_APP_TRUSTED_TYPES if you trust this file"
        )
    return skops.io.load(artifact, trusted=list(untrusted) or None)
