"""schemathesis' GraphQL mode against /graphql on real Gunicorn: no 5xx for any query it makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.support.server import PROJECT_ROOT

MAX_EXAMPLES = 150  # per query field and phase
SEED = 20261130  # reproducible; change it to explore other cases
FIELDS = {"Query.models", "Query.defaultModel", "Query.model", "Query.predict"}


def test_no_query_gets_a_server_error(demo_server, tmp_path):
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        demo_server.url + "/graphql",
        "--checks=no_5xx_answer",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--request-timeout=20",
        "--report=json",
        f"--report-dir={tmp_path}",
    ]
    # The hooks module teaches schemathesis the custom scalars (rows, named rows, JSON).
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.graphql_scalars",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    reports = list(tmp_path.glob("json-*.json"))
    assert len(reports) == 1, (reports, output[-6000:])
    report = orjson.loads(reports[0].read_bytes())
    assert report["failures"] == [] and report["errors"] == [], output[-6000:]
    assert set(report["valid_rates"]) == FIELDS, output[-6000:]
    assert report["operations"]["tested"] == report["operations"]["total"] == len(FIELDS)
    assert report["test_cases"]["generated"] >= 50 * len(FIELDS)
    # the fuzzer reached answered predictions, not only refusals
    entries = demo_server.log_entries()
    predicted = [e for e in entries if e.get("route") == "/graphql" and "rows" in e]
    assert predicted, "no generated query reached a prediction"
    assert not [e for e in entries if e.get("status", 0) >= 500]
