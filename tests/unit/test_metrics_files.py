"""Dead workers' metrics files folded into one archive (child_exit), and a full metrics disk."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prometheus_client.values
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from ml_app.core import metrics_files
from ml_app.core.config import PROJECT_ROOT
from tests.support.prometheus import Exposition
from tests.support.tmpfs import small_tmpfs

REQUESTS = "ml_app_http_requests"
LATENCY = "ml_app_http_request_duration_seconds"
BUCKETS = ("0.01", "0.1", "+Inf")


def write_worker_files(directory: Path, pid: int, requests: dict[str, float]) -> None:
    """Write what a worker leaves behind, in prometheus_client's own files and key format."""
    counters = MmapedDict(str(directory / f"counter_{pid}.db"))
    histograms = MmapedDict(str(directory / f"histogram_{pid}.db"))
    gauges = MmapedDict(str(directory / f"gauge_livemax_{pid}.db"))
    help_text = "test"
    for status, count in requests.items():
        key = mmap_key(REQUESTS, REQUESTS + "_total", ["status"], [status], help_text)
        counters.write_value(key, count, 0.0)
    total = sum(requests.values())
    # Every request in the 0.1 s bucket, 0.05 s each (histogram files hold per-bucket counts).
    for le in BUCKETS:
        key = mmap_key(LATENCY, LATENCY + "_bucket", ["le"], [le], help_text)
        histograms.write_value(key, total if le == "0.1" else 0.0, 0.0)
    sum_key = mmap_key(LATENCY, LATENCY + "_sum", [], [], help_text)
    histograms.write_value(sum_key, 0.05 * total, 0.0)
    ready = mmap_key("ml_app_model_ready", "ml_app_model_ready", [], [], help_text)
    gauges.write_value(ready, 1.0, 0.0)
    for mapped in (counters, histograms, gauges):
        mapped.close()


def scrape(directory: Path) -> Exposition:
    """What /metrics would serve: the stock collector over every *.db file."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return Exposition.parse(generate_latest(registry).decode())


def assert_requests(metrics: Exposition, ok: float, failed: float) -> None:
    assert metrics.total(REQUESTS + "_total", status="200") == ok
    assert metrics.total(REQUESTS + "_total", status="500") == failed
    assert metrics.total(LATENCY + "_count") == ok + failed
    assert metrics.total(LATENCY + "_bucket", le="0.01") == 0
    assert metrics.total(LATENCY + "_bucket", le="0.1") == ok + failed
    assert metrics.total(LATENCY + "_sum") == pytest.approx(0.05 * (ok + failed))


@pytest.fixture
def gunicorn_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """gunicorn.conf.py's settings and hooks, for a metrics directory in tmp_path."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # Loading the file sets thread variables and installs its file class into prometheus_client:
    # both undone after the test.
    for thread_variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(thread_variable, os.environ.get(thread_variable, "1"))
    monkeypatch.setenv("NUMEXPR_NUM_THREADS", os.environ.get("NUMEXPR_NUM_THREADS", "1"))
    monkeypatch.setattr(prometheus_client.values, "MmapedDict", prometheus_client.values.MmapedDict)
    return runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))


@pytest.fixture
def child_exit(gunicorn_settings: dict[str, Any]) -> Callable[[int], None]:
    """The child_exit hook, as the master calls it when a worker exits."""
    return lambda pid: gunicorn_settings["child_exit"](None, SimpleNamespace(pid=pid))


def test_child_exit_folds_recycled_workers_into_one_archive(tmp_path: Path, child_exit):
    write_worker_files(tmp_path, 1, {"200": 5})  # a live worker: never touched
    for pid in range(100, 160):
        write_worker_files(tmp_path, pid, {"200": pid, "500": 1})
        child_exit(pid)
        folded = range(100, pid + 1)
        # After every exit the totals are exact: nothing lost, nothing counted twice.
        assert_requests(scrape(tmp_path), ok=5 + sum(folded), failed=len(folded))

    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_1.db",
        "counter_archive.db",
        "gauge_livemax_1.db",
        "histogram_1.db",
        "histogram_archive.db",
    ]
    assert scrape(tmp_path).total("ml_app_model_ready") == 1  # the live worker's gauge only


