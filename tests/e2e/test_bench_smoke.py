"""`make bench` in smoke mode: real Gunicorn servers, real wrk, a result file with figures.

Speed is never asserted here (that is what the benchmark itself is for); only that every case,
server and memory measurement produced a figure, and that no request failed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVERS = {"ceiling", "ml_app_onnx", "ml_app_sklearn"}
CASES = {(model, rows) for model in ("iris", "breast_cancer") for rows in (1, 100)}


def test_bench_smoke_produces_figures(demo_store: Path, tmp_path: Path):
    output = tmp_path / "result.json"
    command = [sys.executable, "-m", "bench.run", "--smoke", "--store", str(demo_store)]
    completed = subprocess.run(
        [*command, "--output", str(output)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = orjson.loads(output.read_bytes())
    summary = result["summary"]
    assert {(row["server"], row["model"], row["rows"]) for row in summary} == {
        (server, model, rows) for server in SERVERS for model, rows in CASES
    }
    for row in summary:
        assert row["errors"] == 0, row
        assert row["rps"] > 0 and row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"], row
        assert row["server_cpu_us"] > 0, row
    ratios = {r["ratio"] for r in summary if r["server"] == "ceiling"}
    assert ratios == {1.0}
    memory = {(m["backend"], m["workers"]): m for m in result["memory"]}
    assert set(memory) == {(b, w) for b in ("onnx", "sklearn") for w in (1, 4)}
    for (_, workers), entry in memory.items():
        assert len(entry["worker_kib"]) == workers
        assert entry["master_kib"] > 0 and min(entry["worker_kib"]) > 0
    assert "| iris | 1 | ml_app, ONNX Runtime |" in completed.stdout
