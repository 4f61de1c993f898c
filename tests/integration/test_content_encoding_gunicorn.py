"""Compressed request bodies on real Gunicorn with two workers: decoded, limited, answered."""

from __future__ import annotations

import gzip
import time
import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests

from tests.support import reference
from tests.support.server import GunicornServer

ROWS = reference.sample_rows("iris", 8)
BODY_LIMIT = 10 * 1024 * 1024  # the default ML_APP_MAX_BODY_BYTES


@pytest.fixture(scope="module")
def server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("gunicorn-encoding") / "server.log"
    with GunicornServer(demo_store, log, workers=2, wait_for="/health/ready") as running:
        yield running


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_native_batch(server, demo_store, encoding):
    body = orjson.dumps({"instances": ROWS.tolist()})
    data = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    response = requests.post(
        server.url + "/predict/batch",
        data=data,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == reference.labels(demo_store, "iris", ROWS)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_v2_binary_with_the_decompressed_header_length(server, demo_store, encoding):
    tensor = ROWS.astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(ROWS.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(tensor)},
                }
            ],
            "outputs": [{"name": "predict_proba", "parameters": {"binary_data": True}}],
        }
    )
    raw = header + tensor
    data = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    response = requests.post(
        server.url + "/v2/models/iris/infer",
        data=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Encoding": encoding,
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    answer = orjson.loads(response.content[:length])
    assert answer["outputs"][0]["shape"] == [len(ROWS), 3]
    probabilities = reference.estimator(demo_store, "iris").predict_proba(ROWS)
    served = np.frombuffer(response.content[length:], dtype="<f8")
    assert served.tolist() == pytest.approx(probabilities.ravel().tolist(), abs=1e-5)


def test_a_gzip_bomb_is_413_quickly_and_the_workers_stay_small(server):
    bomb = _gzip_of_zeros(1 << 30)  # 1 GiB of zeros in about 1 MiB
    assert len(bomb) < 2 * 1024 * 1024
    warm_up = gzip.compress(orjson.dumps({"instances": ROWS.tolist()}))
    for _ in range(6):  # both workers have served a compressed batch before the bombs
        requests.post(
            server.url + "/predict/batch",
            data=warm_up,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=10,
        ).raise_for_status()
    before = {pid: _peak_rss_bytes(pid) for pid in server.worker_pids()}
    started = time.monotonic()
    for _ in range(4):  # enough requests for both workers to take some
        response = requests.post(
            server.url + "/predict/batch",
            data=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=30,
        )
        body = response.json()
        assert response.status_code == 413, body
        assert body["code"] == "payload_too_large"
        assert f"{BODY_LIMIT}-byte limit" in body["error"]
        assert body["request_id"] == response.headers["X-Request-ID"]
    elapsed = time.monotonic() - started
    assert elapsed < 8.0  # inflating a whole GiB four times would take far longer
    after = {pid: _peak_rss_bytes(pid) for pid in server.worker_pids()}
    assert after.keys() == before.keys()  # no worker died or was replaced
    growth = max(after[pid] - before[pid] for pid in before)
    print(f"bomb: 4 requests in {elapsed:.2f}s; largest worker peak RSS growth {growth} bytes")
    assert growth < 2 * BODY_LIMIT, growth  # the limit once and allocator slack, never the GiB
