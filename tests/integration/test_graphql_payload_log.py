"""A GraphQL query with several predict fields, on real Gunicorn (2 workers) with the payload log
on: every field's prediction is an event of its own, feedback joins each, drift counts each,
and X-Model-Version does not name one model when two answered."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests
from sklearn import datasets

from tests.support.payloads import CollectingSink, ShipperProcess
from tests.support.polling import wait_until
from tests.support.prometheus import scrape
from tests.support.server import PROJECT_ROOT, GunicornServer, clean_environment

QUERIES = 8
# Three aliased predict fields on two models: iris twice, diabetes once.
QUERY = """
query Three($a: FeatureRows, $b: FeatureRows, $c: FeatureRows) {
  first: predict(model: "iris", rows: $a) { model version predictions }
  second: predict(model: "diabetes", rows: $b) { model version predictions }
  third: predict(model: "iris", rows: $c) { model version predictions }
}
"""
FIELDS = (("first", "a", "iris", 3), ("second", "b", "diabetes", 4), ("third", "c", "iris", 2))
DRIFT_FEATURES = {"iris": "sepal_length", "diabetes": "bmi"}
EXPECTED_DRIFT_ROWS = {"iris": QUERIES * 5, "diabetes": QUERIES * 4}
_DATA = {"iris": datasets.load_iris(), "diabetes": datasets.load_diabetes()}


def _query(index: int) -> tuple[dict, dict[str, tuple[list, list]]]:
    """The body of the index-th query and, per field, the rows it sends with their truths."""
    sent, variables = {}, {}
    for position, (field, variable, model, count) in enumerate(FIELDS):
        data = _DATA[model]
        start = (index * 7 + position * 31) % (len(data.data) - count)
        rows = data.data[start : start + count].tolist()
        truths = data.target[start : start + count]
        if model == "iris":
            sent[field] = (rows, [str(data.target_names[t]) for t in truths])
        else:
            sent[field] = (rows, [float(t) for t in truths])
        variables[variable] = rows
    return {"query": QUERY, "variables": variables}, sent


def _segments(directory: Path) -> list[dict]:
    lines = b"".join(path.read_bytes() for path in sorted(directory.glob("*.jsonl")))
    return [orjson.loads(line) for line in lines.splitlines()]


def _event_id(request_id: str, ordinal: int) -> str:
    """The id of a request's n-th prediction, as README's payload log section defines it."""
    return request_id if ordinal == 1 else f"{request_id}#{ordinal}"


def _drift_rows(url: str) -> dict[str, float]:
    """Rows counted per model in one feature's drift bins."""
    metrics = scrape(url)
    return {
        model: metrics.total("ml_app_drift_rows_total", model=model, feature=feature)
        for model, feature in DRIFT_FEATURES.items()
    }


def _settled_drift(url: str) -> dict[str, float]:
    """The drift counts once every row sent is in (each worker flushes every second), or as
    they are after 20 s: the test says what was missing."""
    try:
        wait_until(lambda: _drift_rows(url) == EXPECTED_DRIFT_ROWS, 20, "drift counts")
    except AssertionError:
        pass
    return _drift_rows(url)


@pytest.fixture(scope="module")
def answered(demo_store, tmp_path_factory):
    """QUERIES queries answered by 2 workers, each with its X-Request-ID; the server stopped."""
    folder = tmp_path_factory.mktemp("graphql-payloads")
    payloads = folder / "payloads"
    server = GunicornServer(
        demo_store, folder / "server.log", workers=2, ML_APP_PAYLOAD_LOG_DIR=str(payloads)
    )
    queries = [(uuid.uuid4().hex, *_query(index)) for index in range(QUERIES)]

    def send(query: tuple) -> requests.Response:
        request_id, body, _ = query
        headers = {"X-Request-ID": request_id}
        return requests.post(server.url + "/graphql", json=body, headers=headers, timeout=20)

    with server:
        server.wait_for_workers()
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(send, queries))
        drift = _settled_drift(server.url)
        feedback = [
            {"request_id": _event_id(request_id, ordinal), "truth": sent[field][1]}
            for request_id, _, sent in queries
            for ordinal, (field, *_) in enumerate(FIELDS, 1)
        ]
        accepted = requests.post(server.url + "/feedback", json=feedback, timeout=20)
        assert accepted.status_code == 202, accepted.text
    assert server.process.returncode == 0  # SIGTERM: every worker closed its segment
    return payloads, queries, answers, drift


