"""The real image: built by `make build`, run by `make run-container`, used over real HTTP."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.containers import LIKE_KUBERNETES, Container, docker, engine_is_podman
from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.server import free_port

# Every process in the container: name and real uid, read from /proc (the image has no ps).
LIST_PROCESSES = (
    "import pathlib\n"
    "for p in pathlib.Path('/proc').glob('[0-9]*/status'):\n"
    "    f = dict(l.split(':', 1) for l in p.read_text().splitlines() if ':' in l)\n"
    "    print(f['Name'].strip(), f['Uid'].split()[0])\n"
)


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """One running container with two workers, locked down as in deploy/k8s."""
    log_dir = tmp_path_factory.mktemp("containers")
    running = Container(image, log_dir, LIKE_KUBERNETES, WEB_CONCURRENCY="2")
    try:
        yield running.start()
    finally:
        running.remove()


def test_image_holds_only_what_serving_needs(container):
    def listing(path: str) -> set[str]:
        return set(container.exec("ls", "-A", path).stdout.split())

    assert listing("/app") == {"deploy", "gunicorn.conf.py", "ml_app", "model"}
    assert listing("/app/model") == {"store"}  # trained in the build stage; no training code
    assert listing("/app/model/store") == {"breast_cancer", "diabetes", "iris"}
    venv_bin = listing("/opt/venv/bin")
    assert "gunicorn" in venv_bin
    assert "pip" not in venv_bin  # build tools stayed in the build stage
    # ONNX models converted in the build stage
    assert container.exec("test", "-f", "/app/model/store/iris/1/model.onnx").returncode == 0
    # The converter stays, for versions registered while the container runs (registered in a
    # child process: no serving worker imports it, see test_container_registration.py).
    found = container.exec(
        "python", "-c", "import importlib.util as u; print(u.find_spec('skl2onnx') is not None)"
    )
    assert found.stdout.strip() == "True"
    assert container.exec("test", "-e", "/wheels").returncode != 0


def test_serves_the_demo_models(container):
    ready = requests.get(container.url + "/health/ready", timeout=10).json()
    forest = requests.get(
        container.url + "/models/breast_cancer", headers=container.auth, timeout=10
    ).json()
    assert forest["versions"][0]["metadata"]["backend"]["name"] == "onnx"
    assert ready["models"] == {"breast_cancer": "1", "diabetes": "1", "iris": "1"}
    batch = requests.post(
        container.url + "/predict/batch",
        json={"instances": [IRIS_SETOSA, IRIS_VIRGINICA]},
        headers=container.auth,
        timeout=10,
    )
    assert batch.status_code == 200
    assert batch.json()["predictions"] == ["setosa", "virginica"]
    diabetes = requests.post(
        container.url + "/models/diabetes/predict",
        json={"features": [0.01] * 10},
        headers=container.auth,
        timeout=10,
    ).json()
    assert isinstance(diabetes["prediction"], float)
    bad = requests.post(
        container.url + "/predict", json={"features": [1.0]}, headers=container.auth, timeout=10
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_input")
    # Keys are on in the image (its keys file mounted from a secret): no key, no prediction.
    keyless = requests.post(container.url + "/predict", json={"features": IRIS_SETOSA}, timeout=10)
    assert (keyless.status_code, keyless.json()["code"]) == (401, "unauthorized")
    assert container.api_key not in container.logs()


def test_runs_as_non_root(container):
    result = container.exec("python", "-c", LIST_PROCESSES)
    assert result.returncode == 0, result.stderr
    processes = [line.split() for line in result.stdout.splitlines()]
    gunicorn_uids = {int(uid) for name, uid in processes if name == "gunicorn"}
    assert len([name for name, _ in processes if name == "gunicorn"]) == 3  # master + 2 workers
    assert gunicorn_uids and 0 not in gunicorn_uids, processes
    assert container.exec("id", "-u").stdout.strip() == str(gunicorn_uids.pop())


def _setosa_predictions(container: Container) -> float:
    response = requests.get(container.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "ml_app_predictions"  # the parser drops the _total suffix
        for sample in family.samples
        if sample.name == "ml_app_predictions_total"
        and sample.labels.get("model") == "iris"
        and sample.labels.get("class") == "setosa"
    )


def test_metrics_are_merged_across_workers(container):
    before = _setosa_predictions(container)
    with requests.Session() as session:
        for _ in range(8):
            session.post(
                container.url + "/predict",
                json={"features": IRIS_SETOSA},
                headers=container.auth,
                timeout=10,
            )
    # Whichever of the two workers answered, one scrape counts every prediction.
    assert _setosa_predictions(container) == before + 8
    # Multiprocess mode: each worker writes its values under PROMETHEUS_MULTIPROC_DIR.
    listing = container.exec("sh", "-c", 'ls -n "$PROMETHEUS_MULTIPROC_DIR"').stdout
    owners = {line.split()[2] for line in listing.splitlines() if line.endswith(".db")}
    assert owners == {container.exec("id", "-u").stdout.strip()}, listing


def test_healthcheck_runs_python_against_readiness(container):
    check = orjson.loads(
        docker("inspect", "--format", "{{json .Config.Healthcheck}}", container.name).stdout
    )
    assert check["Test"][:2] == ["CMD", "python"], check
    command = check["Test"][1:]
    assert container.exec(*command).returncode == 0
    # The same command fails when nothing answers on the port it is told to ask.
    unready = docker("exec", "--env", f"PORT={free_port()}", container.name, *command, check=False)
    assert unready.returncode == 1, unready

    if engine_is_podman():  # podman runs health checks on demand only
        run = subprocess.run(
            ["podman", "healthcheck", "run", container.name],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr

    def healthy() -> bool:
        return container.state().get("Health", {}).get("Status") == "healthy"

    wait_until(healthy, 60, "the HEALTHCHECK to report healthy", interval=1)


def test_docker_stop_lets_the_in_flight_request_finish(image, tmp_path):
    body = orjson.dumps({"features": IRIS_SETOSA})
    running = Container(image, tmp_path, WEB_CONCURRENCY="2")
    head = (
        "POST /predict HTTP/1.1\r\nHost: ml-app\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {running.api_key}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    stop = None
    try:
        running.start()
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as client:
            client.sendall(head)
            # Gunicorn answers 100 Continue from the worker that has taken the request.
            assert client.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
            stop = subprocess.Popen(
                ["docker", "stop", "--time", "60", running.name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _wait_for_log(running, "Handling signal: term")
            assert stop.poll() is None, "docker stop returned while a request was in flight"
            client.sendall(body)
            answer = _read_all(client)
        stop_output, _ = stop.communicate(timeout=90)
        assert stop.returncode == 0, stop_output
        head_out, _, payload = answer.partition(b"\r\n\r\n")
        assert head_out.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]
        assert orjson.loads(payload)["prediction"] == "setosa"
        state = running.state()
        assert (state["Running"], state["ExitCode"]) == (False, 0), state
        assert "SIGKILL" not in running.logs()
    finally:
        if stop is not None and stop.poll() is None:
            stop.kill()
            stop.communicate()
        running.remove()


def _wait_for_log(container: Container, text: str, timeout: float = 30) -> None:
    wait_until(lambda: text in container.logs(), timeout, f"{text!r} in the container's log")


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
