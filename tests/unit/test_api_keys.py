"""API keys in the pipeline: 401/403 in the one error shape on every prediction route."""

from __future__ import annotations

import base64
import logging

import pytest

from ml_app import create_app
from ml_app.core import apikeys
from tests.unit.test_pipeline import PREDICTIONS

ERROR_KEYS = {"error", "code", "status", "request_id", "details"}


@pytest.fixture
def keys_file(tmp_path):
    return tmp_path / "keys.json"


@pytest.fixture
def keys(keys_file):
    """A key for every model, and one for diabetes only."""
    return {
        "all": apikeys.add_key(keys_file, "all-models"),
        "diabetes": apikeys.add_key(keys_file, "diabetes-only", ("diabetes",)),
    }


@pytest.fixture
def keyed_app(demo_store, keys_file, keys):
    return create_app({"store": demo_store, "api_keys_file": str(keys_file)})


def _client(app, **headers):
    client = app.test_client()
    for name, value in headers.items():
        client.environ_base["HTTP_" + name.upper()] = value
    return client


@pytest.mark.parametrize("route", PREDICTIONS)
def test_no_key_is_401_with_a_challenge(keyed_app, route):
    response = PREDICTIONS[route](_client(keyed_app))
    body = response.get_json()
    assert response.status_code == 401
    assert (set(body), body["code"], body["status"]) == (ERROR_KEYS, "unauthorized", 401)
    assert "missing" in body["error"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ml_app"'
    assert body["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize("route", PREDICTIONS)
def test_an_unknown_key_is_401(keyed_app, keys, route):
    response = PREDICTIONS[route](_client(keyed_app, x_api_key=keys["all"] + "x"))
    assert (response.status_code, response.get_json()["code"]) == (401, "unauthorized")
    assert "not a valid key" in response.get_json()["error"]


@pytest.mark.parametrize("route", PREDICTIONS)
@pytest.mark.parametrize("header", ["x_api_key", "authorization"])
def test_a_good_key_in_either_header_predicts(keyed_app, keys, route, header):
    value = keys["all"] if header == "x_api_key" else f"Bearer {keys['all']}"
    response = PREDICTIONS[route](_client(keyed_app, **{header: value}))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Model-Version"] == "1"


@pytest.mark.parametrize("route", PREDICTIONS)
def test_a_key_as_the_basic_password_predicts(keyed_app, keys, route):
    """Clients that only speak Basic auth (MLflow's, through netrc) send the key as password."""
    basic = base64.b64encode(f"anyone:{keys['all']}".encode()).decode()
    response = PREDICTIONS[route](_client(keyed_app, authorization=f"Basic {basic}"))
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "credentials",
    [
        "Basic " + base64.b64encode(b"anyone:not-a-key").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic !!not-base64!!",
        "Basic " + base64.b64encode(b"user:\xff\xfe").decode(),
        "Basic",
    ],
)
def test_bad_basic_credentials_are_401(keyed_app, credentials):
    response = PREDICTIONS["native one row"](_client(keyed_app, authorization=credentials))
    assert (response.status_code, response.get_json()["code"]) == (401, "unauthorized")


@pytest.mark.parametrize("route", PREDICTIONS)
def test_a_key_for_another_model_is_403(keyed_app, keys, route):
    response = PREDICTIONS[route](_client(keyed_app, x_api_key=keys["diabetes"]))
    body = response.get_json()
    message = "API key diabetes-only may not call model 'iris'."
    assert response.status_code == 403
    if route == "MLflow":  # MLflow's clients read its own error body, as for every error there
        assert body == {"error_code": "PERMISSION_DENIED", "message": message}
    else:
        assert (set(body), body["code"], body["error"]) == (ERROR_KEYS, "forbidden", message)
    assert "X-Model-Version" not in response.headers


def test_a_scoped_key_calls_its_own_model(keyed_app, keys):
    client = _client(keyed_app, authorization=f"bearer {keys['diabetes']}")
    response = client.post("/models/diabetes/predict", json={"features": [0.0] * 10})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert isinstance(response.get_json()["prediction"], float)


def test_model_routes_need_a_key_too(keyed_app, keys):
    assert _client(keyed_app).get("/models").status_code == 401
    assert _client(keyed_app).get("/v2/models/iris").status_code == 401
    listed = _client(keyed_app, x_api_key=keys["all"]).get("/models")
    assert listed.status_code == 200
    assert "iris" in {model["name"] for model in listed.get_json()["models"]}


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/docs/",
        "/metrics",
        "/v2/health/live",
        "/v2/health/ready",
        "/ping",
        "/version",
        "/",
        "/v2",
    ],
)
def test_health_docs_and_metrics_need_no_key(keyed_app, path):
    response = _client(keyed_app).get(path)
    assert response.status_code == 200, (path, response.get_data(as_text=True)[:200])


