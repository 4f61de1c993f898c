"""Real nginx (Debian's) in front of real Gunicorn, configured by `python -m ml_app proxy-config`.

Slow clients tie up nginx, not the sync workers; bodies over the limit get a JSON 413 the client
can read; TLS works; the app sees the client address through exactly one trusted hop.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from ml_app.core.config import PROJECT_ROOT
from ml_app.ops.proxy import BodyLimits, TlsFiles, render_proxy_config
from tests.support.debian import ensure_commands
from tests.support.polling import wait_until
from tests.support.reference import IRIS_SETOSA
from tests.support.server import GunicornServer, free_port, terminate

MAX_BODY = 1024 * 1024
ADMIN_MAX_BODY = 3 * MAX_BODY
ADMIN_TOKEN = "nginx-test-token"
SLOW_CLIENTS = 50
SLOW_SECONDS = 40


def _nginx(run_dir: Path, listen_port: int, upstream_port: int, tls: TlsFiles | None = None):
    (nginx,) = ensure_commands(("nginx",), ("nginx",))
    config = render_proxy_config(
        run_dir,
        f"127.0.0.1:{listen_port}",
        f"127.0.0.1:{upstream_port}",
        BodyLimits(MAX_BODY, ADMIN_MAX_BODY),
        tls=tls,
    )
    with (run_dir / "nginx.log").open("wb") as log:
        process = subprocess.Popen(
            [nginx, "-c", str(config), "-e", "stderr"], stdout=subprocess.DEVNULL, stderr=log
        )

    def listening() -> bool:
        assert process.poll() is None, (run_dir / "nginx.log").read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", listen_port)) == 0

    wait_until(listening, timeout=20, what="nginx to listen")
    return process


@pytest.fixture
def proxied(demo_store: Path, tmp_path: Path) -> Iterator[tuple[GunicornServer, str]]:
    """Gunicorn (2 workers, trusting one proxy hop) behind nginx; yields both and nginx's URL."""
    server = GunicornServer(
        demo_store,
        tmp_path / "server.log",
        workers=2,
        wait_for="/health/ready",
        ML_APP_PROXY_HOPS="1",
        ML_APP_MAX_BODY_BYTES=str(MAX_BODY),
        ML_APP_ADMIN_TOKEN=ADMIN_TOKEN,
        ML_APP_ADMIN_MAX_UPLOAD_BYTES=str(ADMIN_MAX_BODY),
    ).start()
    port = free_port()
    nginx = _nginx(tmp_path / "nginx", port, server.port)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        terminate(nginx)
        server.stop()


def _predict(url: str) -> requests.Response:
    return requests.post(url + "/predict", json={"features": IRIS_SETOSA}, timeout=10)


def _slow_client(port: int, until: float) -> None:
    """Send a request's headers one byte a second; reconnect when nginx gives up on us."""
    header = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                for byte in header:
                    if time.monotonic() >= until:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(1)
        except OSError:
            time.sleep(0.1)  # cut off by client_header_timeout: come back, as an attacker would


def test_slow_clients_do_not_starve_the_workers(proxied):
    _, url = proxied
    port = int(url.rsplit(":", 1)[1])
    until = time.monotonic() + SLOW_SECONDS
    slow = [threading.Thread(target=_slow_client, args=(port, until)) for _ in range(SLOW_CLIENTS)]
    for thread in slow:
        thread.start()
    time.sleep(2)  # every slow client is connected and trickling
    latencies, answers = [], []
    for _ in range(200):
        started = time.monotonic()
        response = _predict(url)
        latencies.append(time.monotonic() - started)
        answers.append((response.status_code, response.json()["prediction"]))
        time.sleep(0.1)
    for thread in slow:
        thread.join()
    assert answers == [(200, "setosa")] * 200
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 1.0, f"p99 {p99:.3f} s"


def test_a_body_over_the_limit_gets_a_json_413_the_client_can_read(proxied):
    _, url = proxied
    rows = [IRIS_SETOSA] * 80_000  # about 1.4 MB of JSON, over the 1 MiB limit
    response = requests.post(
        url + "/predict/batch",
        data=orjson.dumps({"instances": rows}),
        headers={"Content-Type": "application/json", "X-Request-ID": "too-big-1"},
        timeout=30,
    )
    assert response.status_code == 413
    body = response.json()
    assert body == {
        "error": f"Request body is larger than the {MAX_BODY}-byte limit (ML_APP_MAX_BODY_BYTES).",
        "code": "payload_too_large",
        "status": 413,
        "request_id": "too-big-1",
        "details": {},
    }
    assert response.headers["X-Request-ID"] == "too-big-1"


