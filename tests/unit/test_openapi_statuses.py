"""Every route that takes a body declares the statuses its body can be refused with.

Compressed bodies are decoded for every route (ml_app.web.encoding) and the body limit holds
for every route, so each operation with a request body can answer 413 and 415 whatever its
view does: probed here on each one, and each answer's status must be in its document.
"""

from __future__ import annotations

import gzip
import re

import pytest

from ml_app import create_app

LIMIT = 4096  # bytes: both body limits, so a probe can pass them cheaply
TOKEN = "s3cret"
_EXAMPLES = {"name": "iris", "version": "1", "alias": "staging"}


@pytest.fixture(scope="module")
def served(demo_store, tmp_path_factory):
    """A client of an app with every body route on (admin, feedback), and its document."""
    settings = {
        "store": demo_store,
        "admin_token": TOKEN,
        "payload_log_dir": str(tmp_path_factory.mktemp("payloads")),
        "max_body_bytes": LIMIT,
        "admin_max_upload_bytes": LIMIT,
    }
    client = create_app(settings).test_client()
    return client, client.get("/openapi.json").get_json()


def _body_operations(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                yield path, method, operation


def _send(client, path, method, operation, body, **headers):
    url = re.sub(r"{(\w+)}", lambda m: _EXAMPLES[m.group(1)], path)
    content_type = next(iter(operation["requestBody"]["content"]))
    if content_type.startswith("multipart/"):
        content_type += "; boundary=probe"
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}", **headers}
    return client.open(url, method=method.upper(), data=body, headers=headers)


def _schema(document, reference):
    return document["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]


def test_the_probes_reach_every_route_with_a_body(served):
    _, document = served
    probed = {f"{method} {path}" for path, method, _ in _body_operations(document)}
    assert {"post /v2/models/{name}/infer", "post /admin/models/{name}/versions"} <= probed
    assert len(probed) >= 15


@pytest.mark.parametrize(
    ("probe", "status", "body", "headers"),
    [
        ("unknown Content-Encoding", 415, b"x" * 64, {"Content-Encoding": "br"}),
        ("body over the limit", 413, b"x" * (2 * LIMIT), {}),
        (
            "decoded over the limit",
            413,
            gzip.compress(b" " * 20 * LIMIT),
            {"Content-Encoding": "gzip"},
        ),
    ],
)
def test_body_refusals_are_declared_by_every_route_with_a_body(
    served, probe, status, body, headers
):
    client, document = served
    undeclared = []
    for path, method, operation in _body_operations(document):
        response = _send(client, path, method, operation, body, **headers)
        assert response.status_code == status, (probe, method, path, response.get_data()[:200])
        declared = operation["responses"].get(str(status))
        if declared is None:
            undeclared.append(f"{method} {path}")
            continue
        schema = _schema(document, declared["content"]["application/json"]["schema"])
        assert set(schema["required"]) <= set(response.get_json()), (method, path)
    assert undeclared == [], f"{probe}: {status} not declared"


def test_a_wrong_content_type_is_answered_with_a_declared_status(served):
    client, document = served
    for path, method, operation in _body_operations(document):
        response = _send(
            client,
            path,
            method,
            operation,
            b"\x00\x01 not a body",
            **{"Content-Type": "text/plain"},
        )
        declared = set(operation["responses"])
        assert str(response.status_code) in declared, (method, path, response.status_code)
        assert 400 <= response.status_code < 500
