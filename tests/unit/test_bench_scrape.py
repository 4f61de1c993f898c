"""python -m bench.scrape runs, and its folded case leaves only the live workers and the archive."""

from __future__ import annotations

import os
import subprocess
import sys

from ml_app.core.config import PROJECT_ROOT


def test_bench_scrape_prints_files_and_times_for_both_handlings():
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    ran = subprocess.run(
        [sys.executable, "-m", "bench.scrape", "--workers", "3", "--scrapes", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line for line in ran.stdout.splitlines() if line.startswith("| 3 ")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    # Two live workers: counter, histogram and gauge files each; the archive adds one per type.
    assert [row[:3] for row in cells] == [
        ["3", "folded into the archive", "8"],
        ["3", "left in place", "12"],
    ]
    assert all(float(row[3]) > 0 for row in cells)
