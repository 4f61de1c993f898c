"""Settings in the shell that runs the tests change no result: fixtures and servers drop them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.server import PROJECT_ROOT, SETTING_PREFIXES, GunicornServer

# What a developer's shell might well carry; each one would change some test's answer.
FROM_THE_SHELL = {
    "ML_APP_ADMIN_TOKEN": "from-the-shell",
    "ML_APP_METRICS_TOKEN": "from-the-shell",
    "ML_APP_MAX_BODY_BYTES": "10",
    "ML_APP_DEFAULT_MODEL": "diabetes",
    "GUNICORN_MAX_REQUESTS": "1",
}
# Tests whose answers depend on those settings being absent.
SENSITIVE_TESTS = [
    "tests/unit/test_isolation.py::test_no_setting_reaches_a_test",
    "tests/unit/test_admin.py::test_admin_routes_do_not_exist_without_a_token",
    "tests/unit/test_metrics.py::test_metrics_are_open_when_no_token_is_set",
    "tests/unit/test_predict.py::test_iris_single_row_answers_setosa_with_probabilities",
]


def test_no_setting_reaches_a_test():
    assert [name for name in os.environ if name.startswith(SETTING_PREFIXES)] == []


def test_servers_started_by_tests_get_no_setting_from_the_shell(monkeypatch, tmp_path: Path):
    for name, value in FROM_THE_SHELL.items():
        monkeypatch.setenv(name, value)
    server = GunicornServer(tmp_path, tmp_path / "server.log", ML_APP_BACKEND="onnx")
    server.stop()  # never started: lets go of the port it holds
    settings = {k: v for k, v in server.env.items() if k.startswith(SETTING_PREFIXES)}
    assert settings == {"ML_APP_STORE": str(tmp_path), "ML_APP_BACKEND": "onnx"}


def test_a_shell_full_of_settings_changes_no_result(tmp_path: Path):
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SENSITIVE_TESTS],
        cwd=PROJECT_ROOT,
        env={**os.environ, **FROM_THE_SHELL, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert f"{len(SENSITIVE_TESTS)} passed" in ran.stdout
