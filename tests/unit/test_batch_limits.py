"""Batch limits are checked before rows are built: a refused request costs little memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from tests.support.reference import IRIS_FEATURES

MAX_ROWS = 10_000  # the default ML_APP_MAX_BATCH_ROWS
MANY = 25 * MAX_ROWS  # a few MiB of body in every layout
# A refused request may hold its body a few times over (the client's copy, Werkzeug's read
# buffer, the bytes handed to the view), never the 10-60 times that building its rows costs.
MAX_PEAK_PER_BODY_BYTE = 5

Body = tuple[bytes, str, dict[str, str]]


def _json(body: object) -> Body:
    return orjson.dumps(body), "application/json", {}


def _rows(count: int) -> list[list[float]]:
    return np.tile([5.1, 3.5, 1.4, 0.2], (count, 1)).tolist()


def _named(count: int) -> list[dict[str, float]]:
    return [dict(zip(IRIS_FEATURES, row, strict=True)) for row in _rows(count)]


def _columns(count: int) -> dict[str, list[float]]:
    return {name: [1.5] * count for name in IRIS_FEATURES}


def _csv(count: int) -> Body:
    lines = [",".join(IRIS_FEATURES), *(["1,2,3,4"] * count)]
    return "\n".join(lines).encode(), "text/csv", {}


def _v2_json(count: int) -> Body:
    tensor = {"name": "input", "shape": [count, 4], "datatype": "FP64"}
    return _json({"inputs": [{**tensor, "data": [1.5] * count * 4}]})


def _v2_per_feature(count: int) -> Body:
    tensors = [
        {"name": name, "shape": [count, 1], "datatype": "FP64", "data": [[1.5]] * count}
        for name in IRIS_FEATURES
    ]
    return _json({"inputs": tensors})


def _v2_binary(count: int) -> Body:
    tensor = np.ones((count, 4), dtype="|u1").tobytes()  # 8 times smaller than as float64
    spec = {"name": "input", "shape": [count, 4], "datatype": "UINT8"}
    header = orjson.dumps({"inputs": [{**spec, "parameters": {"binary_data_size": len(tensor)}}]})
    length = {"Inference-Header-Content-Length": str(len(header))}
    return header + tensor, "application/octet-stream", length


LAYOUTS: dict[str, tuple[str, Callable[[int], Body]]] = {
    "native lists": ("/predict/batch", lambda n: _json({"instances": _rows(n)})),
    "native named rows": ("/predict", lambda n: _json({"instances": _named(n)})),
    "v1 instances": ("/v1/models/iris:predict", lambda n: _json({"instances": _named(n)})),
    "v1 columns": ("/v1/models/iris:predict", lambda n: _json({"inputs": _columns(n)})),
    "mlflow split": (
        "/invocations",
        lambda n: _json({"dataframe_split": {"columns": IRIS_FEATURES, "data": _rows(n)}}),
    ),
    "mlflow records": ("/invocations", lambda n: _json({"dataframe_records": _named(n)})),
    "mlflow columns": ("/invocations", lambda n: _json({"inputs": _columns(n)})),
    "mlflow csv": ("/invocations", _csv),
    "v2 json": ("/v2/models/iris/infer", _v2_json),
    "v2 json per feature": ("/v2/models/iris/infer", _v2_per_feature),
    "v2 binary": ("/v2/models/iris/infer", _v2_binary),
}
NAMED_ROWS = {"native named rows", "v1 instances", "mlflow records"}
# Bodies no layout would send, but that a client can: they must cost as little.
ODDITIES: dict[str, tuple[str, Callable[[], Body]]] = {
    "native empty rows": ("/predict/batch", lambda: _json({"instances": [[]] * MANY * 4})),
    "mlflow csv, one wide line": (
        "/invocations",
        lambda: ((",".join(["ab"] * MANY * 4) + "\n1").encode(), "text/csv", {}),
    ),
}


def _refusal(response) -> str:
    body = response.get_json()
    assert response.status_code == 413, body
    assert "ML_APP_MAX_BATCH_ROWS" in str(body)
    return body["message"] if "message" in body else body["error"]


def _post_traced(client, path: str, body: Body) -> tuple[object, int]:
    data, content_type, headers = body
    tracemalloc.start()
    try:
        response = client.post(path, data=data, content_type=content_type, headers=headers)
        return response, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("layout", [*LAYOUTS, *ODDITIES])
def test_refused_batches_cost_a_small_multiple_of_their_body(client, layout):
    if layout in LAYOUTS:
        path, build = LAYOUTS[layout]
        # Named rows take 80 bytes each: fewer of them, to stay under the 10 MiB body limit.
        body = build(MANY // 2 if layout in NAMED_ROWS else MANY)
    else:
        path, make = ODDITIES[layout]
        body = make()
    response, peak = _post_traced(client, path, body)
    assert str(MAX_ROWS) in _refusal(response)
    size = len(body[0])
    print(f"{layout}: body {size} bytes, peak {peak} bytes ({peak / size:.1f}x)")
    assert peak < MAX_PEAK_PER_BODY_BYTE * size


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_one_row_over_the_limit_is_413_with_the_count(client, layout):
    path, build = LAYOUTS[layout]
    data, content_type, headers = build(MAX_ROWS + 1)
    response = client.post(path, data=data, content_type=content_type, headers=headers)
    count = "more than 10000" if layout == "mlflow csv" else "10001"
    assert _refusal(response).startswith(f"Batch has {count} rows; the limit is {MAX_ROWS}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_batch_at_the_limit_is_served(client, layout):
    path, build = LAYOUTS[layout]
    data, content_type, headers = build(MAX_ROWS)
    response = client.post(path, data=data, content_type=content_type, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.headers["X-Model-Version"] == "1"
