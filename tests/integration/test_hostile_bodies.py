"""Hostile and odd bodies, queries and methods against real Gunicorn (2 workers), on every route
the app registers: each answer is the one JSON error shape with a fitting status (or the right
success), never a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ml_app import create_app
from tests.support.hostile import ADMIN_TOKEN, ERROR_KEYS, hostile_gunicorn
from tests.support.server import GunicornServer


@pytest.fixture(scope="module")
def server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """Gunicorn's default timeout: a registration takes seconds."""
    with hostile_gunicorn(demo_store, tmp_path_factory.mktemp("hostile-bodies")) as running:
        yield running


HUGE = "x" * 200_000  # a name or field a client made up, echoed back by an error
# Bodies whose error repeats something the client sent: (path, body, status, whole message,
# whether the request is a prediction the payload log records).
ECHOES = {
    "native: unknown feature name": (
        "/predict",
        {"features": {HUGE: 1.0}},
        422,
        f"Invalid input: features.{HUGE}: Unknown feature.",
        True,
    ),
    "native: unknown member": (
        "/models/iris/predict",
        {"features": [1, 2, 3, 4], HUGE: 1},
        422,
        f"Invalid input: {HUGE}: Unknown field.",
        True,
    ),
    "V1: unknown feature name": (
        "/v1/models/iris:predict",
        {"instances": [{HUGE: 1}]},
        400,
        f"Invalid input: instances.0.{HUGE}: Unknown feature.",
        True,
    ),
    "MLflow: unknown column": (
        "/invocations",
        {"dataframe_split": {"columns": [HUGE], "data": [[1]]}},
        400,
        f"Invalid input: dataframe_split.0.{HUGE}: Unknown feature.",
        True,
    ),
    "GraphQL: unknown model in a variable": (
        "/graphql",
        {"query": "query($n: String!) { model(name: $n) { name } }", "variables": {"n": HUGE}},
        200,
        f"Model '{HUGE}' is not in the store.",
        False,
    ),
    "GraphQL: unknown field": (
        "/graphql",
        {"query": "{ " + HUGE + " }"},
        400,
        f"Cannot query field '{HUGE}' on type 'Query'.",
        False,
    ),
}


def _message(body: dict) -> str:
    if "errors" in body:
        return body["errors"][0]["message"]
    return body.get("error") or body["message"]  # MLflow's shape says `message`


@pytest.mark.parametrize("name", ECHOES)
def test_an_error_repeats_at_most_1000_characters_of_what_the_client_sent(server, name):
    path, sent, status, whole, predicts = ECHOES[name]
    answer = requests.post(server.url + path, json=sent, timeout=10)
    assert answer.status_code == status
    clipped = f"{whole[:1000]}... ({len(whole) - 1000} more characters)"
    assert _message(answer.json()) == clipped
    # The message and the one field `details` names: about 1000 characters each, not 200 000.
    assert len(answer.content) < 4000
    request_id = answer.headers["X-Request-ID"].encode()
    events = [
        line
        for segment in (server.log_path.parent / "payloads").iterdir()
        for line in segment.read_bytes().splitlines()
        if request_id in line
    ]
    assert len(events) == predicts  # the refused prediction's event: as bounded as the answer
    assert all(len(line) < 4000 for line in events)


# /metrics with the `name[]` filter prometheus_client offers: (query, families in the answer).
METRICS_QUERIES = {
    "one family": ("name[]=ml_app_model_ready", {"ml_app_model_ready"}),
    "two families": (
        "name[]=ml_app_model_ready&name[]=ml_app_model_backend",
        {"ml_app_model_ready", "ml_app_model_backend"},
    ),
    "a name nothing has": ("name[]=no_such_metric", set()),
    "a name that is not UTF-8": ("name[]=%ff%fe", set()),
}


