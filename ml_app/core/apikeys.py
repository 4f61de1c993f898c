"""API keys: the keys file (JSON, written atomically, only sha256 digests) and its live copy.

One entry per key: its id, the sha256 of the key, optionally the models it may call and a rate
limit. `KeyRing` is what a serving process checks keys against: it re-reads the file when its
stat changes, at most every `interval` seconds, and keeps the last good keys when the file cannot
be read or parsed (logged), so a rewrite never fails a request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("ml_app.apikeys")

# Ids appear in access lines and metric labels: short plain tokens only.
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MISSING = (0, 0, 0)  # the keys file's stat while it does not exist


class KeysFileError(ValueError):
    """The keys file cannot be read or holds something that is not a valid list of keys."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as stored: never the key itself, only its sha256."""

    id: str
    sha256: str
    models: frozenset[str] | None = None  # None: every model
    rate_limit: str | None = None  # e.g. "10/second", read by the rate limiter

    def allows(self, model: str) -> bool:
        """True when this key may call `model`."""
        return self.models is None or model in self.models

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the keys file."""
        entry: dict[str, Any] = {"id": self.id, "sha256": self.sha256}
        if self.models is not None:
            entry["models"] = sorted(self.models)
        if self.rate_limit is not None:
            entry["rate_limit"] = self.rate_limit
        return entry


def key_digest(key: str) -> bytes:
    """The sha256 digest a key is stored (and compared) as."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_key() -> str:
    """A fresh random key: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _parse_entry(raw: Any) -> ApiKey:
    if not isinstance(raw, dict):
        raise KeysFileError("each key must be a JSON object")
    key_id, digest = raw.get("id"), raw.get("sha256")
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise KeysFileError(f"bad key id {key_id!r}: letters, digits, '.', '_', '-' (1-64)")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise KeysFileError(f"key {key_id}: sha256 must be 64 lowercase hex digits")
    models = raw.get("models")
    if models is not None and not (
        isinstance(models, list) and all(isinstance(m, str) and m for m in models)
    ):
        raise KeysFileError(f"key {key_id}: models must be a list of model names")
    rate_limit = raw.get("rate_limit")
    if rate_limit is not None and not _is_rate_limit(rate_limit):
        raise KeysFileError(
            f"key {key_id}: rate_limit must be a limit like '10/second' or "
            f"'50/second;20000/day', not {rate_limit!r}"
        )
    return ApiKey(key_id, digest, frozenset(models) if models is not None else None, rate_limit)


def _is_rate_limit(value: object) -> bool:
    # Checked here, so a limit the rate limiter cannot read never reaches it (it would skip it).
    from limits import parse_many  # only for keys with a limit: `import ml_app` stays light

    if not isinstance(value, str):
        return False
    try:
        parse_many(value)
    except ValueError:
        return False
    return True


def parse_keys(content: bytes) -> tuple[ApiKey, ...]:
    """The keys in a keys file's content; KeysFileError when it is not valid."""
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise KeysFileError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysFileError('expected {"keys": [...]}')
    keys = tuple(_parse_entry(raw) for raw in document["keys"])
    ids = [key.id for key in keys]
    if len(set(ids)) != len(ids):
        raise KeysFileError("a key id appears twice")
    return keys


def read_keys(path: Path) -> tuple[ApiKey, ...]:
    """The keys in `path`; none when the file does not exist yet."""
    try:
        return parse_keys(path.read_bytes())
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise KeysFileError(f"cannot read {path}: {exc}") from exc


def write_keys(path: Path, keys: tuple[ApiKey, ...]) -> None:
    """Replace the keys file atomically (a reader sees the old file or the new, never half)."""
    content = orjson.dumps({"keys": [key.to_json() for key in keys]}, option=orjson.OPT_INDENT_2)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        # Digests of 256-bit random keys give nothing away, and the server often runs as
        # another user (the container's) than the operator who writes the file.
        os.chmod(temporary, _mode_of(path, default=0o644))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_of(path: Path, default: int) -> int:
    # A rewrite keeps whatever permissions the operator gave the file.
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return default


def add_key(path: Path, key_id: str, models: tuple[str, ...] = (), limit: str | None = None) -> str:
    """Add a key to the file and return it (the only time it is ever seen)."""
    keys = read_keys(path)
    if any(key.id == key_id for key in keys):
        raise KeysFileError(f"key {key_id} exists; revoke it first or pick another id")
    key = new_key()
    entry = {"id": key_id, "sha256": key_digest(key).hex(), "rate_limit": limit}
    if models:
        entry["models"] = list(models)
    write_keys(path, (*keys, _parse_entry(entry)))
    return key


def revoke_key(path: Path, key_id: str) -> None:
    """Remove a key from the file; KeysFileError when there is no key by that id."""
    keys = read_keys(path)
    kept = tuple(key for key in keys if key.id != key_id)
    if len(kept) == len(keys):
        raise KeysFileError(f"no key {key_id}")
    write_keys(path, kept)


class KeyRing:
    """The keys a serving process accepts, kept in step with the keys file."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._keys: dict[bytes, ApiKey] = {}
        self._stat: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._refresh()

    def find(self, key: str) -> ApiKey | None:
        """The entry `key` belongs to, or None; the digests are compared in constant time."""
        if self.interval > 0 and time.monotonic() >= self._next_check:
            self._refresh()
        given = key_digest(key)
        # Looked up by digest, so the cost does not grow with the number of keys. Timing can
        # only tell about the sha256 of what the caller sent, never about a stored key's
        # bytes; the final check is constant-time all the same.
        entry = self._keys.get(given)
        if entry is None or not hmac.compare_digest(given, bytes.fromhex(entry.sha256)):
            return None
        return entry

    def _refresh(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is re-reading; serve with the current keys meanwhile
        try:
            self._next_check = time.monotonic() + self.interval
            stat = self._file_stat()
            if stat == self._stat and self._stat is not None:
                return
            keys = read_keys(self.path)
            self._keys = {bytes.fromhex(key.sha256): key for key in keys}
            self._stat = stat
            if stat == _MISSING:
                log.warning(
                    "API keys file %s does not exist: every request that needs a key is "
                    "refused (401) until it does; mount the keys secret there or set "
                    "ML_APP_API_KEYS_FILE",
                    self.path,
                )
            else:
                log.info("loaded %d API keys from %s", len(keys), self.path)
        except KeysFileError as exc:
            log.error("keeping the last good API keys: %s: %s", self.path, exc)
        finally:
            self._lock.release()

    def _file_stat(self) -> tuple[int, int, int]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return _MISSING
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
