"""The OpenAPI document covers every route and error, and Swagger UI is served by the app itself."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser

import pytest

from ml_app import create_app
from ml_app.core import apikeys
from ml_app.version import VERSION
from ml_app.web.openapi.document import TAGS, UNDOCUMENTED, openapi_path
from tests.support.server import PROJECT_ROOT
from tests.support.store import route_iris_everywhere

ERROR_SCHEMAS = {
    "#/components/schemas/ErrorBody",
    "#/components/schemas/MlflowError",
    "#/components/schemas/GraphQLErrors",
}


def _document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.mark.parametrize("admin_token", [None, "s3cret"])
def test_every_route_and_method_is_described(demo_store, admin_token):
    app = create_app({"store": demo_store, "admin_token": admin_token})
    paths = _document(app.test_client())["paths"]
    assert any(path.startswith("/admin/") for path in paths) == bool(admin_token)
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            described = paths[openapi_path(rule)][method.lower()]
            assert UNDOCUMENTED not in described, f"{method} {rule.rule} ({rule.endpoint})"
            assert described["summary"] and described["tags"]
            assert set(described["tags"]) <= set(TAGS)
    assert len(paths) >= 30


def test_path_parameters_match_the_templates(client):
    for path, operations in _document(client)["paths"].items():
        templated = set(re.findall(r"{(\w+)}", path))
        for described in operations.values():
            declared = {p["name"] for p in described["parameters"] if p["in"] == "path"}
            assert declared == templated, path


def test_error_responses_use_an_error_schema(client):
    operations = [op for ops in _document(client)["paths"].values() for op in ops.values()]
    errors = 0
    for described in operations:
        for status, response in described["responses"].items():
            if status.startswith(("4", "5")) and status != "503":
                schema = response["content"]["application/json"]["schema"]
                assert schema["$ref"] in ERROR_SCHEMAS
                errors += 1
    assert errors > 40


def test_operations_declare_the_errors_their_routes_raise(client):
    paths = _document(client)["paths"]
    assert set(paths["/predict"]["post"]["responses"]) == {
        "200",
        "400",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
        "504",
    }
    # 415: an unknown Content-Encoding (V2 reads any Content-Type: JSON, or binary with its header)
    assert set(paths["/v2/models/{name}/infer"]["post"]["responses"]) == {
        "200",
        "400",
        "404",
        "413",
        "415",
        "429",
        "503",
    }
    invocations = paths["/invocations"]["post"]["responses"]
    assert invocations["415"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "MlflowError"
    )
    assert set(paths["/v1/models/{name}:predict"]["post"]["responses"]) >= {
        "400",
        "404",
        "413",
        "415",
        "429",
    }
    assert "429" in invocations


def test_rate_limited_answers_declare_their_headers(client):
    paths = _document(client)["paths"]
    limited = [
        (path, method, operation["responses"])
        for path, methods in paths.items()
        for method, operation in methods.items()
        if "429" in operation["responses"]
    ]
    assert {path for path, _, _ in limited} >= {
        "/predict",
        "/predict/batch",
        "/models/{name}/versions/{version}/predict",
        "/v2/models/{name}/infer",
        "/v1/models/{name}:predict",
        "/invocations",
    }
    window = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    for path, method, responses in limited:
        assert set(responses["429"]["headers"]) == {"Retry-After", *window}, (path, method)
        successes = [status for status in responses if status.startswith("2")]
        assert successes, (path, method)
        for status in successes:  # 200, or 202 for feedback
            assert set(responses[status]["headers"]) == window, (path, method, status)
        retry_after = responses["429"]["headers"]["Retry-After"]["schema"]
        assert retry_after == {"type": "integer", "minimum": 1}
    assert "headers" not in paths["/models"]["get"]["responses"]["200"]


def test_request_bodies_come_from_the_marshmallow_schemas(client):
    document = _document(client)
    schemas = document["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["instances"]["type"] == "array"
    assert schemas["EntitiesRequest"]["required"] == ["entities"]
    for path in ("/predict", "/models/{name}/predict/batch"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["oneOf"][-1]["$ref"].endswith("EntitiesRequest")
    assert schemas["TensorInput"]["properties"]["datatype"]["enum"][-1] == "BYTES"
    assert set(schemas["MlflowRequest"]["properties"]) >= {"dataframe_split", "dataframe_records"}
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert infer["parameters"][-1]["name"] == "Inference-Header-Content-Length"


def test_version_matches_pyproject(client):
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert VERSION == pyproject["project"]["version"]
    assert _document(client)["info"]["version"] == VERSION


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_swagger_ui_loads_only_assets_served_by_the_app(client):
    redirect = client.get("/docs")
    assert redirect.status_code == 308
    page = client.get("/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    parser = _Assets()
    parser.feed(html)
    assert len(parser.urls) >= 4
    for url in parser.urls:
        assert url.startswith("/docs/"), url
        with client.get(url) as asset:  # files are streamed: close them
            assert asset.status_code == 200, url
            assert len(asset.get_data()) > 100
    assert '"url": "/openapi.json"' in html
    assert '"validatorUrl": null' in html
    assert not re.findall(r"https?://", html)


def _response_schema(document, path, method="get", status="200"):
    content = document["paths"][path][method]["responses"][status]["content"]
    return _resolve(document, content["application/json"]["schema"])


def _resolve(document, schema):
    if "$ref" in schema:
        return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _assert_matches(document, schema, value, where):
    """Keys the answer has are declared, and the declared required keys are there (recursively)."""
    schema = _resolve(document, schema)
    if isinstance(value, dict) and "properties" in schema:
        assert set(value) <= set(schema["properties"]), (
            where,
            set(value) - set(schema["properties"]),
        )
        assert set(schema.get("required", [])) <= set(value), where
        for key, item in value.items():
            _assert_matches(document, schema["properties"][key], item, f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _assert_matches(document, schema["items"], item, f"{where}[{index}]")


def test_documented_answers_match_what_the_routes_return(store):
    """Answers of the read-only routes fit their documented schemas, split and shadow included."""
    route_iris_everywhere(store)
    client = create_app({"store": store}).test_client()
    document = _document(client)
    for path, url in [
        ("/models", "/models"),
        ("/models/{name}", "/models/iris"),
        ("/model/info", "/model/info"),
        ("/health", "/health"),
        ("/health/ready", "/health/ready"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_matches(document, _response_schema(document, path), response.get_json(), url)
    iris = client.get("/models/iris").get_json()
    assert (iris["split"], iris["shadow"]) == ({"1": 0.75, "2": 0.25}, ["2"])


def test_graphql_is_one_post_with_graphql_error_bodies(demo_store, tmp_path):
    keys_file = tmp_path / "keys.json"
    key = apikeys.add_key(keys_file, "client")
    app = create_app({"store": demo_store, "api_keys_file": str(keys_file)})
    document = _document(app.test_client())
    [(method, post)] = document["paths"]["/graphql"].items()
    assert method == "post" and post["tags"] == ["GraphQL"]
    # a model the key may not call is an error inside a 200, so no 403 is documented
    assert set(post["responses"]) == {"200", "400", "401", "413", "415"}
    for status in ("400", "401", "413", "415"):
        schema = post["responses"][status]["content"]["application/json"]["schema"]
        assert schema["$ref"] == "#/components/schemas/GraphQLErrors"
    assert not [key for key in post if key.startswith("x-")]
    example = post["requestBody"]["content"]["application/json"]["example"]
    answer = app.test_client().post("/graphql", json=example, headers={"X-API-Key": key})
    assert answer.get_json()["data"]["predict"]["predictions"] == ["setosa", "virginica"]
    schema = document["components"]["schemas"]["GraphQLRequest"]
    assert schema["required"] == ["query"]


def test_feedback_is_documented_as_it_answers(demo_store, tmp_path):
    """Both feedback routes: the 202 body fits its schema; the body schema is an item or a list."""
    settings = {"store": demo_store, "payload_log_dir": str(tmp_path / "payloads")}
    client = create_app(settings).test_client()
    document = _document(client)
    for path, url in [
        ("/feedback", "/feedback"),
        ("/models/{name}/feedback", "/models/iris/feedback"),
    ]:
        operation = document["paths"][path]["post"]
        assert set(operation["responses"]) == {
            "202",
            "400",
            "404",
            "409",
            "413",
            "415",
            "422",
            "429",
            "503",
        }
        body = operation["requestBody"]["content"]["application/json"]
        item = document["components"]["schemas"]["FeedbackItem"]
        assert set(item["required"]) == {"request_id", "truth"}
        assert body["schema"]["oneOf"][1]["items"]["$ref"].endswith("FeedbackItem")
        response = client.post(url, json=body["example"])
        assert response.status_code == 202
        schema = _response_schema(document, path, "post", "202")
        _assert_matches(document, schema, response.get_json(), url)
