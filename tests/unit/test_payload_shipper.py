"""The payload shipper: segments oldest first, binary-mode CloudEvents, nothing deleted unsent."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence

import orjson
import pytest
from click.testing import CliRunner
from cloudevents.http import from_http

from ml_app.core.payload_segments import SegmentEvent, closed_segments, read_segment
from ml_app.core.payload_shipper import Shipper, retry_delay
from ml_app.core.payload_sinks import HttpSink, SinkError, _stream_options, binary_mode_headers
from ml_app.ops.cli import main
from tests.support.payloads import (
    CollectingSink,
    feedback_event,
    inference_event,
    segment_ids,
    write_segment,
)


def _events(prefix: str, count: int) -> list[dict]:
    return [
        inference_event(f"{prefix}-{i}", "iris", "1", [[5.1, 3.5, 1.4, 0.2]], ["setosa"])
        for i in range(count)
    ]


class FlakySink:
    """Acknowledges events until `fail_after` in total, then fails once; records what it took."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.received: list[str] = []

    def send(self, events: Sequence[SegmentEvent]) -> None:
        for index, item in enumerate(events):
            if self.fail_after is not None and len(self.received) == self.fail_after:
                self.fail_after = None
                raise SinkError("down", index)
            self.received.append(item.id)

    def close(self) -> None:
        pass


def test_closed_segments_come_oldest_first_and_open_ones_are_left(tmp_path):
    older = write_segment(tmp_path, _events("a", 1), pid=9)
    newer = write_segment(tmp_path, _events("b", 1), pid=1)
    (tmp_path / "test-host-3-1.open").write_bytes(b"")
    (tmp_path / "old.jsonl.rejected").write_bytes(b"x")
    # a later writer's start time sorts after, whatever the pid or the name's order
    assert closed_segments(tmp_path) == [older, newer]


def test_a_segment_is_deleted_only_after_the_sink_took_all_of_it_and_resumes_in_process(
    tmp_path,
):
    first = write_segment(tmp_path, _events("a", 3))
    second = write_segment(tmp_path, _events("b", 2))
    sink = FlakySink(fail_after=2)
    shipper = Shipper(tmp_path, sink)
    assert shipper.ship_pending() is False
    # two acknowledged, the third refused: the segment stays, and so does the next one
    assert first.exists() and second.exists()
    assert sink.received == ["a-0", "a-1"]
    assert shipper.ship_pending() is True
    assert not first.exists() and not second.exists()
    # the retry started after what the sink had already acknowledged
    assert sink.received == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert (shipper.stats.events_shipped, shipper.stats.segments_shipped) == (5, 2)
    assert shipper.stats.send_failures == 1


def test_a_big_segment_goes_in_bounded_batches_and_resumes_mid_way(tmp_path):
    class BatchSink(FlakySink):
        def send(self, events):
            self.sizes.append(len(events))
            super().send(events)

    segment = write_segment(tmp_path, _events("a", 1200))
    sink = BatchSink(fail_after=700)
    sink.sizes = []
    shipper = Shipper(tmp_path, sink)
    assert shipper.ship_pending() is False
    assert segment.exists()
    assert shipper.ship_pending() is True
    assert sink.received == segment_ids_of(1200)
    # 500, then 500 (refused after 200 of them), then the last 500 from the 701st event
    assert sink.sizes == [500, 500, 500]


def segment_ids_of(count: int) -> list[str]:
    return [f"a-{i}" for i in range(count)]


def test_a_new_process_resends_a_half_shipped_segment_whole(tmp_path):
    segment = write_segment(tmp_path, _events("a", 3))
    sink = FlakySink(fail_after=1)
    assert Shipper(tmp_path, sink).ship_pending() is False
    assert Shipper(tmp_path, sink).ship_pending() is True  # knows nothing of the first
    assert sink.received == ["a-0", "a-0", "a-1", "a-2"]
    assert not segment.exists()


