"""Where one request's time goes inside ml_app: pyinstrument over the WSGI app, in process.

Usage: python -m bench.profile [--model iris] [--shape single] [--backend onnx] [--requests N]
Calls the app the way Gunicorn does (a WSGI environ per request), without the network, and
prints the mean time per request and the profile tree.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from pyinstrument import Profiler

from bench.bodies import bodies, path
from ml_app import create_app


def wsgi_caller(app: Any, url: str, body: bytes) -> Callable[[], None]:
    """A function that sends one POST through the WSGI app and checks it answered 200."""
    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": url,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        statuses.append(status)

    def call() -> None:
        environ = dict(base, **{"wsgi.input": io.BytesIO(body)})
        b"".join(app(environ, start_response))
        if statuses.pop() != "200 OK":
            raise RuntimeError(f"{url} did not answer 200")

    return call


def mean_us(call: Callable[[], None], requests: int) -> float:
    """Mean wall time of one call, in microseconds."""
    started = time.perf_counter()
    for _ in range(requests):
        call()
    return (time.perf_counter() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="iris", choices=["iris", "breast_cancer"])
    parser.add_argument("--shape", default="single", choices=["single", "batch"])
    parser.add_argument("--backend", default="onnx", choices=["onnx", "sklearn"])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    app = create_app({"backend": args.backend})
    # The app's one JSON line per request is still formatted and written, to nowhere, the way
    # a server writes it: our handler on stdout, so access lines take their single-write path.
    report = sys.stdout
    sys.stdout = open(os.devnull, "w")  # for the rest of the process
    for handler in logging.getLogger("ml_app").handlers:
        handler.setStream(sys.stdout)
    call = wsgi_caller(app, path(args.model, args.shape), bodies()[args.model, args.shape])
    mean_us(call, 200)  # warm up: first-use caches, the ONNX session
    plain = mean_us(call, args.requests)
    profiler = Profiler(interval=0.0001)
    with profiler:
        profiled = mean_us(call, args.requests)
    print(
        f"{args.model} {args.shape} ({args.backend}): {plain:.0f} us per request in process",
        f"(under the profiler: {profiled:.0f} us)",
        profiler.output_text(unicode=True, color=False, show_all=False),
        sep="\n",
        file=report,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
