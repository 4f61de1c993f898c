"""The payload log's segment files: whole lines, one segment per process, closed by rename."""

from __future__ import annotations

import logging
import os
import re
import socket

import pytest
from prometheus_client import REGISTRY

from ml_app.core.payload_log import PayloadLog, close_orphaned_segments, close_segment
from tests.support.polling import wait_until
from tests.support.tmpfs import FILLER, fill, small_tmpfs

SEGMENT_NAME = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<started>\d+)\.(?P<state>open|jsonl)$")


def _line(number: int, width: int = 40) -> bytes:
    return b'{"n":%d,"pad":"%s"}\n' % (number, b"x" * width)


def _lines(directory, suffix=".jsonl"):
    found = []
    for path in sorted(directory.glob("*" + suffix)):
        data = path.read_bytes()
        assert data.endswith(b"\n"), path
        found += data.splitlines(keepends=True)
    return found


def _dropped(reason: str) -> float:
    labels = {"type": "test.event", "reason": reason}
    return REGISTRY.get_sample_value("ml_app_payload_log_errors_total", labels) or 0.0


def test_lines_go_to_one_open_segment_named_for_host_and_pid_then_close_by_rename(tmp_path):
    payload_log = PayloadLog(tmp_path / "payloads", segment_bytes=1 << 20, segment_seconds=0)
    assert payload_log.append(_line(1), "test.event") and payload_log.append(_line(2), "test.event")
    (open_segment,) = (tmp_path / "payloads").iterdir()
    match = SEGMENT_NAME.match(open_segment.name)
    assert match and match["state"] == "open"
    assert (match["host"], int(match["pid"])) == (socket.gethostname(), os.getpid())
    payload_log.close()
    assert not open_segment.exists()
    (closed,) = (tmp_path / "payloads").iterdir()
    assert closed.name == open_segment.name.replace(".open", ".jsonl")
    assert closed.read_bytes() == _line(1) + _line(2)
    payload_log.append(_line(3), "test.event")  # a new segment, never the closed one again
    assert closed.read_bytes() == _line(1) + _line(2)
    assert len(list((tmp_path / "payloads").glob("*.open"))) == 1


def test_segments_close_by_size_and_keep_every_line_in_order(tmp_path):
    payload_log = PayloadLog(tmp_path, segment_bytes=300, segment_seconds=0)
    for number in range(20):
        payload_log.append(_line(number), "test.event")
    payload_log.close()
    segments = list(tmp_path.glob("*.jsonl"))
    assert len(segments) == 4  # 60-byte lines: each segment closes at its 5th line (300 bytes)
    ordered = sorted(segments, key=lambda p: int(SEGMENT_NAME.match(p.name)["started"]))
    lines = [line for p in ordered for line in p.read_bytes().splitlines(keepends=True)]
    assert lines == [_line(n) for n in range(20)]


def test_an_idle_segment_closes_by_age(tmp_path):
    payload_log = PayloadLog(tmp_path, segment_bytes=1 << 20, segment_seconds=0.2)
    payload_log.append(_line(1), "test.event")
    wait_until(lambda: list(tmp_path.glob("*.jsonl")), 5, "the idle segment to close")
    assert not list(tmp_path.glob("*.open"))
    assert _lines(tmp_path) == [_line(1)]


def test_closing_trims_a_partial_last_line_and_drops_an_empty_segment(tmp_path):
    torn = tmp_path / "host-1-1.open"
    torn.write_bytes(_line(1) + _line(2) + b'{"n":3,"pa')
    assert close_segment(torn) == tmp_path / "host-1-1.jsonl"
    assert (tmp_path / "host-1-1.jsonl").read_bytes() == _line(1) + _line(2)
    nothing_whole = tmp_path / "host-2-1.open"
    nothing_whole.write_bytes(b'{"n":1')
    assert close_segment(nothing_whole) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host-1-1.jsonl"]


def test_the_master_closes_the_segments_of_a_dead_worker_only(tmp_path):
    host = socket.gethostname()
    dead, alive = 2**22 + 17, os.getpid()  # above the default pid_max: never a live process
    (tmp_path / f"{host}-{dead}-5.open").write_bytes(_line(1) + b'{"n":2')
    (tmp_path / f"{host}-{alive}-6.open").write_bytes(_line(3))
    (tmp_path / f"otherhost-{dead}-7.open").write_bytes(_line(4))
    assert close_orphaned_segments(tmp_path, alive + 1) == []
    closed = close_orphaned_segments(tmp_path)  # at start: every dead pid of this host
    assert closed == [tmp_path / f"{host}-{dead}-5.jsonl"]
    assert closed[0].read_bytes() == _line(1)
    assert (tmp_path / f"{host}-{alive}-6.open").exists()  # a running process keeps its own
    assert (tmp_path / f"otherhost-{dead}-7.open").exists()  # another host's are not ours
    assert close_orphaned_segments(tmp_path, alive) == [tmp_path / f"{host}-{alive}-6.jsonl"]


def test_a_forked_child_writes_its_own_segment(tmp_path):
    payload_log = PayloadLog(tmp_path, segment_bytes=1 << 20, segment_seconds=0)
    payload_log.append(_line(1), "test.event")
    parent_segment = payload_log.segment
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        written = payload_log.append(_line(2), "test.event")
        payload_log.close()
        os._exit(0 if written else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert payload_log.segment == parent_segment and parent_segment.read_bytes() == _line(1)
    (child_segment,) = tmp_path.glob(f"*-{child}-*.jsonl")
    assert child_segment.read_bytes() == _line(2)


def test_a_full_disk_drops_events_counts_them_logs_once_and_never_tears_a_line(tmp_path, caplog):
    with small_tmpfs(tmp_path / "small", 64) as mount:
        payload_log = PayloadLog(mount / "payloads", segment_bytes=1 << 20, segment_seconds=0)
        assert payload_log.append(_line(0), "test.event")
        fill(mount)
        before = _dropped("disk_full")
        wide = _line(1, width=6000)  # more than the rest of the segment's last block: cut short
        with caplog.at_level(logging.ERROR, logger="ml_app.payload_log"):
            results = [payload_log.append(wide, "test.event") for _ in range(3)]
        assert results == [False, False, False]
        assert _dropped("disk_full") - before == 3
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
        assert payload_log.segment.read_bytes() == _line(0)  # no partial line left behind
        (mount / FILLER).unlink()
        assert payload_log.append(_line(2), "test.event")
        payload_log.close()
        assert _lines(mount / "payloads") == [_line(0), _line(2)]


def test_an_unwritable_directory_is_counted_not_raised(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the directory should be")
    payload_log = PayloadLog(blocked, segment_bytes=1 << 20, segment_seconds=0)
    before = _dropped("io_error") + _dropped("not_writable")
    assert payload_log.append(_line(1), "test.event") is False
    assert _dropped("io_error") + _dropped("not_writable") - before == 1


@pytest.fixture(autouse=True)
def _quiet_payload_log(caplog):
    caplog.set_level(logging.CRITICAL, logger="ml_app.payload_log")
