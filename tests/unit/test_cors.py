"""CORS: allowed origins get the headers on every route, preflights need no key, others get none."""

from __future__ import annotations

import pytest
from flask import request

from ml_app import create_app
from ml_app.core.config import Settings, SettingsError
from ml_app.web.cors import ALLOWED_REQUEST_HEADERS, EXPOSED_HEADERS
from tests.support.reference import IRIS_SETOSA
from tests.unit.test_pipeline import PREDICTIONS

ALLOWED = "http://127.0.0.1:8123"
OTHER_ALLOWED = "https://app.example.com"
DENIED = "http://127.0.0.1:9999"


def _split(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


@pytest.fixture
def cors_app(demo_store):
    """An app that lets pages from two origins call it."""
    return create_app({"store": demo_store, "cors_origins": (ALLOWED, OTHER_ALLOWED)})


def _client_from(app, origin: str | None):
    client = app.test_client()
    if origin is not None:  # what a browser adds to every cross-origin request
        client.environ_base["HTTP_ORIGIN"] = origin
    return client


def _preflight(client, path: str, headers: str = "content-type,x-api-key"):
    return client.options(
        path,
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.mark.parametrize("route", PREDICTIONS)
def test_an_allowed_origin_gets_the_answer_and_may_read_the_pipeline_headers(cors_app, route):
    response = PREDICTIONS[route](_client_from(cors_app, ALLOWED))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert _split(response.headers["Access-Control-Expose-Headers"]) == {
        name.lower() for name in EXPOSED_HEADERS
    }
    assert len(response.headers["X-Request-ID"]) == 32
    assert response.headers["X-Model-Version"] == "1"
    # two origins allowed: the answer depends on Origin, so caches must key on it
    assert "Origin" in response.headers.get_all("Vary")


def test_each_allowed_origin_is_named_back_alone(cors_app):
    response = _client_from(cors_app, OTHER_ALLOWED).post("/predict", json={"features": [1, 2]})
    assert response.headers.get_all("Access-Control-Allow-Origin") == [OTHER_ALLOWED]


@pytest.mark.parametrize("origin", [DENIED, "null", "http://127.0.0.1:8123.evil.example"])
def test_a_denied_origin_gets_no_cors_header(cors_app, origin):
    response = _client_from(cors_app, origin).post("/predict", json={"features": IRIS_SETOSA})
    assert response.get_json()["prediction"] == "setosa"  # the browser, not the server, blocks
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]


@pytest.mark.parametrize(
    "path", ["/predict", "/predict/batch", "/v2/models/iris/infer", "/invocations", "/models"]
)
def test_a_preflight_is_answered_without_a_key(cors_app, path):
    response = _preflight(_client_from(cors_app, ALLOWED), path)
    assert response.status_code == 200
    assert response.get_data() == b""
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert _split(response.headers["Access-Control-Allow-Headers"]) == {"content-type", "x-api-key"}
    assert "post" in _split(response.headers["Access-Control-Allow-Methods"])
    assert response.headers["Access-Control-Max-Age"] == "600"


def test_a_preflight_gets_every_allowed_header_and_nothing_else(cors_app):
    asked = ",".join(ALLOWED_REQUEST_HEADERS) + ",X-Not-Allowed"
    response = _preflight(_client_from(cors_app, ALLOWED), "/predict", asked)
    assert _split(response.headers["Access-Control-Allow-Headers"]) == {
        name.lower() for name in ALLOWED_REQUEST_HEADERS
    }


def test_a_preflight_from_a_denied_origin_allows_nothing(cors_app):
    response = _preflight(_client_from(cors_app, DENIED), "/predict")
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]


def test_a_preflight_passes_a_hook_that_refuses_requests_without_a_key(cors_app):
    @cors_app.before_request
    def _require_key():  # the shape of an API-key check: preflights carry no credentials
        if request.method != "OPTIONS" and "X-API-Key" not in request.headers:
            return {"error": "no key"}, 401
        return None

    client = _client_from(cors_app, ALLOWED)
    assert _preflight(client, "/predict").headers["Access-Control-Allow-Origin"] == ALLOWED
    refused = client.post("/predict", json={"features": IRIS_SETOSA})
    # the page can read the refusal: a hook's answer gets the CORS headers too
    assert (refused.status_code, refused.get_json()) == (401, {"error": "no key"})
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_an_error_answer_carries_the_cors_headers(cors_app):
    response = _client_from(cors_app, ALLOWED).post("/predict", json={"features": "x"})
    body = response.get_json()
    assert (response.status_code, body["status"]) == (422, 422)
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["X-Request-ID"] == body["request_id"]


def test_a_request_without_origin_gets_no_cors_header(cors_app):
    response = _client_from(cors_app, None).post("/predict", json={"features": IRIS_SETOSA})
    assert response.get_json()["prediction"] == "setosa"
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]
    assert "Vary" not in response.headers


def test_no_origins_by_default_means_no_cors_hook_and_no_header(app, cors_app):
    assert Settings().cors_origins == ()
    assert len(app.after_request_funcs[None]) == len(cors_app.after_request_funcs[None]) - 1
    response = _client_from(app, ALLOWED).post("/predict", json={"features": IRIS_SETOSA})
    assert response.get_json()["prediction"] == "setosa"
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]
    preflight = _preflight(_client_from(app, ALLOWED), "/predict")
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_origins_are_read_from_the_environment():
    environ = {"ML_APP_CORS_ORIGINS": " https://app.example.com, http://127.0.0.1:8123 ,"}
    assert Settings.from_env(environ).cors_origins == ("https://app.example.com", ALLOWED)


@pytest.mark.parametrize(
    "value", ["*", "app.example.com", "https://app.example.com/", "ftp://x", "https://.*"]
)
def test_a_value_that_is_not_an_origin_is_refused(value):
    with pytest.raises(SettingsError, match="ML_APP_CORS_ORIGINS"):
        Settings.from_env({"ML_APP_CORS_ORIGINS": value})
