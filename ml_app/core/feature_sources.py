"""Feature sources a version may declare: Redis hashes, and Feast's feature server over HTTP.

The declaration lives in the version's metadata (`entity_key`, `feature_source`,
`feature_defaults`), checked when the version is registered. Each source answers one question
in one round trip: for these entity ids, the values of these features (None where the source
has none). Connections are made lazily by the process that uses them, kept per process id, so a
Gunicorn worker never shares a socket its master (or a sibling) opened. Every call is bounded
by the lookup timeout: a stopped store answers 503, a silent one 504, never a hung worker.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml_app.core.errors import FeatureStoreTimeout, FeatureStoreUnavailable, StoreError
from ml_app.core.validation import cell_problem

EntityId = int | str
REDIS_SCHEMES = ("redis", "rediss", "unix")
FEAST_SCHEMES = ("feast+http", "feast+https")
FEAST_PATH = "/get-online-features"
_FEAST_PRESENT = "PRESENT"


class FeatureSource(Protocol):
    """Where a version's features live; `kind` labels the lookup latency metric."""

    kind: str

    def fetch(
        self, model: str, entity_key: str, ids: Sequence[EntityId], features: Sequence[str]
    ) -> list[list[Any]]:
        """Per entity, per feature: the stored value, or None when the source has none."""
        ...

    def close(self) -> None:
        """Close this process's connections (a later fetch opens new ones)."""
        ...


@dataclass(frozen=True, slots=True)
class FeatureDeclaration:
    """What a version says about predicting by entity id."""

    entity_key: str
    source: str  # URL of the feature source
    defaults: Mapping[str, float] = field(default_factory=dict)


def declaration_of(metadata: Mapping[str, Any]) -> FeatureDeclaration | None:
    """The version's declaration, or None when it declares no feature source."""
    key, source = metadata.get("entity_key"), metadata.get("feature_source")
    # Registration checks these; a hand-edited metadata.json is held to the same types here.
    if not (key and source and isinstance(key, str) and isinstance(source, str)):
        return None
    defaults = metadata.get("feature_defaults")
    return FeatureDeclaration(key, source, defaults if isinstance(defaults, dict) else {})


def check_declaration(metadata: Mapping[str, Any]) -> None:
    """StoreError when a version's entity key, feature source or defaults cannot be served."""
    given = [k for k in ("entity_key", "feature_source") if metadata.get(k)]
    if not given and not metadata.get("feature_defaults"):
        return
    if len(given) != 2:
        raise StoreError("declare both entity_key and feature_source, or neither")
    names = list(metadata.get("feature_names") or [])
    key = metadata["entity_key"]
    if not isinstance(key, str) or key in names:
        raise StoreError(f"entity_key {key!r} must be a name that is not one of the features")
    try:
        source_from_url(str(metadata["feature_source"]), 1.0, "check")
    except ValueError as exc:
        raise StoreError(f"feature_source: {exc}") from None
    defaults = metadata.get("feature_defaults") or {}
    if not isinstance(defaults, dict):
        raise StoreError("feature_defaults must be an object of feature -> number")
    for name, value in defaults.items():
        if name not in names or cell_problem(value):
            raise StoreError(f"feature_defaults: {name!r} must be a feature with a finite number")


def source_from_url(url: str, timeout: float, key_prefix: str) -> FeatureSource:
    """The source a declared URL names; ValueError for a scheme no source speaks."""
    scheme = urlsplit(url).scheme
    if scheme in REDIS_SCHEMES:
        return RedisFeatureSource(url, timeout, key_prefix)
    if scheme in FEAST_SCHEMES:
        return FeastFeatureSource(url, timeout)
    known = ", ".join(f"{s}://" for s in (*REDIS_SCHEMES, *FEAST_SCHEMES))
    raise ValueError(f"feature source must start with one of {known}")


def redis_key(prefix: str, model: str, entity_id: EntityId) -> str:
    """The hash holding one entity's features for a model: <prefix>:<model>:<entity id>."""
    return f"{prefix}:{model}:{entity_id}"