@pytest.mark.parametrize("path", ["/predict", "/v2/models/iris/infer", "/invocations"])
def test_a_cors_preflight_needs_no_key(keyed_app, path):
    response = _client(keyed_app).options(
        path, headers={"Origin": "http://a.test", "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers


def test_the_access_line_has_the_key_id_never_the_key(keyed_app, keys, caplog):
    with caplog.at_level(logging.INFO, logger="ml_app.access"):
        _client(keyed_app, x_api_key=keys["all"]).post("/predict", json={"features": [1] * 4})
        _client(keyed_app, x_api_key=keys["all"] + "x").post("/predict", json={})
    fields = [record.fields for record in caplog.records if record.name == "ml_app.access"]
    assert [(line["status"], line.get("key_id")) for line in fields] == [
        (200, "all-models"),
        (401, None),
    ]
    assert keys["all"] not in caplog.text


def test_keys_are_off_without_a_keys_file(client):
    response = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 200


def test_openapi_declares_the_key_schemes_and_answers_when_keys_are_on(keyed_app, client):
    document = _client(keyed_app).get("/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKeyBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "API key as a bearer",
    }
    assert schemes["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["apiKeyBasic"]["scheme"] == "basic"
    either = [{"apiKeyBearer": []}, {"apiKeyHeader": []}, {"apiKeyBasic": []}]
    paths = document["paths"]
    for path in ("/predict", "/v2/models/{name}/infer", "/v1/models/{name}:predict"):
        assert paths[path]["post"]["security"] == either
        assert {"401", "403"} <= set(paths[path]["post"]["responses"])
    mlflow_403 = paths["/invocations"]["post"]["responses"]["403"]["content"]
    assert mlflow_403["application/json"]["schema"] == {"$ref": "#/components/schemas/MlflowError"}
    assert paths["/models"]["get"]["security"] == either
    assert "403" not in paths["/models"]["get"]["responses"]
    for path in ("/health/live", "/openapi.json", "/metrics", "/v2/health/ready"):
        assert "security" not in paths[path]["get"], path
    plain = client.get("/openapi.json").get_json()
    assert "securitySchemes" not in plain.get("components", {})
    assert "security" not in plain["paths"]["/predict"]["post"]


def test_with_cors_a_preflight_passes_and_a_refusal_is_readable(demo_store, keys_file, keys):
    origin = "http://127.0.0.1:5173"
    app = create_app(
        {"store": demo_store, "api_keys_file": str(keys_file), "cors_origins": (origin,)}
    )
    preflight = _client(app).options(
        "/predict",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    refused = _client(app).post("/predict", json={}, headers={"Origin": origin})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == origin  # the page can read why


def test_a_missing_keys_file_refuses_predictions_with_401_and_serves_health(demo_store, tmp_path):
    app = create_app({"store": demo_store, "api_keys_file": str(tmp_path / "absent.json")})
    client = app.test_client()
    refused = client.post(
        "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, headers={"X-API-Key": "k"}
    )
    body = refused.get_json()
    assert (refused.status_code, set(body), body["code"]) == (401, ERROR_KEYS, "unauthorized")
    assert client.get("/health/ready").status_code == 200