def test_admin_uploads_have_their_own_limit(proxied):
    """Past the request limit, under the admin upload limit: through nginx to the app, which
    reads the upload and refuses it (not a model: 422); past the upload limit: nginx's 413."""
    _, url = proxied
    through = requests.post(
        url + "/admin/models/iris/versions",
        files={"artifact": ("m.skops", b"x" * (2 * MAX_BODY))},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert through.headers.get("Content-Type") == "application/json", through.text[:200]
    assert (through.status_code, through.json()["code"]) == (422, "invalid_input")
    over = requests.post(
        url + "/admin/models/iris/versions",
        files={"artifact": ("m.skops", b"x" * (ADMIN_MAX_BODY + 1))},
        headers={"X-Request-ID": "upload-1"},
        timeout=30,
    )
    assert over.status_code == 413
    assert over.json() == {
        "error": f"Upload is larger than the {ADMIN_MAX_BODY}-byte limit "
        "(ML_APP_ADMIN_MAX_UPLOAD_BYTES).",
        "code": "payload_too_large",
        "status": 413,
        "request_id": "upload-1",
        "details": {},
    }


@pytest.mark.parametrize(
    ("path", "size", "status", "code"),
    [
        ("/models/no-such-model/predict", MAX_BODY - 100, 404, "model_not_found"),
        ("/admin/models/iris/versions", 2 * MAX_BODY, 401, "unauthorized"),
    ],
)
def test_an_answer_given_before_the_body_is_read_reaches_the_client(
    proxied, path, size, status, code
):
    """The app refuses before reading a large body; the client still gets the app's JSON answer
    (an unread body left in the socket must not turn the answer into a reset, and nginx's 502)."""
    _, url = proxied
    body = b'{"features": [' + b"1.0, " * (size // 5 - 4) + b"1.0]}"
    for attempt in range(20):
        response = requests.post(
            url + path,
            data=body,
            headers={"Content-Type": "application/json", "X-Request-ID": f"early-{attempt}"},
            timeout=30,
        )
        assert response.headers.get("Content-Type") == "application/json", response.text[:200]
        assert (response.status_code, response.json()["code"]) == (status, code)
        assert response.json()["request_id"] == f"early-{attempt}"


def test_the_app_sees_the_client_through_one_trusted_hop(proxied):
    server, url = proxied
    response = requests.post(
        url + "/predict",
        json={"features": IRIS_SETOSA},
        headers={"X-Request-ID": "hop-1", "X-Forwarded-For": "203.0.113.9"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "hop-1"  # passed through nginx to the app

    def access_line() -> dict | None:
        return next((e for e in server.log_entries() if e.get("request_id") == "hop-1"), None)

    line = wait_until(access_line, timeout=10, what="the access line")
    # nginx appends the address it saw (127.0.0.1) to what the client claimed; the app trusts
    # one hop, so it takes nginx's word, never the client's.
    assert line["client"] == "127.0.0.1"


def test_an_unreachable_app_is_a_json_503(demo_store, tmp_path):
    port = free_port()
    nginx = _nginx(tmp_path / "nginx", port, free_port())  # nothing listens upstream
    try:
        response = _predict(f"http://127.0.0.1:{port}")
        admin = requests.get(f"http://127.0.0.1:{port}/admin/models/iris", timeout=10)
    finally:
        terminate(nginx)
    for answer in (response, admin):  # the admin location has its own error pages: same shape
        assert answer.status_code == 503
        assert answer.json()["code"] == "upstream_unavailable"
        assert answer.headers["Retry-After"] == "1"


def test_tls_with_a_certificate_from_files(demo_store, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server = GunicornServer(demo_store, tmp_path / "server.log", workers=2).start()
    plain, secure = free_port(), free_port()
    tls = TlsFiles(f"127.0.0.1:{secure}", cert, key)
    nginx = _nginx(tmp_path / "nginx", plain, server.port, tls=tls)
    try:
        response = requests.post(
            f"https://127.0.0.1:{secure}/predict",
            json={"features": IRIS_SETOSA},
            verify=str(cert),
            timeout=10,
        )
    finally:
        terminate(nginx)
        server.stop()
    assert (response.status_code, response.json()["prediction"]) == (200, "setosa")


def test_proxy_config_command_renders_a_valid_file(tmp_path):
    (nginx,) = ensure_commands(("nginx",), ("nginx",))
    rendered = subprocess.run(
        [
            *(sys.executable, "-m", "ml_app", "proxy-config"),
            *("--run-dir", str(tmp_path / "run"), "--upstream", "unix:/run/ml_app/gunicorn.sock"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    config = Path(rendered.stdout.strip())
    text = config.read_text()
    assert "client_max_body_size 10485760;" in text  # ML_APP_MAX_BODY_BYTES' default
    assert "client_max_body_size 268435456;" in text  # ML_APP_ADMIN_MAX_UPLOAD_BYTES' default
    assert "${NGINX_" not in text
    checked = subprocess.run(
        [nginx, "-t", "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
