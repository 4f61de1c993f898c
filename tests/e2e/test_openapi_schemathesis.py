"""schemathesis against /openapi.json on real Gunicorn: no 5xx, documented statuses and bodies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import requests

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
MAX_EXAMPLES = 50  # per operation and phase; about 2,500 requests in all
SEED = 20261121  # reproducible; change it to explore other cases
# Operations whose success path the document's examples must reach (a 2xx, not only errors).
MUST_SUCCEED = [
    "POST /predict",
    "POST /predict/batch",
    "POST /v2/models/{name}/infer",
    "POST /v1/models/{name}:predict",
    "POST /invocations",
]


def _operations(document: dict) -> set[str]:
    every = {f"{m.upper()} {path}" for path, ops in document["paths"].items() for m in ops}
    return every - {"GET /openapi.json"}  # schemathesis leaves out the document it reads


def test_every_operation_conforms_to_the_document(demo_server, tmp_path):
    operations = _operations(requests.get(demo_server.url + "/openapi.json", timeout=10).json())
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        demo_server.url + "/openapi.json",
        f"--checks={CHECKS}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--phases=examples,coverage,fuzzing",
        "--request-timeout=20",
        "--report=json",
        f"--report-dir={tmp_path}",
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
    )
    output = run.stdout + run.stderr
    # A crash writes no report: its own output says why, so check the exit status first.
    assert run.returncode == 0, output[-6000:]
    reports = list(tmp_path.glob("json-*.json"))
    assert len(reports) == 1, (reports, output[-6000:])
    report = orjson.loads(reports[0].read_bytes())
    assert report["failures"] == [] and report["errors"] == [], output[-6000:]
    assert report["operations"]["tested"] == report["operations"]["total"] == len(operations)
    assert set(report["valid_rates"]) == operations
    assert report["test_cases"]["generated"] >= 20 * len(operations)
    for operation in MUST_SUCCEED:
        accepted = sum(phase["accepted"] for phase in report["valid_rates"][operation].values())
        assert accepted > 0, f"{operation}: no generated request reached a 2xx answer"
    assert not [
        line for line in demo_server.log_path.read_text().splitlines() if '"status":500' in line
    ]
