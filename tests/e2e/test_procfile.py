"""The Procfile run the way Heroku runs it: a fresh virtualenv with requirements.txt, the build
hook (bin/post_compile), then `honcho start web` with a PORT."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.reference import IRIS_SETOSA
from tests.support.server import PROJECT_ROOT, free_port, wait_for_http

# Variables the test run may carry that a dyno would not have.
NOT_ON_A_DYNO = ("ML_APP_STORE", "PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "PYTHONPATH")


def _pushed_files() -> list[str]:
    """The files `git push` would send: tracked plus new, not ignored, still present."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (PROJECT_ROOT / name).is_file()]


def _dyno_env(root: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_ON_A_DYNO}
    (root / "tmp").mkdir(exist_ok=True)
    return {
        **env,
        "PATH": f"{root / 'venv' / 'bin'}{os.pathsep}{env['PATH']}",
        "TMPDIR": str(root / "tmp"),
        **extra,
    }


@pytest.fixture(scope="module")
def slug(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An app folder built like the Python buildpack does; returns the build root."""
    root = tmp_path_factory.mktemp("heroku")
    app = root / "app"
    for name in _pushed_files():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, app / name)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "-r", "requirements.txt"], cwd=app, check=True)
    hook = subprocess.run(
        ["bin/post_compile"],
        cwd=app,
        env=_dyno_env(root),
        capture_output=True,
        text=True,
        check=False,
    )
    assert hook.returncode == 0, hook.stdout + hook.stderr
    return root


@pytest.fixture(scope="module")
def web(slug: Path) -> Iterator[tuple[str, Path]]:
    """`honcho start web` on a free port of 127.0.0.1; yields (url, log path)."""
    port = free_port()
    log_path = slug / "honcho.log"
    env = _dyno_env(slug, HOST="127.0.0.1", WEB_CONCURRENCY="2")
    with log_path.open("wb") as log:
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "web", "--no-colour", "--port", str(port)],
            cwd=slug / "app",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the whole process group can be stopped
        )
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(url + "/health/ready", lambda: honcho.poll() is None, timeout=90)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()}") from exc
        yield url, log_path
    finally:
        _stop_group(honcho)


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_python_version_file_names_the_interpreter_we_run(slug):
    wanted = (PROJECT_ROOT / ".python-version").read_text().strip()
    venv_python = slug / "venv" / "bin" / "python"
    found = subprocess.run(
        [str(venv_python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == wanted or found.startswith(wanted + ".")


def test_build_hook_puts_the_demo_models_in_the_slug(slug):
    store = slug / "app" / "model" / "store"
    assert sorted(p.name for p in store.iterdir()) == ["breast_cancer", "diabetes", "iris"]
    assert (store / "iris" / "1" / "model.skops").is_file()
    assert (store / "breast_cancer" / "1" / "model.onnx").is_file()  # converted in the build
    site = next((slug / "venv" / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("skl2onnx*"))  # the training tools left the slug again


def test_web_process_serves_predictions(web):
    url, _ = web
    ready = requests.get(url + "/health/ready", timeout=10).json()
    assert ready["models"] == {"breast_cancer": "1", "diabetes": "1", "iris": "1"}
    answer = requests.post(url + "/predict", json={"features": IRIS_SETOSA}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["prediction"] == "setosa"
    forest = requests.get(url + "/models/breast_cancer", timeout=10).json()
    assert forest["versions"][0]["metadata"]["backend"]["name"] == "onnx"


def test_web_process_honours_port_and_web_concurrency(web, slug):
    url, log_path = web
    deadline = time.monotonic() + 30
    while log_path.read_text().count("Booting worker with pid") < 2:
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    log = log_path.read_text()
    assert log.count("Booting worker with pid") == 2
    listening = re.search(r"Listening at: (http://\S+) \((\d+)\)", log)
    assert listening is not None, log
    assert listening.group(1) == url
    # The start command set the multiprocess directory before Python started.
    environ = Path(f"/proc/{listening.group(2)}/environ").read_bytes().split(b"\0")
    multiproc = slug / "tmp" / "ml_app-metrics"
    assert f"PROMETHEUS_MULTIPROC_DIR={multiproc}".encode() in environ
    assert multiproc.is_dir()
