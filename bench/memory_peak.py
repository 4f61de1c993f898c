"""Peak memory of one request at the batch limit, by layout: what a worker must have room for.

Usage: python -m bench.memory_peak [--rows 10000]
Each layout sends the largest batch the server accepts (ML_APP_MAX_BATCH_ROWS rows of the
30-feature breast_cancer model, the widest demo model) through the app in this process, with
tracemalloc tracing every Python and numpy allocation; the peak, over the body's size, is the
bounded multiple a body costs. A refused body (over the limit) costs a small, fixed multiple of
its size (tests/unit/test_batch_limits.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tracemalloc

import numpy as np
import orjson
from sklearn import datasets

from ml_app import create_app

Body = tuple[bytes, str, dict[str, str]]
MODEL = "breast_cancer"


def _layouts(rows: np.ndarray, names: list[str]) -> dict[str, tuple[str, Body]]:
    as_lists = rows.tolist()
    json = "application/json"
    binary = rows.astype("<f8").tobytes()
    spec = {"name": "input", "shape": list(rows.shape), "datatype": "FP64"}
    header = orjson.dumps({"inputs": [{**spec, "parameters": {"binary_data_size": len(binary)}}]})
    csv = "\n".join([",".join(names), *(",".join(map(repr, row)) for row in as_lists)])
    return {
        "native lists": (
            f"/models/{MODEL}/predict/batch",
            (orjson.dumps({"instances": as_lists}), json, {}),
        ),
        "native named rows": (
            f"/models/{MODEL}/predict/batch",
            (
                orjson.dumps({"instances": [dict(zip(names, r, strict=True)) for r in as_lists]}),
                json,
                {},
            ),
        ),
        "V2 JSON": (
            f"/v2/models/{MODEL}/infer",
            (orjson.dumps({"inputs": [{**spec, "data": rows.ravel().tolist()}]}), json, {}),
        ),
        "V2 binary": (
            f"/v2/models/{MODEL}/infer",
            (
                header + binary,
                "application/octet-stream",
                {"Inference-Header-Content-Length": str(len(header))},
            ),
        ),
        "MLflow CSV": ("/invocations", (csv.encode(), "text/csv", {})),
    }


def peak(client: object, path: str, body: Body) -> int:
    """Peak bytes allocated while the app answers one request (it must answer 200)."""
    data, content_type, headers = body
    tracemalloc.start()
    try:
        response = client.post(path, data=data, content_type=content_type, headers=headers)
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.data[:200]!r}")
    return traced


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: a table, one line per layout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="ML_APP_MAX_BATCH_ROWS' default")
    args = parser.parse_args(argv)
    data = datasets.load_breast_cancer()
    rows = np.resize(data.data, (args.rows, data.data.shape[1]))
    # /invocations serves the default model; the answer logs go nowhere.
    app = create_app({"default_model": MODEL, "max_batch_rows": args.rows})
    logging.getLogger("ml_app").handlers[0].setStream(open(os.devnull, "w"))
    client = app.test_client()
    print(f"{args.rows} rows x {rows.shape[1]} features, model {MODEL}")
    print("| layout | body MiB | peak MiB | peak / body |\n| --- | ---: | ---: | ---: |")
    names = [
        str(n).replace(" ", "_")
        for n in app.extensions["ml_app"].registry.resolve(MODEL).feature_names
    ]
    for layout, (path, body) in _layouts(rows, names).items():
        size = len(body[0])
        traced = peak(client, path, body)
        print(f"| {layout} | {size / 2**20:.1f} | {traced / 2**20:.1f} | {traced / size:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
