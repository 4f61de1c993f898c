"""Where the shipper sends payload events: an HTTP CloudEvents endpoint, or a Redis stream.

A sink's `send(events)` returns only once the sink has acknowledged every event; otherwise it
raises SinkError saying how many of them (a prefix) were acknowledged, so nothing is counted as
delivered that was not. Retrying and waiting are the shipper's business, not the sink's.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson

from ml_app.core.payload_segments import SegmentEvent

# Redis pipelines this many XADDs per round trip: one segment's worth would hold a whole
# segment's replies in memory at once.
REDIS_CHUNK = 500
# Context attributes sent as ce-* headers in binary mode; `data` is the body and
# `datacontenttype` its Content-Type (CloudEvents HTTP binding, section 3.1.3).
_HEADER_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "dataschema")


class SinkError(Exception):
    """The sink did not acknowledge every event; the first `acknowledged` of them it did."""

    def __init__(self, message: str, acknowledged: int) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged


class Sink(Protocol):
    """Something that takes events and says when it holds them."""

    def send(self, events: Sequence[SegmentEvent]) -> None:
        """Deliver every event, in order; SinkError unless all were acknowledged."""

    def close(self) -> None:
        """Release connections."""


def binary_mode_headers(event: dict[str, Any]) -> dict[str, str]:
    """The HTTP headers of a CloudEvent in binary mode, with KServe's logger extensions."""
    headers = {"Content-Type": event.get("datacontenttype") or "application/json"}
    for name in _HEADER_ATTRIBUTES:
        value = event.get(name)
        if value is not None:
            headers[f"Ce-{name.capitalize()}"] = str(value)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    model = data.get("model") or event.get("subject")
    # KServe's payload logger names the service, the component and the endpoint (default or
    # canary) on every event; here the model, the predictor, and the split arm that answered.
    if model:
        headers["Ce-Inferenceservicename"] = str(model)
    headers["Ce-Component"] = "predictor"
    headers["Ce-Endpoint"] = str(data.get("arm") or "default")
    return headers


class HttpSink:
    """POST each event in CloudEvents binary mode; a 2xx answer is its acknowledgement.

    With `concurrency` above 1, that many POSTs are in flight at once (events of a segment may
    then arrive out of order); what counts as acknowledged is still the prefix of the batch
    answered 2xx, so a failure resends from the first event not acknowledged.
    """

    def __init__(self, url: str, timeout: float = 10.0, concurrency: int = 1) -> None:
        import urllib3  # only the HTTP sink needs it

        self.url = url
        self._errors = (urllib3.exceptions.HTTPError,)
        # Keep-alive connections reused event after event; urllib3 retries nothing itself: a
        # failure goes back to the shipper, which waits and resumes where the sink stopped.
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=concurrency,
            block=True,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=False,
        )
        self._executor = ThreadPoolExecutor(concurrency) if concurrency > 1 else None

    def _post(self, item: SegmentEvent) -> str | None:
        """POST one event; None when acknowledged, else why not."""
        body = orjson.dumps(item.event.get("data"))
        try:
            response = self._pool.request(
                "POST", self.url, body=body, headers=binary_mode_headers(item.event)
            )
        except self._errors as exc:
            return f"POST {self.url}: {exc}"
        if not 200 <= response.status < 300:
            return f"POST {self.url}: HTTP {response.status}"
        return None

    def send(self, events: Sequence[SegmentEvent]) -> None:
        """POST the events; SinkError naming the first that was not answered 2xx."""
        if self._executor is None:
            for sent, item in enumerate(events):
                if problem := self._post(item):
                    raise SinkError(problem, sent)
            return
        for sent, problem in enumerate(self._executor.map(self._post, events)):
            if problem:
                raise SinkError(problem, sent)

    def close(self) -> None:
        """Close the pooled connections (and the sending threads)."""
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
        self._pool.clear()


def _stream_options(url: str) -> tuple[str, str, int | None]:
    """The Redis URL without our options, the stream name and MAXLEN (None: unbounded)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours = {name: value for name, value in query if name in ("stream", "maxlen")}
    rest = [(name, value) for name, value in query if name not in ours]
    stream = ours.get("stream") or "ml_app:payloads"
    maxlen = ours.get("maxlen")
    if maxlen is not None and (not maxlen.isdigit() or int(maxlen) <= 0):
        raise ValueError(f"maxlen={maxlen!r} is not a whole number greater than zero")
    plain = parts._replace(query=urllib.parse.urlencode(rest)).geturl()
    return plain, stream, int(maxlen) if maxlen else None


class RedisStreamSink:
    """XADD each event to a stream (fields id, type, event); pipelined, REDIS_CHUNK at a time.

    The reply to a pipeline that carried the XADDs is the acknowledgement. With `maxlen` the
    stream is trimmed approximately (MAXLEN ~), as Redis does cheaply.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        import redis  # only the Redis sink needs it

        plain, self.stream, self.maxlen = _stream_options(url)
        self._errors = (redis.RedisError,)
        self._client = redis.Redis.from_url(
            plain, socket_timeout=timeout, socket_connect_timeout=min(timeout, 5.0)
        )

    def send(self, events: Sequence[SegmentEvent]) -> None:
        """XADD the events in pipelined chunks; SinkError at the first chunk that fails."""
        for start in range(0, len(events), REDIS_CHUNK):
            pipeline = self._client.pipeline(transaction=False)
            for item in events[start : start + REDIS_CHUNK]:
                fields = {"id": item.id, "type": item.event["type"], "event": item.line}
                pipeline.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            try:
                pipeline.execute()
            except self._errors as exc:
                raise SinkError(f"XADD {self.stream}: {exc}", start) from exc

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def open_sink(url: str, timeout: float = 10.0, concurrency: int = 1) -> Sink:
    """The sink a URL names: http(s)://... or redis(s)://...?stream=NAME[&maxlen=N]."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("http", "https"):
        return HttpSink(url, timeout, concurrency)
    if scheme in ("redis", "rediss"):
        return RedisStreamSink(url, timeout)
    raise ValueError(f"{url!r}: the sink must be an http(s):// or redis(s):// URL")
