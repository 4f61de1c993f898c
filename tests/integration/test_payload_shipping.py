"""The payload shipper as its own process, against a real HTTP sink and a real redis-server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from cloudevents.http import from_http, from_json
from prometheus_client.parser import text_string_to_metric_families

from ml_app.core.payload_shipper import retry_delay
from tests.support.payloads import (
    CollectingSink,
    ShipperProcess,
    inference_event,
    segment_ids,
    write_segment,
)
from tests.support.polling import wait_until
from tests.support.redis_server import RedisServer
from tests.support.server import PROJECT_ROOT, clean_environment, free_port

OUTAGE_SECONDS = 10
LONG_WAIT_AFTER = 5  # failed passes after which the shipper waits retry_delay(5) = 8 s


def _write_segments(
    directory: Path, segments: int, per_segment: int, first_pid: int = 1000
) -> dict[Path, list[str]]:
    """Closed segments of one-row iris events; their ids by segment, in order."""
    written = {}
    for number in range(first_pid, first_pid + segments):
        events = [
            inference_event(f"s{number}-e{index}", "iris", "1", [[5.1, 3.5, 1.4, 0.2]], ["setosa"])
            for index in range(per_segment)
        ]
        path = write_segment(directory, events, pid=number)
        written[path] = segment_ids(path)
    return written


def _shipper_metrics(port: int) -> dict[str, float]:
    """The shipper process's /metrics samples by name."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _watch_deletions(written: dict[Path, list[str]], sink: CollectingSink, timeout: float):
    """Until every segment is gone: each one that disappears was wholly acknowledged first."""
    remaining = dict(written)
    deadline = time.monotonic() + timeout
    while remaining:
        assert time.monotonic() < deadline, f"{len(remaining)} segments never shipped"
        gone = [path for path in remaining if not path.exists()]
        acknowledged = set(sink.accepted_ids())  # read after the deletion was seen
        for path in gone:
            missing = set(remaining.pop(path)) - acknowledged
            assert not missing, f"{path.name} deleted before {sorted(missing)} were acknowledged"
        time.sleep(0.02)


def test_a_sink_down_for_10_s_then_up_gets_everything_and_nothing_is_deleted_early(tmp_path):
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    written = _write_segments(payloads, segments=12, per_segment=50)
    expected = [event_id for ids in written.values() for event_id in ids]
    with CollectingSink(refuse_for=OUTAGE_SECONDS) as sink:
        # after the outage one pass ships them all; then it would wait long before looking again
        port = free_port()
        shipper = ShipperProcess(
            payloads,
            sink.url,
            tmp_path / "shipper.log",
            "--poll",
            "300",
            "--metrics-port",
            str(port),
        )
        with shipper:
            wait_until(lambda: sink.refused >= 2, 30, "the shipper to be refused twice")
            during = _shipper_metrics(port)
            assert during["ml_app_payload_shipper_backlog_segments"] == len(written)
            assert during["ml_app_payload_shipper_events_total"] == 0
            assert during["ml_app_payload_shipper_failures_total"] >= 1
            _watch_deletions(written, sink, timeout=OUTAGE_SECONDS + 60)
            after = _shipper_metrics(port)
            assert after["ml_app_payload_shipper_backlog_segments"] == 0
            assert after["ml_app_payload_shipper_events_total"] == len(expected)
            late = _write_segments(payloads, segments=1, per_segment=7, first_pid=5000)
            assert shipper.stop() == 0  # the segment closed just before is shipped on the way out
        assert not next(iter(late)).exists()
        expected += next(iter(late.values()))
        assert sink.first_request is not None and sink.refused >= 2
        # in order, each once: a retry in the same process resumes after the acknowledged ones
        assert sink.accepted_ids() == expected
        for headers, body in sink.accepted:
            event = from_http(headers, body)
            assert event["type"] == "ml_app.inference"
            assert event["source"] == "/ml_app/test-host"
            assert event["inferenceservicename"] == "iris"
            assert event.data["inputs"]["rows"] == [[5.1, 3.5, 1.4, 0.2]]
    entries = shipper.log_entries()
    assert any(entry["message"] == "sink refused or failed" for entry in entries)
    (stopped,) = [entry for entry in entries if entry["message"] == "shipper stopped"]
    assert stopped["events_shipped"] == len(expected)
    assert stopped["segments_shipped"] == len(written) + 1
    assert stopped["send_failures"] >= 1