class RedisFeatureSource:
    """Entities as Redis hashes (feature -> value); one pipelined HMGET per entity, one trip."""

    kind = "redis"

    def __init__(self, url: str, timeout: float, key_prefix: str) -> None:
        self.url = url
        self.timeout = timeout
        self.key_prefix = key_prefix
        self._client: redis.Redis | None = None
        self._pid: int | None = None

    def client(self) -> redis.Redis:
        """This process's client, over a connection pool made after fork."""
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            pool = redis.ConnectionPool.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # No retries: one attempt within the timeout, then the caller gets its answer.
                retry=Retry(NoBackoff(), 0),
            )
            self._client, self._pid = redis.Redis(connection_pool=pool), pid
        return self._client

    def fetch(
        self, model: str, entity_key: str, ids: Sequence[EntityId], features: Sequence[str]
    ) -> list[list[Any]]:
        """HMGET of the features from each entity's hash, pipelined into one round trip."""
        client, fields = self.client(), list(features)
        try:
            if len(ids) == 1:  # a pipeline object costs ~100 us more than the command itself
                return [client.hmget(redis_key(self.key_prefix, model, ids[0]), fields)]
            pipeline = client.pipeline(transaction=False)
            for entity_id in ids:
                pipeline.hmget(redis_key(self.key_prefix, model, entity_id), fields)
            return pipeline.execute()
        except redis.TimeoutError as exc:
            raise _timeout(self.kind, self.timeout) from exc
        except redis.RedisError as exc:
            raise _unavailable(self.kind, type(exc).__name__) from exc

    def close(self) -> None:
        """Disconnect this process's pool."""
        if self._client is not None and self._pid == os.getpid():
            self._client.connection_pool.disconnect()


class FeastFeatureSource:
    """Feast's feature server (`feast serve`): POST /get-online-features, one per request.

    Declared as feast+http://host:port/<feature view>; features are read as <view>:<name>.
    """

    kind = "feast"

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "feast+https"
        self.host, self.port = parts.hostname or "", parts.port
        self.feature_view = parts.path.strip("/")
        if not self.host or not self.feature_view:
            raise ValueError("a Feast source is feast+http://host:port/<feature view>")
        self.timeout = timeout
        self._local = threading.local()  # one keep-alive connection per thread and process

    def fetch(
        self, model: str, entity_key: str, ids: Sequence[EntityId], features: Sequence[str]
    ) -> list[list[Any]]:
        """The features of each entity, from the columns Feast answers (None unless PRESENT)."""
        body = {
            "entities": {entity_key: list(ids)},
            "features": [f"{self.feature_view}:{name}" for name in features],
        }
        answer = self._post(orjson.dumps(body))
        try:
            names = answer["metadata"]["feature_names"]
            columns = {name: answer["results"][i] for i, name in enumerate(names)}
            return [
                [_present(columns.get(name), row) for name in features] for row in range(len(ids))
            ]
        except (KeyError, IndexError, TypeError) as exc:
            raise _unavailable(self.kind, f"unexpected answer ({exc!r})") from exc

    def _post(self, body: bytes) -> Any:
        # A kept-alive connection the server has since closed fails at once: retry it fresh,
        # once; a fresh connection's failure is the answer.
        reused = getattr(self._local, "pid", None) == os.getpid()
        try:
            status, raw = self._exchange(body)
        except FeatureStoreUnavailable:
            if not reused:
                raise
            status, raw = self._exchange(body)
        if status != 200:
            raise _unavailable(self.kind, f"HTTP {status}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _unavailable(self.kind, "an answer that is not JSON") from exc

    def _exchange(self, body: bytes) -> tuple[int, bytes]:
        connection = self._connection()
        headers = {"Content-Type": "application/json"}
        try:
            connection.request("POST", FEAST_PATH, body, headers)
            response = connection.getresponse()
            return response.status, response.read()
        except TimeoutError as exc:
            self._drop()
            raise _timeout(self.kind, self.timeout) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise _unavailable(self.kind, type(exc).__name__) from exc

    def _connection(self) -> http.client.HTTPConnection:
        local, pid = self._local, os.getpid()
        if getattr(local, "pid", None) != pid:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            local.connection = kind(self.host, self.port, timeout=self.timeout)
            local.pid = pid
        return local.connection

    def close(self) -> None:
        """Close this thread's connection."""
        if getattr(self._local, "pid", None) == os.getpid():
            self._drop()

    def _drop(self) -> None:
        self._local.connection.close()
        self._local.pid = None


def _present(column: Any, row: int) -> Any:
    if column is None or column["statuses"][row] != _FEAST_PRESENT:
        return None
    return column["values"][row]


def _timeout(kind: str, seconds: float) -> FeatureStoreTimeout:
    return FeatureStoreTimeout(
        f"The feature store ({kind}) did not answer within {seconds:g} s "
        "(ML_APP_FEATURE_STORE_TIMEOUT)."
    )


def _unavailable(kind: str, cause: str) -> FeatureStoreUnavailable:
    # The cause names the failure, never the source's address (it may carry a password).
    return FeatureStoreUnavailable(f"The feature store ({kind}) is unavailable: {cause}.")