def test_every_field_is_answered_and_the_header_names_no_single_model(answered):
    _, queries, answers, _ = answered
    for (request_id, _, sent), answer in zip(queries, answers, strict=True):
        body = answer.json()
        assert answer.status_code == 200 and "errors" not in body, body
        assert answer.headers["X-Request-ID"] == request_id
        # iris 1 and diabetes 1 answered: one header value cannot say which
        assert "X-Model-Version" not in answer.headers
        for field, _, model, count in FIELDS:
            assert (body["data"][field]["model"], body["data"][field]["version"]) == (model, "1")
            assert len(body["data"][field]["predictions"]) == count == len(sent[field][0])


def test_the_payload_log_holds_every_fields_rows_and_outputs(answered):
    payloads, queries, answers, _ = answered
    events = [e for e in _segments(payloads) if e["type"] == "ml_app.inference"]
    by_id = {event["id"]: event for event in events}
    assert len(by_id) == len(events) == QUERIES * len(FIELDS)  # ids unique
    for (request_id, _, sent), answer in zip(queries, answers, strict=True):
        for ordinal, (field, _, model, _) in enumerate(FIELDS, 1):
            data = by_id[_event_id(request_id, ordinal)]["data"]
            assert (data["request_id"], data["model"], data["version"]) == (request_id, model, "1")
            assert (data["status"], data["route"], data["error"]) == (200, "/graphql", None)
            assert np.allclose(data["inputs"]["rows"], sent[field][0])
            answered_field = answer.json()["data"][field]
            assert data["outputs"]["predictions"] == answered_field["predictions"]


def test_drift_counted_every_fields_rows(answered):
    *_, drift = answered
    assert drift == EXPECTED_DRIFT_ROWS


def test_the_report_joins_feedback_to_each_field_and_the_shipper_sends_them(
    answered, demo_store, tmp_path
):
    payloads, queries, answers, _ = answered
    command = [sys.executable, "-m", "ml_app", "monitor", "report", "--json"]
    command += ["--payloads", str(payloads), "--store", str(demo_store)]
    run = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=clean_environment(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = orjson.loads(run.stdout)
    assert (report["feedback_unmatched"], report["feedback_mismatched"]) == (0, 0)
    assert report["duplicates"] == 0
    versions = {(v["model"], v["version"]): v for v in report["versions"]}
    hits, errors = [], []
    for (_, _, sent), answer in zip(queries, answers, strict=True):
        for field, _, model, _ in FIELDS:
            predicted = answer.json()["data"][field]["predictions"]
            pairs = list(zip(predicted, sent[field][1], strict=True))
            if model == "iris":
                hits += [value == truth for value, truth in pairs]
            else:
                errors += [abs(value - truth) for value, truth in pairs]
    iris, diabetes = versions[("iris", "1")], versions[("diabetes", "1")]
    assert (iris["requests"], iris["rows"], iris["rows_with_truth"]) == (
        QUERIES * 2,
        QUERIES * 5,
        QUERIES * 5,
    )
    assert iris["accuracy"] == pytest.approx(sum(hits) / len(hits))
    assert (diabetes["requests"], diabetes["rows_with_truth"]) == (QUERIES, QUERIES * 4)
    assert diabetes["mae"] == pytest.approx(sum(errors) / len(errors))
    ids = Counter(e["id"] for e in _segments(payloads) if e["type"] == "ml_app.inference")
    with CollectingSink() as sink:
        shipper = ShipperProcess(payloads, sink.url, tmp_path / "shipper.log", "--once")
        with shipper:
            assert shipper.process.wait(60) == 0
        shipped = Counter(sink.accepted_ids())
    assert {key: n for key, n in shipped.items() if key in ids} == ids
    assert not list(payloads.glob("*.jsonl"))
