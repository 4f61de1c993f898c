"""Admin endpoints: off without a token, 401 without the right one, the CLI's operations."""

from __future__ import annotations

import io

import pytest

from ml_app import create_app
from ml_app.core.store import ModelStore
from tests.support.training import save_iris_forest

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin(store):
    app = create_app({"store": store, "reload_interval": 0, "admin_token": TOKEN})
    return app.test_client()


def test_admin_routes_do_not_exist_without_a_token(store):
    client = create_app({"store": store, "reload_interval": 0}).test_client()
    response = client.put("/admin/models/iris/aliases/production", json={"version": "1"})
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    assert ModelStore(store).aliases("iris") == {}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
def test_wrong_or_missing_token_is_401(admin, store, headers):
    response = admin.put(
        "/admin/models/iris/aliases/production", json={"version": "1"}, headers=headers
    )
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert ModelStore(store).aliases("iris") == {}


def test_token_is_not_in_the_settings_repr(admin):
    assert TOKEN not in repr(admin.application.extensions["ml_app"].settings)


def test_alias_split_and_shadow_over_http(admin, store):
    (store / "iris" / "2").mkdir()  # a version folder is enough for the store's bookkeeping
    put = admin.put("/admin/models/iris/aliases/production", json={"version": "1"}, headers=AUTH)
    assert put.status_code == 200
    assert put.get_json()["aliases"] == {"production": "1"}
    split = admin.put("/admin/models/iris/split", json={"weights": {"1": 3, "2": 1}}, headers=AUTH)
    assert (split.status_code, split.get_json()["split"]) == (200, {"1": 3.0, "2": 1.0})
    shadow = admin.put("/admin/models/iris/shadow", json={"versions": ["2"]}, headers=AUTH)
    assert (shadow.status_code, shadow.get_json()["shadow"]) == (200, ["2"])
    shown = admin.get("/admin/models/iris", headers=AUTH)
    assert shown.status_code == 200
    assert (shown.get_json()["aliases"], shown.get_json()["shadow"]) == ({"production": "1"}, ["2"])
    no_split = admin.delete("/admin/models/iris/split", headers=AUTH)
    assert (no_split.status_code, no_split.get_json()["split"]) == (200, None)
    no_shadow = admin.delete("/admin/models/iris/shadow", headers=AUTH)
    assert (no_shadow.status_code, no_shadow.get_json()["shadow"]) == (200, [])
    gone = admin.delete("/admin/models/iris/aliases/production", headers=AUTH)
    assert (gone.status_code, gone.get_json()["aliases"]) == (200, {})


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("put", "/admin/models/iris/aliases/production", {"version": "9"}, 404, "model_not_found"),
        ("put", "/admin/models/nope/aliases/production", {"version": "1"}, 404, "model_not_found"),
        ("put", "/admin/models/iris/aliases/production", {"v": "1"}, 422, "invalid_input"),
        ("put", "/admin/models/iris/split", {"weights": {"1": -1}}, 422, "invalid_input"),
        ("put", "/admin/models/iris/split", {"weights": [1]}, 422, "invalid_input"),
        ("put", "/admin/models/iris/shadow", {"versions": "1"}, 422, "invalid_input"),
        ("delete", "/admin/models/iris/aliases/staging", None, 404, "model_not_found"),
    ],
)
def test_bad_admin_requests_get_the_json_error_shape(admin, method, path, body, status, code):
    response = getattr(admin, method)(path, json=body, headers=AUTH)
    assert response.status_code == status
    assert response.get_json()["code"] == code


def test_register_an_uploaded_artifact(admin, store, tmp_path):
    path = save_iris_forest(tmp_path / "forest.skops", trees=3)
    response = admin.post(
        "/admin/models/iris/versions",
        data={"artifact": (io.BytesIO(path.read_bytes()), "forest.skops"), "alias": "staging"},
        headers=AUTH,
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["version"] == "2"
    assert ModelStore(store).read_metadata("iris", "2")["sha256"] == body["sha256"]
    assert ModelStore(store).aliases("iris") == {"staging": "2"}

    pickled = admin.post(
        "/admin/models/iris/versions",
        data={"artifact": (io.BytesIO(b"\x80\x04junk"), "model.pkl")},
        headers=AUTH,
    )
    assert (pickled.status_code, pickled.get_json()["code"]) == (422, "invalid_input")
    missing = admin.post("/admin/models/iris/versions", data={}, headers=AUTH)
    assert (missing.status_code, missing.get_json()["code"]) == (400, "bad_request")
    broken = admin.post(
        "/admin/models/iris/versions",
        data={"artifact": (io.BytesIO(b"not a zip"), "x.skops")},
        headers=AUTH,
    )
    assert (broken.status_code, broken.get_json()["code"]) == (422, "invalid_input")
    assert ModelStore(store).versions("iris") == ["1", "2"]


def _upload(client, artifact: bytes):
    return client.post(
        "/admin/models/iris/versions",
        data={"artifact": (io.BytesIO(artifact), "forest.skops")},
        headers=AUTH,
    )


def test_uploads_have_their_own_size_limit(store, tmp_path):
    """ML_APP_ADMIN_MAX_UPLOAD_BYTES, not the prediction body limit, bounds an artifact."""
    artifact = save_iris_forest(tmp_path / "forest.skops", trees=3).read_bytes()
    limits = {"store": store, "reload_interval": 0, "admin_token": TOKEN, "max_body_bytes": 100}
    roomy = create_app({**limits, "admin_max_upload_bytes": len(artifact) + 1024})
    accepted = _upload(roomy.test_client(), artifact)
    assert (accepted.status_code, accepted.get_json()["version"]) == (201, "2")

    tight = create_app({**limits, "admin_max_upload_bytes": len(artifact) // 2})
    refused = _upload(tight.test_client(), artifact)
    body = refused.get_json()
    assert (refused.status_code, body["code"]) == (413, "payload_too_large")
    assert f"{len(artifact) // 2}-byte limit (ML_APP_ADMIN_MAX_UPLOAD_BYTES)" in body["error"]
    assert (body["status"], body["request_id"]) == (413, refused.headers["X-Request-ID"])
    assert ModelStore(store).versions("iris") == ["1", "2"]