@pytest.mark.parametrize("name", METRICS_QUERIES)
def test_metrics_filtered_by_name_answer_those_families(server, name):
    query, families = METRICS_QUERIES[name]
    answer = requests.get(f"{server.url}/metrics?{query}", timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("text/plain")
    typed = set(re.findall(r"^# TYPE (\S+) ", answer.text, re.MULTILINE))
    assert typed == families
    if families:  # every demo model's series are there, merged across the workers
        assert 'ml_app_model_ready{model="iris",version="1"} 1.0' in answer.text


NOT_FINITE = "Not a finite number."
NATIVE_BODIES = {  # body: (status, code, message); a 200 answers setosa
    b"": (400, "bad_request", "Request body is empty; send a JSON object."),
    b"null": (400, "bad_request", "Request body must be a JSON object, not null."),
    b"[]": (400, "bad_request", "Request body must be a JSON object, not an array."),
    b'"x"': (400, "bad_request", "Request body must be a JSON object, not a string."),
    b"1": (400, "bad_request", "Request body must be a JSON object, not a number."),
    b"true": (400, "bad_request", "Request body must be a JSON object, not a boolean."),
    b'{"features":[1,2,3,4],"features":[5.1,3.5,1.4,0.2]}': (200, None, None),  # the last wins
    b'\xef\xbb\xbf{"features":[5.1,3.5,1.4,0.2]}': (200, None, None),  # a UTF-8 BOM
    '{"features":[5.1,3.5,1.4,0.2]}'.encode("utf-16"): (200, None, None),  # JSON allows it
    b'{"features":[-0.0,3.5,1.4,0.2]}': (200, None, None),
    # The first feature odd, the other three fine: (its JSON, what is wrong with it).
    **{
        b'{"features":[' + cell + b",1,1,1]}": (
            422,
            "invalid_input",
            f"Invalid input: features.0: {problem}",
        )
        for cell, problem in [
            (b"1e400", NOT_FINITE),
            (b"9" * 400, NOT_FINITE),
            (b"NaN", NOT_FINITE),
            (b"-Infinity", NOT_FINITE),
            (b"true", "Must be a number, not bool."),
            (b'"1"', "Must be a number, not str."),
            (b"null", "Must be a number, not null."),
        ]
    },
    b'{"features":[]}': (
        422,
        "invalid_input",
        "Invalid input: features: Expected 4 features, got 0.",
    ),
    b'{"features":' + b"[" * 100_000 + b"]" * 100_000 + b"}": (413, "payload_too_large", None),
    b'{"features":[5.1,3.5,1.4,0.2],"x":"\xff"}': (
        400,
        "bad_request",
        "Malformed JSON: str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0).",
    ),
}


@pytest.mark.parametrize("body", NATIVE_BODIES, ids=lambda body: repr(body[:40]))
def test_odd_json_bodies_get_their_answer(server, body):
    status, code, message = NATIVE_BODIES[body]
    answer = requests.post(
        server.url + "/predict", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == status, answer.text[:300]
    if status == 200:
        assert answer.json()["prediction"] == "setosa"
        return
    error = answer.json()
    assert set(error) == ERROR_KEYS
    assert (error["code"], error["request_id"]) == (code, answer.headers["X-Request-ID"])
    assert message is None or error["error"] == message


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/feedback", b"null", "Request body must be a JSON object or array, not null."),
        ("/feedback", b"7", "Request body must be a JSON object or array, not a number."),
        (
            "/graphql",
            b'{"query": "{ models { name } }", "variables": [1]}',
            "variables must be an object or null, not an array.",
        ),
        ("/graphql", b'{"query": 5}', "query must be a string or null, not a number."),
    ],
)
def test_bodies_of_the_wrong_json_type_are_named_in_json_terms(server, path, body, message):
    answer = requests.post(
        server.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 400
    error = answer.json()
    if path == "/graphql":
        (member,) = error["errors"]
        error = {"error": member["message"], **member["extensions"]}
    assert (error["error"], error["code"]) == (message, "bad_request")


def _register(server: GunicornServer, name: str = "iris", **form: str) -> requests.Response:
    artifact = (server.log_path.parent / "store" / "iris" / "1" / "model.skops").read_bytes()
    return requests.post(
        f"{server.url}/admin/models/{name}/versions",
        files={"artifact": ("model.skops", artifact)},
        data=form,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )


# Registrations the operator got wrong: (model name in the path, form fields, error message).
BAD_REGISTRATIONS = {
    "feature_names a number": (
        "iris",
        {"metadata": '{"feature_names": 5}'},
        "metadata: feature_names must be a list of strings",
    ),
    "feature_names holding numbers": (
        "iris",
        {"metadata": '{"feature_names": [1, 2, 3, 4]}'},
        "metadata: feature_names must be a list of strings",
    ),
    "reference_sample of strings": (
        "iris",
        {"metadata": '{"reference_sample": [["a", "b", "c", "d"]]}'},
        "metadata: reference_sample must be a list of rows of numbers",
    ),
    "baseline a string": (
        "iris",
        {"metadata": '{"baseline": "x"}'},
        "metadata: baseline must be an object",
    ),
    "NUL in the version": ("iris", {"version": "a\x00b"}, "invalid version 'a\\x00b'"),
    "NUL in the alias": ("iris", {"alias": "a\x00b"}, "invalid alias 'a\\x00b': use a name"),
    "NUL in the model name": ("ir%00is", {}, "invalid model name 'ir\\x00is'"),
}


@pytest.mark.parametrize("case", BAD_REGISTRATIONS)
def test_a_registration_with_wrong_types_or_names_is_a_422_and_writes_nothing(server, case):
    name, form, message = BAD_REGISTRATIONS[case]
    answer = _register(server, name, **form)
    assert answer.status_code == 422, answer.text[:300]
    body = answer.json()
    assert (body["code"], body["status"]) == ("invalid_input", 422)
    assert body["error"].startswith(message)
    assert sorted(p.name for p in (server.log_path.parent / "store" / "iris").iterdir()) == ["1"]


def _registered_routes(store: Path) -> dict[str, set[str]]:
    """Every route the app registers (admin included), its variables filled in: the methods
    that path allows (all the rules it matches: /v1/models/iris:predict matches two)."""
    app = create_app({"store": store, "admin_token": ADMIN_TOKEN})
    values = {"name": "iris", "version": "1", "alias": "prod", "path": "index.css"}
    adapter = app.url_map.bind("127.0.0.1")
    routes = {}
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for variable in rule.arguments:
            path = re.sub(rf"<(?:\w+:)?{variable}>", values[variable], path)
        routes[path] = set(adapter.allowed_methods(path))
    return routes


ODD_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "BREW")


def test_every_route_refuses_the_methods_it_lacks_with_a_405_in_the_one_shape(server):
    allowed = _registered_routes(server.log_path.parent / "store")
    assert len(allowed) >= 40
    for path, methods in allowed.items():
        for method in (m for m in ODD_METHODS if m not in methods):
            answer = requests.request(
                method, server.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            assert answer.status_code == 405, (method, path, answer.text[:200])
            assert set(answer.headers["Allow"].split(", ")) == methods, (method, path)
            body = answer.json()
            assert set(body) == ERROR_KEYS, (method, path)
            assert (body["code"], body["error"]) == (
                "method_not_allowed",
                f"{method} is not allowed here; use {answer.headers['Allow']}.",
            )