def test_a_fold_cut_short_after_the_rename_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    archive = metrics_files.MetricsArchive(tmp_path)
    write_worker_files(tmp_path, 7, {"200": 3})
    assert archive.fold(7)
    write_worker_files(tmp_path, 8, {"200": 4})
    unlink = Path.unlink

    def crash_on_the_worker_file(path: Path, missing_ok: bool = False) -> None:
        if path.name == "counter_8.db":
            raise OSError("cut short")
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", crash_on_the_worker_file)
    assert not archive.fold(8)
    monkeypatch.setattr(Path, "unlink", unlink)
    assert (tmp_path / "counter_8.db").exists()
    assert (tmp_path / "counter_archive.db.journal").exists()

    write_worker_files(tmp_path, 9, {"200": 5})
    assert archive.fold(9)
    # The archive already held worker 8: its file went, and its samples count once.
    assert not list(tmp_path.glob("*_8.db"))
    assert not list(tmp_path.glob("*.journal"))
    assert_requests(scrape(tmp_path), ok=12, failed=0)


def test_a_fold_cut_short_before_the_rename_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    archive = metrics_files.MetricsArchive(tmp_path)
    write_worker_files(tmp_path, 7, {"200": 3})
    assert archive.fold(7)
    write_worker_files(tmp_path, 8, {"200": 4, "500": 2})

    def crash(*args: object) -> None:
        raise OSError("cut short")

    monkeypatch.setattr(os, "replace", crash)
    assert not archive.fold(8)
    monkeypatch.undo()
    # The worker's files still count; the unfinished archive is not a *.db a scrape reads.
    assert_requests(scrape(tmp_path), ok=7, failed=2)
    assert archive.fold(8)
    assert_requests(scrape(tmp_path), ok=7, failed=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "archive.lock",
        "counter_archive.db",
        "histogram_archive.db",
    ]


def test_an_unreadable_dead_file_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    (tmp_path / "counter_5.db").write_bytes(b"")  # cut short: not even its header
    assert not metrics_files.MetricsArchive(tmp_path).fold(5)
    assert "could not fold dead workers' metrics [5]" in caplog.text


def test_on_starting_clears_archives_and_journals(tmp_path: Path, gunicorn_settings):
    for name in ("counter_3.db", "counter_archive.db", "counter_archive.db.new", "x.journal"):
        (tmp_path / name).write_bytes(b"")
    gunicorn_settings["on_starting"](SimpleNamespace(master_pid=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted for this test only."""
    with small_tmpfs(tmp_path / "tmpfs", size_kib=1024) as mounted:
        yield mounted


# Runs as the server does: gunicorn.conf.py first, then metrics. One series gets its file, the
# disk fills, then 3,000 new series need the file to grow past its first 64 KiB.
WORKER = textwrap.dedent(
    """
    import json, runpy, sys
    from pathlib import Path
    runpy.run_path("gunicorn.conf.py")
    from prometheus_client import REGISTRY, Counter
    from ml_app.core import metrics_files
    from tests.support.tmpfs import fill
    requests = Counter("ml_app_test_requests", "test", ["series"])
    requests.labels("first").inc()
    fill(Path(sys.argv[1]))
    for n in range(3000):
        requests.labels(f"series-{n}").inc()
    requests.labels("first").inc()
    last = {"series": "series-2999"}
    print(json.dumps({"failures": metrics_files.take_write_failures(),
                      "in_memory": REGISTRY.get_sample_value("ml_app_test_requests_total", last)}))
    """
)


def test_a_full_metrics_disk_costs_new_series_not_the_worker(full_disk: Path):
    ran = subprocess.run(
        [sys.executable, "-c", WORKER, str(full_disk)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(full_disk)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Before reserving blocks, the first write past the full disk was SIGBUS (-7).
    assert ran.returncode == 0, (ran.returncode, ran.stderr)
    assert json.loads(ran.stdout) == {"failures": 1, "in_memory": 1.0}
    assert ran.stderr.count("cannot grow") == 1  # logged once, not once per series
    (full_disk / "filler").unlink()
    metrics = scrape(full_disk)
    # The series that had its place in the file kept counting there.
    assert metrics.total("ml_app_test_requests_total", series="first") == 2
    counted_on_disk = len(metrics.series("ml_app_test_requests_total"))
    assert 1 < counted_on_disk < 3001


def test_refused_files_are_counted_once_by_the_next_request(monkeypatch: pytest.MonkeyPatch):
    from ml_app.core import metrics

    def counted() -> float | None:
        return REGISTRY.get_sample_value("ml_app_metrics_write_failures_total")

    before = counted()
    monkeypatch.setattr(metrics_files, "_pending_failures", 2)  # two files refused meanwhile
    for _ in range(3):
        metrics.observe_http("GET", "/health/live", 200, None)
    assert counted() == before + 2
    assert metrics_files.take_write_failures() == 0