def test_sigterm_while_the_sink_refuses_stops_at_once_and_keeps_every_segment(tmp_path):
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    written = _write_segments(payloads, segments=3, per_segment=5)
    with CollectingSink(refuse_for=3600) as sink:
        with ShipperProcess(payloads, sink.url, tmp_path / "shipper.log") as shipper:
            # After its 5th failed pass the shipper waits retry_delay(5) = 8 s: stop it then.
            wait_until(lambda: sink.refused >= LONG_WAIT_AFTER, 60, "the shipper to retry")
            waiting_since = sink.refused_at[LONG_WAIT_AFTER - 1]
            assert shipper.stop() == 1  # its last pass failed too: segments are left
            # The last pass tried once more, without waiting out the retry it was in: how soon
            # the process exits on a busy machine is not the point, when it asked the sink is.
            assert sink.refused == LONG_WAIT_AFTER + 1, sink.refused
            last_try = sink.refused_at[-1] - waiting_since
            assert last_try < retry_delay(LONG_WAIT_AFTER), last_try
    for path, ids in written.items():
        assert segment_ids(path) == ids
    assert sink.accepted_ids() == []


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    with RedisServer(folder) as running:
        yield running


def _ship_once(directory: Path, sink_url: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ml_app", "payloads", "ship", "--dir", str(directory)]
    return subprocess.run(
        [*command, "--sink", sink_url, "--once", *args],
        cwd=PROJECT_ROOT,
        env=clean_environment(),
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_redis_streams_gets_every_event_in_order_as_a_cloudevent(tmp_path, redis_server):
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    written = _write_segments(payloads, segments=4, per_segment=300)  # chunks of 500 span them
    expected = [event_id for ids in written.values() for event_id in ids]
    done = _ship_once(payloads, f"{redis_server.url}?stream=payloads")
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(payloads.iterdir()) == []
    with redis.Redis.from_url(redis_server.url) as client:
        entries = client.xrange("payloads")
    assert [fields[b"id"].decode() for _, fields in entries] == expected
    for _, fields in entries:
        event = from_json(fields[b"event"])
        assert event["id"] == fields[b"id"].decode()
        assert event["type"] == fields[b"type"].decode() == "ml_app.inference"
        assert event.data["outputs"]["predictions"] == ["setosa"]


def test_redis_maxlen_trims_the_stream(tmp_path, redis_server):
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    written = _write_segments(payloads, segments=2, per_segment=1000)
    done = _ship_once(payloads, f"{redis_server.url}?stream=capped&maxlen=100")
    assert done.returncode == 0, done.stdout + done.stderr
    with redis.Redis.from_url(redis_server.url) as client:
        length = client.xlen("capped")
        (_, last), *_ = client.xrevrange("capped", count=1)
    # MAXLEN ~ trims whole nodes (100 entries each by default): at least 100 are kept
    assert 100 <= length < 2000
    assert last[b"id"].decode() == list(written.values())[-1][-1]


def test_redis_down_keeps_every_segment_and_exits_1(tmp_path, redis_server):
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    written = _write_segments(payloads, segments=2, per_segment=3)
    redis_server.stop()
    failed = _ship_once(payloads, f"{redis_server.url}?stream=payloads", "--attempts", "2")
    assert failed.returncode == 1
    assert b"did not take every segment: 2 left" in failed.stderr
    for path, ids in written.items():
        assert segment_ids(path) == ids
