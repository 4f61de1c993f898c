"""Requests to a running server: many predictions at once, each answer with its request id."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import requests

from tests.support.polling import wait_until
from tests.support.server import GunicornServer


class Reply(NamedTuple):
    """One answer: status, parsed JSON body and the request id the server gave it."""

    status: int
    body: Any
    request_id: str


def post_json(url: str, body: Any) -> Reply:
    """POST `body` as JSON on a new connection; the reply, its JSON body parsed."""
    with requests.Session() as session:
        response = session.post(url, json=body, timeout=10)
    return Reply(response.status_code, response.json(), response.headers["X-Request-ID"])


def predict_rows(
    base_url: str, rows: list[list[float]], path: str = "/predict", threads: int = 12
) -> list[Reply]:
    """POST each row as `{"features": row}` to `path`, `threads` at a time, in the rows' order."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda row: post_json(base_url + path, {"features": row}), rows))


def answered_by(server: GunicornServer, replies: list[Reply]) -> Counter[int]:
    """How many of `replies` each process answered, from the server's access lines."""
    ids = {reply.request_id for reply in replies}
    return Counter(
        entry["pid"]
        for entry in server.log_entries()
        if entry["logger"] == "ml_app.access" and entry.get("request_id") in ids
    )


def predict_across_workers(
    server: GunicornServer, rows: list[list[float]], workers: int, path: str = "/predict"
) -> list[Reply]:
    """`rows` posted with predict_rows, round after round, until `workers` processes answered.

    Which worker accepts a connection is up to the kernel and the scheduler: on a loaded
    machine one worker may take a whole round. Every reply of every round, in order.
    """
    replies: list[Reply] = []

    def spread() -> bool:
        replies.extend(predict_rows(server.url, rows, path))
        return len(answered_by(server, replies)) >= workers

    wait_until(spread, 120, f"{workers} workers to answer a share of the predictions")
    return replies
