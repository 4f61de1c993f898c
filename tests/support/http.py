"""Requests to a running server: many predictions at once, each answer with its request id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import requests


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
