"""GraphQL on real Gunicorn (2 workers): REST's answers, its limits, keys and Redis rate limits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from ml_app.core import apikeys
from tests.support.graphql import (
    DEMO_MODELS,
    MODELS,
    aliased_query,
    demo_rows,
    errors_of,
    nested_query,
    predict_body,
)
from tests.support.prometheus import scrape
from tests.support.redis_server import RedisServer
from tests.support.server import GunicornServer, ready_gunicorn

LIMIT = 4000  # rows per key per hour, counted in Redis by both workers
METERED_BATCH = 300  # LIMIT // 300 = 13 batches fit, the 14th does not


@pytest.fixture(scope="module")
def served(
    demo_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GunicornServer, dict[str, str]]]:
    """Two workers with API keys and a rate limit in a real Redis."""
    folder = tmp_path_factory.mktemp("graphql")
    keys_file = folder / "keys.json"
    keys = {
        "all": apikeys.add_key(keys_file, "all-models"),
        "diabetes": apikeys.add_key(keys_file, "diabetes-only", ("diabetes",)),
        "metered": apikeys.add_key(keys_file, "metered"),
    }
    with (
        RedisServer(folder) as redis_server,
        ready_gunicorn(
            demo_store,
            folder,
            workers=2,
            ML_APP_API_KEYS_FILE=str(keys_file),
            ML_APP_RATE_LIMIT=f"{LIMIT}/hour",
            ML_APP_RATE_LIMIT_STORAGE_URI=redis_server.url,
        ) as server,
    ):
        yield server, keys


def _post(server: GunicornServer, key: str | None, body: dict, path: str = "/graphql"):
    headers = {"X-API-Key": key} if key else {}
    return requests.post(server.url + path, json=body, headers=headers, timeout=20)


@pytest.mark.parametrize("model", DEMO_MODELS)
def test_graphql_answers_equal_rest_answers(served, model):
    server, keys = served
    rows = demo_rows(model, 40)
    rest = _post(server, keys["all"], {"instances": rows}, f"/models/{model}/predict/batch")
    assert rest.status_code == 200
    expected = {**rest.json(), "probabilities": rest.json().get("probabilities")}
    # several at once, so both workers answer
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda _: _post(server, keys["all"], predict_body(model, rows=rows)), range(4))
        )
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json() == {"data": {"predict": expected}} for a in answers)
    assert len(expected["predictions"]) == 40


def test_deep_and_many_alias_queries_are_refused(served):
    server, keys = served
    deep = _post(server, keys["all"], {"query": nested_query(20)})
    assert deep.status_code == 400
    assert "'anonymous' exceeds maximum operation depth of 10" in [
        e["message"] for e in deep.json()["errors"]
    ]
    aliases = _post(server, keys["all"], {"query": aliased_query(1000)})
    assert aliases.status_code == 400
    assert errors_of(aliases.json()) == [("bad_request", 400)]
    assert "more than 2000 tokens" in aliases.json()["errors"][0]["message"]
    sixteen = _post(server, keys["all"], {"query": aliased_query(16)})
    assert sixteen.json()["errors"][0]["message"] == "16 aliases found. Allowed: 15"


def test_keys_apply(served):
    server, keys = served
    missing = _post(server, None, {"query": MODELS})
    assert (missing.status_code, errors_of(missing.json())) == (401, [("unauthorized", 401)])
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ml_app"'
    iris = _post(server, keys["diabetes"], predict_body("iris", rows=demo_rows("iris", 1)))
    assert iris.json()["data"] == {"predict": None}
    assert errors_of(iris.json()) == [("forbidden", 403)]
    diabetes = _post(
        server, keys["diabetes"], predict_body("diabetes", rows=demo_rows("diabetes", 2))
    )
    assert diabetes.json()["data"]["predict"]["model"] == "diabetes"


def test_rate_limits_count_rows_across_workers(served):
    server, keys = served
    body = predict_body("iris", rows=demo_rows("iris", 30) * (METERED_BATCH // 30))
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: _post(server, keys["metered"], body), range(16)))
    assert [a.status_code for a in answers] == [200] * 16  # GraphQL: refusals are field errors
    outcomes = Counter(
        "served" if a.json()["data"]["predict"] else errors_of(a.json())[0][0] for a in answers
    )
    assert outcomes == {
        "served": LIMIT // METERED_BATCH,
        "rate_limited": 16 - LIMIT // METERED_BATCH,
    }
    refused = next(a for a in answers if a.json()["data"]["predict"] is None)
    assert refused.headers["X-RateLimit-Limit"] == str(LIMIT)
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600


def test_predictions_and_requests_are_counted_by_every_worker(served):
    server, keys = served
    before = scrape(server.url)
    rows = demo_rows("breast_cancer", 7)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda _: _post(server, keys["all"], predict_body("breast_cancer", rows=rows)),
                range(6),
            )
        )
    after = scrape(server.url)
    labels = {"model": "breast_cancer", "version": "1"}
    assert (
        after.total("ml_app_predictions_total", **labels)
        - before.total("ml_app_predictions_total", **labels)
        == 42
    )
    grown = after.total(
        "ml_app_http_requests_total", route="/graphql", status="200"
    ) - before.total("ml_app_http_requests_total", route="/graphql", status="200")
    assert grown == 6
    graphql_lines = [e for e in server.log_entries() if e.get("route") == "/graphql"]
    assert not [e for e in graphql_lines if e["status"] >= 500]
    assert {e["pid"] for e in graphql_lines} == server.worker_pids()
