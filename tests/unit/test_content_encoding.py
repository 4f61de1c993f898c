"""Compressed request bodies: gzip and deflate decoded for every route, under the body limit."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import orjson
import pytest

from ml_app import create_app
from tests.support import reference
from tests.support.reference import IRIS_FEATURES

ROWS = reference.sample_rows("iris", 5)
BODY = orjson.dumps({"instances": ROWS.tolist()})
LIMIT = 256 * 1024


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()


@pytest.fixture
def small_limit_client(demo_store):
    return create_app({"store": demo_store, "max_body_bytes": LIMIT}).test_client()


def _store(client):
    return client.application.extensions["ml_app"].settings.store


def _post(client, path, data, encoding, content_type="application/json", **headers):
    headers = {"Content-Encoding": encoding, **headers} if encoding is not None else headers
    return client.post(path, data=data, headers=headers, content_type=content_type)


def _error(response, status, code):
    body = response.get_json()
    assert response.status_code == status, body
    assert (body["code"], body["status"]) == (code, status)
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZIP", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),  # zlib-wrapped, as RFC 9110 says
        ("deflate", _raw_deflate(BODY)),  # raw, as some clients send it
        ("identity", BODY),
        ("gzip, identity", gzip.compress(BODY)),
        ("deflate, gzip", gzip.compress(zlib.compress(BODY))),
        ("gzip", gzip.compress(BODY[:40]) + gzip.compress(BODY[40:])),  # two gzip members
    ],
    ids=["gzip", "x-gzip", "GZIP", "zlib", "raw", "identity", "listed", "twice", "members"],
)
def test_compressed_native_batch_predicts_like_the_plain_one(client, encoding, data):
    response = _post(client, "/predict/batch", data, encoding)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == reference.labels(_store(client), "iris", ROWS)


def test_v2_binary_header_length_counts_decompressed_bytes(client):
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(ROWS.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": ROWS.size * 4},
                }
            ]
        }
    )
    raw = header + ROWS.astype("<f4").tobytes()
    for encoding, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        response = _post(
            client,
            "/v2/models/iris/infer",
            data,
            encoding,
            "application/octet-stream",
            **{"Inference-Header-Content-Length": str(len(header))},
        )
        assert response.status_code == 200, response.get_json()
        expected = reference.labels(_store(client), "iris", ROWS.astype("<f4").astype(float))
        assert response.get_json()["outputs"][0]["data"] == expected


def test_mlflow_csv_and_v1_json_decode_too(client):
    lines = [",".join(IRIS_FEATURES), *(",".join(map(str, row)) for row in ROWS.tolist())]
    csv = gzip.compress("\n".join(lines).encode())
    expected = reference.labels(_store(client), "iris", ROWS)
    response = _post(client, "/invocations", csv, "gzip", "text/csv")
    assert response.get_json() == {"predictions": expected}
    response = _post(client, "/v1/models/iris:predict", zlib.compress(BODY), "deflate")
    assert response.get_json() == {"predictions": expected}


def test_unknown_encoding_is_415(client):
    body = _error(_post(client, "/predict/batch", BODY, "br"), 415, "unsupported_media_type")
    assert "'br' is not supported" in body["error"]


@pytest.mark.parametrize(
    ("encoding", "data", "fragment"),
    [
        ("gzip", gzip.compress(BODY)[:-12], "ends before its gzip stream does"),
        ("deflate", zlib.compress(BODY)[:-12], "ends before its deflate stream does"),
        ("gzip", b"definitely not gzip", "not valid gzip data"),
        ("deflate", zlib.compress(BODY)[:10] + b"\xff" * 40, "not valid deflate data"),
        ("deflate", zlib.compress(BODY) + b"trailing", "after the end of its deflate stream"),
    ],
    ids=["gzip-truncated", "deflate-truncated", "not-gzip", "deflate-corrupt", "trailing"],
)
def test_corrupt_or_truncated_streams_are_400(client, encoding, data, fragment):
    body = _error(_post(client, "/predict/batch", data, encoding), 400, "bad_request")
    assert fragment in body["error"]


def test_decoded_size_is_held_to_the_body_limit(small_limit_client):
    padded = BODY[:-1] + b" " * (LIMIT - len(BODY)) + b"}"  # exactly at the limit
    assert len(padded) == LIMIT
    response = _post(small_limit_client, "/predict/batch", gzip.compress(padded), "gzip")
    assert response.status_code == 200, response.get_json()
    over = BODY[:-1] + b" " * (LIMIT + 1 - len(BODY)) + b"}"
    response = _post(small_limit_client, "/predict/batch", gzip.compress(over), "gzip")
    body = _error(response, 413, "payload_too_large")
    assert f"{LIMIT}-byte limit" in body["error"]


def test_compressed_body_over_the_limit_is_413_before_decoding(small_limit_client):
    noise = gzip.compress(bytes(range(256)) * 4096, compresslevel=0)
    assert len(noise) > LIMIT
    response = _post(small_limit_client, "/predict/batch", noise, "gzip")
    _error(response, 413, "payload_too_large")


def test_a_gzip_bomb_is_413_after_decoding_at_most_the_limit(small_limit_client):
    bomb = _gzip_of_zeros(256 << 20)  # 256 MiB of zeros in about 250 KiB
    assert len(bomb) < LIMIT
    tracemalloc.start()
    try:
        started = time.perf_counter()
        response = _post(small_limit_client, "/predict/batch", bomb, "gzip")
        elapsed = time.perf_counter() - started
        # Measured while the response (and the request it answered) is still alive.
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _error(response, 413, "payload_too_large")
    assert peak < 4 * LIMIT + len(bomb)  # the limit and one step, never the 256 MiB
    assert held < LIMIT  # what was decoded before the refusal (the limit's worth) is not kept
    assert elapsed < 2.0  # inflating 256 MiB takes longer than this; the limit does not


def _count_body_limit_lookups(app) -> list[str]:
    """Every body limit function in the app's WSGI stack, wrapped to note each path it is asked."""
    asked: list[str] = []
    layer = app.wsgi_app
    while hasattr(layer, "app"):
        if hasattr(layer, "limit_for_path"):
            limit_for_path = layer.limit_for_path
            layer.limit_for_path = lambda path, f=limit_for_path: asked.append(path) or f(path)
        layer = layer.app
    return asked


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_the_body_limit_is_worked_out_once_per_request(demo_store, encoding):
    app = create_app({"store": demo_store})
    asked = _count_body_limit_lookups(app)
    data = gzip.compress(BODY) if encoding else BODY
    response = _post(app.test_client(), "/models/iris/predict/batch", data, encoding)
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == len(ROWS)
    assert asked == ["/models/iris/predict/batch"]
