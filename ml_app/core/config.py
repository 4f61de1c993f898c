"""Settings read once from the environment (prefix ML_APP_), typed and validated."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ML_APP_"
# auto: ONNX Runtime where a version's ONNX artifact passes the parity check, else scikit-learn.
BACKENDS = ("auto", "onnx", "sklearn")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def disable_onnx_telemetry() -> None:
    """Tell ONNX Runtime, before it is imported, not to start its telemetry thread.

    Gunicorn's master imports it (preload); a forked worker then hangs at exit in a destructor
    waiting on that thread until the master kills it, and a model server has no business
    reporting home. Kept here because this module is the one place ml_app touches the environment.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def multiprocess_directory() -> str | None:
    """prometheus_client's multiprocess directory (set by the start command), or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of true/false, yes/no, on/off, 1/0")


def _parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a whole number greater than zero")
    return value


def _parse_count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected a whole number, 0 or more")
    return value


def _parse_seconds(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 3600:  # an hour between polls is already no reload
        raise ValueError("expected seconds between 0 and 3600")
    return value


def _parse_bin_count(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 10:  # each bin is a series per feature and version
        raise ValueError("expected a whole number from 1 to 10")
    return value


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _parse_backend(raw: str) -> str:
    backend = raw.strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"expected one of {', '.join(BACKENDS)}")
    return backend


def _parse_names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_origins(raw: str) -> tuple[str, ...]:
    origins = _parse_names(raw)
    for origin in origins:
        # A browser sends Origin as scheme://host[:port]: anything else could never match, and
        # flask-cors would read a value with regex characters as a pattern, not a name.
        if not _ORIGIN.match(origin):
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
    return origins


def _parse_token(raw: str) -> str:
    token = raw.strip()
    if any(char.isspace() for char in token):
        raise ValueError("a token cannot contain whitespace")
    return token


def _parse_rate_limit(raw: str) -> str:
    text = raw.strip()
    if text:
        from limits import parse_many  # only when a limit is set: `import ml_app` stays light

        parse_many(text)  # raises ValueError naming what it cannot read
    return text


def _parse_redis_down(raw: str) -> str:
    choice = raw.strip().lower()
    if choice not in ("open", "closed"):
        raise ValueError("expected open or closed")
    return choice


def _parse_lookup_timeout(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 60:  # a lookup is part of one request: seconds, not minutes
        raise ValueError("expected seconds greater than 0, at most 60")
    return value


def _parse_key_prefix(raw: str) -> str:
    prefix = raw.strip()
    if not prefix or any(char.isspace() for char in prefix):
        raise ValueError("expected a non-empty prefix without whitespace, e.g. features")
    return prefix


def _setting(default: Any, parse: Callable[[str], Any], *, secret: bool = False) -> Any:
    # Secrets stay out of repr(), so settings can be logged or shown in a traceback safely.
    return dataclasses.field(default=default, repr=not secret, metadata={"parse": parse})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the application can be told from outside; each field is ML_APP_<NAME>."""

    store: Path = _setting(PROJECT_ROOT / "model" / "store", lambda raw: Path(raw).expanduser())
    default_model: str = _setting("iris", str.strip)
    max_batch_rows: int = _setting(10_000, _parse_positive_int)
    # 10 MiB holds a 10,000-row batch of 30 features written as JSON with room to spare.
    max_body_bytes: int = _setting(10 * 1024 * 1024, _parse_positive_int)
    log_level: str = _setting("INFO", _parse_log_level)
    # A model trained with another scikit-learn minor version may predict differently: refused
    # unless the operator says otherwise.
    allow_version_mismatch: bool = _setting(False, _parse_bool)
    # pickle/joblib artifacts run arbitrary code when loaded: only on explicit opt-in.
    allow_pickle: bool = _setting(False, _parse_bool)
    # Extra types skops may load beyond its defaults (e.g. a custom transformer's dotted path).
    trusted_types: tuple[str, ...] = _setting((), _parse_names)
    # When set, /metrics answers only requests with "Authorization: Bearer <token>".
    metrics_token: str = _setting("", _parse_token, secret=True)
    # Seconds between a worker's checks of the store for new versions, aliases, split and
    # shadow changes; 0 turns hot reload off (the store is read once, at start).
    reload_interval: float = _setting(2.0, _parse_seconds)
    # Shadow predictions waiting in one worker; past this, copies are dropped (and counted)
    # rather than queued, so a slow shadow version cannot grow memory.
    shadow_queue_size: int = _setting(8, _parse_positive_int)
    # Bearer token for the /admin endpoints; empty (the default) leaves them switched off.
    admin_token: str = _setting("", _parse_token, secret=True)
    # Largest artifact upload accepted by the admin registration endpoint.
    admin_max_upload_bytes: int = _setting(256 * 1024 * 1024, _parse_positive_int)
    # Which inference backend serves predictions: auto, onnx (required) or sklearn (never ONNX).
    backend: str = _setting("auto", _parse_backend)
    # While this file exists the server is shutting down and readiness answers 503 (the
    # Gunicorn master makes it on SIGTERM; a preStop hook may make it earlier). Empty: never.
    drain_file: str = _setting("", str.strip)
    # Proxies in front whose X-Forwarded-For / X-Forwarded-Proto are trusted (Werkzeug's
    # ProxyFix): 1 behind the bundled nginx; 0 (the default) trusts no forwarded header.
    proxy_hops: int = _setting(0, _parse_count)
    # JSON file of API keys (`python -m ml_app keys add`); when set, prediction and model
    # routes need a key, re-read on change every reload_interval. Empty (the default): no keys.
    api_keys_file: str = _setting("", str.strip)
    # Browser origins allowed to call the API from their pages (comma-separated, each
    # scheme://host[:port]); none by default, and then no CORS header is ever sent.
    cors_origins: tuple[str, ...] = _setting((), _parse_origins)
    # Rows each client (API key id, else address) may predict, e.g. "50/second;20000/day";
    # empty (the default) switches rate limits off. A batch costs its row count.
    rate_limit: str = _setting("", _parse_rate_limit)
    # Where the counts live: redis://host:port/db, shared by every worker and replica. memory://
    # counts per process, so Gunicorn refuses it with more than one worker.
    rate_limit_storage_uri: str = _setting("memory://", str.strip, secret=True)
    # When that store cannot be reached: "open" serves (logged, counted), "closed" answers 503.
    rate_limit_redis_down: str = _setting("open", _parse_redis_down)
    # GraphQL at /graphql: introspection on (clients and tools read the schema with it); turn
    # it off to keep the schema private. Depth, aliases and tokens bound what one query costs.
    graphql_introspection: bool = _setting(True, _parse_bool)
    graphql_max_depth: int = _setting(10, _parse_positive_int)
    graphql_max_aliases: int = _setting(15, _parse_positive_int)
    graphql_max_tokens: int = _setting(2000, _parse_positive_int)
    # Each feature store call (connect, then the one round trip) may take this long before
    # the request is answered 504/503: a slow store costs a request this much, never a worker.
    feature_store_timeout: float = _setting(0.5, _parse_lookup_timeout)
    # Redis feature sources keep an entity's features in the hash <prefix>:<model>:<entity id>.
    feature_key_prefix: str = _setting("features", _parse_key_prefix)
    # Directory of the payload log: one CloudEvents JSON line per prediction request and per
    # feedback item, appended by each worker to its own segment file. Empty (the default): off.
    payload_log_dir: str = _setting("", str.strip)
    # Inputs and outputs larger than this (as JSON) are logged as their sizes and a sha256.
    payload_log_max_bytes: int = _setting(1024 * 1024, _parse_positive_int)
    # A segment is closed (renamed to .jsonl, ready to ship) at this size or this age.
    payload_log_segment_bytes: int = _setting(64 * 1024 * 1024, _parse_positive_int)
    payload_log_segment_seconds: float = _setting(60.0, _parse_seconds)
    # Drift: count each predicted row's reference bin per feature and for its prediction.
    drift: bool = _setting(True, _parse_bool)
    # Which features to count (comma-separated); empty (the default): every feature.
    drift_features: tuple[str, ...] = _setting((), _parse_names)
    # Features (and predictions) whose reference has more bins than this are not counted:
    # each bin is one series per feature and version.
    drift_max_bins: int = _setting(10, _parse_bin_count)
    # Seconds a worker gathers drift counts in memory before adding them to the shared
    # counters (also flushed at worker exit); 0 updates the counters on every request.
    drift_flush_seconds: float = _setting(1.0, _parse_seconds)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Build settings from ML_APP_* variables, then apply explicit overrides (tests)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = PREFIX + field.name.upper()
            if name in environ:
                try:
                    values[field.name] = field.metadata["parse"](environ[name])
                except ValueError as exc:
                    raise SettingsError(f"{name}={environ[name]!r} is not valid: {exc}") from exc
        values.update(overrides or {})
        return cls(**values)


def child_environment(settings: Settings, names: Iterable[str]) -> dict[str, str]:
    """This environment plus the named settings as ML_APP_* variables, for a child to read back."""
    environ = dict(os.environ)
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        environ[PREFIX + name.upper()] = text
    return environ