def test_an_unreadable_segment_is_set_aside_whole_and_the_rest_shipped(tmp_path):
    bad = write_segment(tmp_path, _events("a", 1))
    with bad.open("ab") as handle:
        handle.write(b'{"id": "x"}\n')  # no specversion, source or type
    good = write_segment(tmp_path, _events("b", 1))
    sink = FlakySink()
    shipper = Shipper(tmp_path, sink)
    assert shipper.ship_pending() is True
    assert sink.received == ["b-0"]
    assert not good.exists() and not bad.exists()
    kept = bad.with_name(bad.name + ".rejected")
    assert segment_ids(kept) == ["a-0", "x"]
    assert shipper.stats.segments_rejected == 1


def test_run_once_gives_up_after_its_attempts_and_keeps_the_segment(tmp_path):
    class DownSink(FlakySink):
        def send(self, events):
            raise SinkError("down", 0)

    segment = write_segment(tmp_path, _events("a", 2))
    shipper = Shipper(tmp_path, DownSink())
    assert shipper.run(poll_seconds=0.01, attempts=2) is False
    assert segment_ids(segment) == ["a-0", "a-1"]
    assert shipper.stats.send_failures == 2


def test_retry_delay_doubles_up_to_a_ceiling():
    assert [retry_delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert retry_delay(50) == 30.0


def test_binary_mode_headers_carry_every_attribute_and_kserves_extensions(tmp_path):
    event = inference_event("req-1", "iris", "1", [[1.0, 2.0, 3.0, 4.0]], ["setosa"])
    event["data"]["arm"] = "2"
    headers = binary_mode_headers(event)
    assert headers["Ce-Inferenceservicename"] == "iris"
    assert headers["Ce-Endpoint"] == "2"
    assert headers["Ce-Component"] == "predictor"
    parsed = from_http(headers, orjson.dumps(event["data"]))
    for name in ("specversion", "id", "source", "type", "time", "subject"):
        assert parsed[name] == event[name], name
    assert parsed.data == event["data"]
    assert parsed["inferenceservicename"] == "iris"
    feedback = feedback_event("req-1", "iris", "setosa")
    assert binary_mode_headers(feedback)["Ce-Endpoint"] == "default"


def test_redis_url_options_are_ours_and_the_rest_goes_to_redis():
    plain, stream, maxlen = _stream_options("redis://h:1/2?stream=s&maxlen=10&health=1")
    assert (plain, stream, maxlen) == ("redis://h:1/2?health=1", "s", 10)
    assert _stream_options("redis://h:1/0")[1:] == ("ml_app:payloads", None)
    with pytest.raises(ValueError, match="maxlen"):
        _stream_options("redis://h:1/0?maxlen=-1")


def test_ship_once_posts_every_event_in_order_and_empties_the_directory(tmp_path):
    segments = [write_segment(tmp_path, _events(name, 3)) for name in "abc"]
    expected = [event_id for path in segments for event_id in segment_ids(path)]
    with CollectingSink() as sink:
        result = CliRunner().invoke(
            main, ["payloads", "ship", "--dir", str(tmp_path), "--sink", sink.url, "--once"]
        )
        assert result.exit_code == 0, result.output
        assert sink.accepted_ids() == expected
        for headers, body in sink.accepted:
            event = from_http(headers, body)
            assert event["type"] == "ml_app.inference"
            assert event.data["outputs"]["predictions"] == ["setosa"]
    assert os.listdir(tmp_path) == []


def test_ship_once_exits_1_and_keeps_everything_when_the_sink_is_unreachable(tmp_path):
    segment = write_segment(tmp_path, _events("a", 2))
    with CollectingSink() as sink:
        url = sink.url
    result = CliRunner().invoke(
        main,
        ["payloads", "ship", "--dir", str(tmp_path), "--sink", url, "--once", "--attempts", "1"],
    )
    assert result.exit_code == 1
    assert "did not take every segment: 1 left" in result.output
    assert [item.id for item in read_segment(segment)] == ["a-0", "a-1"]


def test_ship_refuses_a_sink_it_cannot_send_to(tmp_path):
    result = CliRunner().invoke(
        main, ["payloads", "ship", "--dir", str(tmp_path), "--sink", "ftp://x/"]
    )
    assert result.exit_code == 2
    assert "http(s):// or redis(s)://" in result.output


def test_ship_reads_the_servers_payload_log_setting_when_no_dir_is_given(tmp_path, monkeypatch):
    write_segment(tmp_path, _events("a", 2))
    monkeypatch.setenv("ML_APP_PAYLOAD_LOG_DIR", str(tmp_path))
    with CollectingSink() as sink:
        result = CliRunner().invoke(main, ["payloads", "ship", "--sink", sink.url, "--once"])
        assert result.exit_code == 0, result.output
        assert sink.accepted_ids() == ["a-0", "a-1"]
    monkeypatch.delenv("ML_APP_PAYLOAD_LOG_DIR")
    refused = CliRunner().invoke(main, ["payloads", "ship", "--sink", "http://x/", "--once"])
    assert refused.exit_code == 2
    assert "pass --dir or set ML_APP_PAYLOAD_LOG_DIR" in refused.output


def test_the_shipper_metrics_report_its_totals_and_what_waits(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from ml_app.core.payload_shipper_metrics import serve_metrics

    first = write_segment(tmp_path, _events("a", 3))
    waiting = write_segment(tmp_path, _events("b", 2))
    os.utime(waiting, (waiting.stat().st_atime, waiting.stat().st_mtime - 120))
    shipper = Shipper(tmp_path, FlakySink(fail_after=4))
    assert shipper.ship_pending() is False  # a-0..a-2 and b-0 taken, b-1 refused
    server = serve_metrics(shipper, 0, "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert not first.exists()
    assert samples["ml_app_payload_shipper_events_total"] == 4
    assert samples["ml_app_payload_shipper_segments_total"] == 1
    assert samples["ml_app_payload_shipper_failures_total"] == 1
    assert samples["ml_app_payload_shipper_backlog_segments"] == 1
    assert samples["ml_app_payload_shipper_backlog_bytes"] == waiting.stat().st_size
    assert 120 <= samples["ml_app_payload_shipper_oldest_segment_age_seconds"] < 180


def test_concurrent_posts_count_only_the_prefix_answered_2xx_as_acknowledged(tmp_path):
    class RefusesOne(CollectingSink):
        def answer(self, headers, body):
            return 503 if headers["Ce-Id"] == "a-7" else super().answer(headers, body)

    segment = write_segment(tmp_path, _events("a", 20))
    events = list(read_segment(segment))
    with RefusesOne() as sink:
        http = HttpSink(sink.url, concurrency=4)
        try:
            with pytest.raises(SinkError) as refused:
                http.send(events)
        finally:
            http.close()
        assert refused.value.acknowledged == 7
        assert "HTTP 503" in str(refused.value)
        # the prefix went out (in whatever order the threads finished), the refused one not
        accepted = set(sink.accepted_ids())
        assert {f"a-{i}" for i in range(7)} <= accepted
        assert "a-7" not in accepted


def test_ship_with_concurrency_delivers_every_event_and_empties_the_directory(tmp_path):
    segments = [write_segment(tmp_path, _events(name, 40)) for name in "ab"]
    expected = [event_id for path in segments for event_id in segment_ids(path)]
    with CollectingSink() as sink:
        options = ["--dir", str(tmp_path), "--sink", sink.url, "--once", "--concurrency", "4"]
        result = CliRunner().invoke(main, ["payloads", "ship", *options])
        assert result.exit_code == 0, result.output
        assert sorted(sink.accepted_ids()) == sorted(expected)
    assert os.listdir(tmp_path) == []
