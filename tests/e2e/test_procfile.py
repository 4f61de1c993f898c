"""The Procfile run the way Heroku runs it: what `git push` sends (the committed tree), a fresh
virtualenv with requirements.txt, the build hook (bin/post_compile), then `honcho start web`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA
from tests.support.server import PROJECT_ROOT, clean_environment, free_port, wait_for_http

# Variables the test run may carry that a dyno would not have.
NOT_ON_A_DYNO = ("ML_APP_STORE", "PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "PYTHONPATH")


def _export_pushed_tree(app: Path) -> None:
    """Write what `git push` sends into `app`: the files of HEAD, nothing uncommitted."""
    app.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(app)], input=archive.stdout, check=True)


def _dyno_env(root: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in clean_environment().items() if key not in NOT_ON_A_DYNO}
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
    _export_pushed_tree(app)
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


def test_the_slug_holds_what_is_committed_and_nothing_else(tmp_path):
    forgotten = PROJECT_ROOT / f"forgotten-{uuid.uuid4().hex}.py"  # written, never `git add`ed
    forgotten.write_text("x = 1\n")
    try:
        _export_pushed_tree(tmp_path / "app")
    finally:
        forgotten.unlink()
    committed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "-z", "HEAD"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    exported = {
        str(path.relative_to(tmp_path / "app"))
        for path in (tmp_path / "app").rglob("*")
        if path.is_file() or path.is_symlink()
    }
    assert exported == {name for name in committed.split("\0") if name}
    assert not (tmp_path / "app" / forgotten.name).exists()


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
    wait_until(
        lambda: log_path.read_text().count("Booting worker with pid") >= 2, 30, "two workers"
    )
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
