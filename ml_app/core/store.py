"""The on-disk model store: layout, atomic writes, integrity checks and safe loading."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import skops.io

from ml_app.core.errors import StoreError

if TYPE_CHECKING:
    from ml_app.core.config import Settings

METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
# Split, shadow and alias history (see ml_app.core.routing); aliases.json stays a plain map.
ROUTING_FILE = "routing.json"
SKOPS_ARTIFACT = "model.skops"
# The same model converted for ONNX Runtime when it was written (see ml_app.core.conversion).
ONNX_ARTIFACT = "model.onnx"
# Files that run code when loaded; read only when the operator opts in (ml_app.core.artifacts).
PICKLE_ARTIFACTS = ("model.joblib", "model.pkl", "model.pickle")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The first item of a version stamp whose folder cannot be listed; the second says why.
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class LoadPolicy:
    """What the operator allows when loading artifacts."""

    allow_version_mismatch: bool = False
    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    backend: str = "auto"  # auto | onnx | sklearn (ML_APP_BACKEND)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadPolicy:
        """The policy the operator configured."""
        return cls(
            allow_version_mismatch=settings.allow_version_mismatch,
            allow_pickle=settings.allow_pickle,
            trusted_types=settings.trusted_types,
            backend=settings.backend,
        )


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
            raise StoreError("the model store does not exist (ML_APP_STORE)")
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_valid_name(p.name))

    def versions(self, name: str) -> list[str]:
        """Versions of one model, oldest first."""
        folder = self.root / name
        found = [p.name for p in folder.iterdir() if p.is_dir() and is_valid_name(p.name)]
        return sorted(found, key=version_sort_key)

    def aliases(self, name: str) -> dict[str, str]:
        """The model's alias -> version map ({} when it has none)."""
        path = self.root / name / ALIASES_FILE
        aliases = self._json_object(path, "a JSON object of alias -> version", missing={})
        return {str(k): str(v) for k, v in aliases.items()}

    def routing(self, name: str) -> dict[str, Any]:
        """The model's routing.json as a dict ({} when it has none); core.routing parses it."""
        return self._json_object(self.root / name / ROUTING_FILE, missing={})

    def write_aliases(self, name: str, aliases: dict[str, str]) -> None:
        """Replace the model's aliases.json atomically."""
        write_json_atomic(self.root / name / ALIASES_FILE, aliases)

    def write_routing(self, name: str, routing: dict[str, Any]) -> None:
        """Replace the model's routing.json atomically."""
        write_json_atomic(self.root / name / ROUTING_FILE, routing)

    def next_version(self, name: str) -> str:
        """One more than the highest numeric version ("1" for a new model)."""
        folder = self.root / name
        numeric = [int(v) for v in self.versions(name) if v.isdigit()] if folder.is_dir() else []
        return str(max(numeric, default=0) + 1)

    def fingerprint(self) -> tuple:
        """A cheap summary that changes whenever a version, alias, split or shadow changes.

        Stats of the version folders and their files (versions are immutable, so a change there
        is a replaced folder or a hand edit) and the bytes of the small control files.
        """
        if not self.root.is_dir():
            return ("missing",)
        try:
            names = self.model_names()
        except OSError as exc:  # loading says why; this stops retries until the store changes
            return (UNREADABLE, exc.errno)
        return tuple((name, *self._model_fingerprint(name)) for name in names)

    def _model_fingerprint(self, name: str) -> tuple:
        folder = self.root / name
        try:
            controls = tuple(_read_or_none(folder / f) for f in (ALIASES_FILE, ROUTING_FILE))
            versions = self.versions(name)
        except OSError as exc:  # one unreadable model must not stop reloads of the others
            return (UNREADABLE, exc.errno)
        return controls + tuple((v, self.version_stamp(name, v)) for v in versions)

    def version_stamp(self, name: str, version: str) -> tuple:
        """The version folder's inode, mtime and file sizes/mtimes: equal stamps, same files."""
        folder = self.root / name / version
        try:
            files = []
            for entry in sorted(folder.iterdir()):
                stat = entry.stat()
                files.append((entry.name, stat.st_size, stat.st_mtime_ns))
            stat = folder.stat()
        except FileNotFoundError:  # removed between listing and stat: the next poll sees it
            return ("gone",)
        except OSError as exc:  # e.g. no permission: this version fails, the others load
            return (UNREADABLE, self.explain(exc))
        return (stat.st_ino, stat.st_mtime_ns, tuple(files))

    def read_metadata(self, name: str, version: str) -> dict[str, Any]:
        """The version's metadata.json as a dict."""
        return self._json_object(self.root / name / version / METADATA_FILE)

    def shown(self, path: Path) -> str:
        """How answers name a store file: relative to the store, never the server's layout."""
        try:
            relative = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).name
        return "the model store" if relative == "." else relative

    def explain(self, exc: OSError, doing: str = "read") -> str:
        """An OSError's reason, naming its file relative to the store and what was being done."""
        reason = exc.strerror or type(exc).__name__
        if not exc.filename:
            return reason
        return f"{self.shown(Path(exc.filename))} cannot be {doing}: {reason}"

    def artifact_path(self, name: str, version: str, metadata: dict) -> Path:
        """The version's estimator file, checked against the sha256 its metadata records."""
        folder = self.root / name / version
        artifact = self._artifact_path(folder)
        expected = metadata.get("sha256")
        if not expected:
            raise StoreError(
                f"{self.shown(folder / METADATA_FILE)} has no sha256 for {artifact.name}"
            )
        actual = sha256_of(artifact)
        if actual != expected:
            raise StoreError(
                f"{self.shown(artifact)} failed its integrity check: sha256 is {actual}, "
                f"metadata says {expected}"
            )
        return artifact

    def read_onnx(self, name: str, version: str, metadata: dict) -> tuple[bytes, str]:
        """The version's verified ONNX model and its input dtype; StoreError says why not."""
        info = metadata.get("onnx")
        if not isinstance(info, dict):
            raise StoreError("no ONNX artifact was written with this version")
        if info.get("error"):
            raise StoreError(f"it was not converted to ONNX: {info['error']}")
        path = self.root / name / version / ONNX_ARTIFACT
        try:
            model = path.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"{self.shown(path)} is missing") from exc
        actual = hashlib.sha256(model).hexdigest()
        if actual != info.get("sha256"):
            raise StoreError(
                f"{self.shown(path)} failed its integrity check: sha256 is {actual}, "
                f"metadata says {info.get('sha256')}"
            )
        return model, str(info.get("input_dtype", "float32"))

    def write_version(
        self,
        name: str,
        version: str,
        estimator: Any,
        metadata: dict,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> Path:
        """Write a new version atomically: model.skops, its sha256 in metadata, extra files.

        `extra_files` (file name -> bytes) are what callers made from the estimator, such as
        its ONNX conversion; the store only writes them.
        """
        if not (is_valid_name(name) and is_valid_name(version)):
            raise StoreError(f"invalid model name or version: {name!r}/{version!r}")
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        final = model_dir / version
        if final.exists():
            raise StoreError(f"{self.shown(final)} already exists; versions are immutable")
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
        try:
            skops.io.dump(estimator, staging / SKOPS_ARTIFACT)
            metadata = {**metadata, "sha256": sha256_of(staging / SKOPS_ARTIFACT)}
            for file_name, content in (extra_files or {}).items():
                (staging / file_name).write_bytes(content)
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

    def _artifact_path(self, folder: Path) -> Path:
        for candidate in (SKOPS_ARTIFACT, *PICKLE_ARTIFACTS):
            if (folder / candidate).exists():
                return folder / candidate
        raise StoreError(f"{self.shown(folder)} has no model artifact ({SKOPS_ARTIFACT})")

    def _json_object(
        self, path: Path, shape: str = "a JSON object", missing: dict | None = None
    ) -> dict:
        """A file holding one JSON object; `missing` when it does not exist (None: an error)."""
        try:
            value = orjson.loads(path.read_bytes())
        except FileNotFoundError as exc:
            if missing is not None:
                return missing
            raise StoreError(f"{self.shown(path)} is missing") from exc
        except orjson.JSONDecodeError as exc:
            raise StoreError(f"{self.shown(path)} is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise StoreError(f"{self.shown(path)} must hold {shape}")
        return value


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path`."""
    write_bytes_atomic(path, orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def write_bytes_atomic(path: Path, content: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path`."""
    handle = tempfile.NamedTemporaryFile(  # closed (by `with`) before the rename
        dir=path.parent, prefix=f".{path.name}-", delete=False
    )
    try:
        with handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # readable by a server running as another user
        os.replace(handle.name, path)  # atomic: readers see the old file or the new one
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
