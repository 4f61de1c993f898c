"""A 10,000-row batch over the V2 binary tensor extension: rows/s through the server, next to
ONNX Runtime's own rows/s for the same model and rows in this process.

Usage: python -m bench.v2_binary [--seconds 10] [--rows 10000]
The server runs with one Gunicorn worker and two client connections, so the worker is never
idle; ONNX Runtime runs on one thread here. Their ratio is the share of a worker's time that
goes to the model itself (the rest is HTTP, decoding, validation, metrics, rendering).
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

from bench.bodies import DATASETS
from bench.servers import Server
from ml_app.core.config import Settings
from ml_app.core.loading import load_model
from ml_app.core.store import LoadPolicy, ModelStore

CLIENTS = 2


def rows_for(model: str, count: int) -> np.ndarray:
    """`count` real rows of the model's data set (repeated as needed), float64."""
    data = DATASETS[model]().data
    return np.resize(data, (count, data.shape[1])).astype(np.float64)


def binary_request(rows: np.ndarray) -> tuple[bytes, int]:
    """A V2 binary body for `rows` and the length of its JSON header."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    return header + rows.astype("<f8").tobytes(), len(header)


def served_rows_per_second(server: Server, model: str, rows: np.ndarray, seconds: float) -> float:
    """Rows per second the server predicts with CLIENTS connections sending the batch."""
    body, header_length = binary_request(rows)
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(header_length),
    }
    done = [0] * CLIENTS
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            conn.close()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {answer[:200]!r}")
            done[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) * len(rows) / (time.monotonic() - started)


def in_process_rows_per_second(store: Path, model: str, rows: np.ndarray, seconds: float) -> float:
    """Rows per second ONNX Runtime alone predicts (the same call the server makes)."""
    metadata = ModelStore(store).read_metadata(model, "1")
    loaded = load_model(ModelStore(store), model, "1", metadata, LoadPolicy(backend="onnx"))
    loaded.predict(rows)  # warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        loaded.predict(rows)
        count += 1
    return count * len(rows) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: one line per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--store", type=Path, default=Settings.from_env().store)
    args = parser.parse_args(argv)
    print(f"V2 binary, {args.rows}-row batches, 1 worker, {CLIENTS} connections")
    with tempfile.TemporaryDirectory(prefix="ml_app-bench-") as scratch:
        for model in ("breast_cancer", "iris"):
            rows = rows_for(model, args.rows)
            alone = in_process_rows_per_second(args.store, model, rows, args.seconds / 2)
            server = Server(
                "ml_app_onnx",
                None,
                1,
                Path(scratch),
                "/health/ready",
                ML_APP_BACKEND="onnx",
                ML_APP_STORE=str(args.store),
            )
            server.start()
            try:
                served = served_rows_per_second(server, model, rows, args.seconds)
            finally:
                server.stop()
            print(
                f"{model:14s} served {served:12,.0f} rows/s   in-process ONNX Runtime "
                f"{alone:12,.0f} rows/s   ratio {served / alone:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
