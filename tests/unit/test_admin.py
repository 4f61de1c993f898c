"""Admin endpoints: off without a token, 401 without the right one, the CLI's operations."""

from __future__ import annotations

import gzip
import io

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from ml_app import create_app
from ml_app.core import registration_process
from ml_app.core.store import ModelStore
from tests.support.training import (
    BOOSTING_TYPES,
    save_iris_boosting,
    save_iris_forest,
    save_iris_nearest_centroid,
)

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin(store):
    app = create_app({"store": store, "reload_interval": 0, "admin_token": TOKEN})
    return app.test_client()


@pytest.fixture
def trusting_admin(store):
    """An admin API whose loading policy trusts the unconvertible boosting model's types."""
    settings = {"store": store, "reload_interval": 0, "admin_token": TOKEN}
    return create_app({**settings, "trusted_types": BOOSTING_TYPES}).test_client()


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


def test_a_compressed_upload_is_held_to_the_upload_limit(store, tmp_path):
    """A gzip-compressed artifact upload decodes under the upload limit, not the request one."""
    artifact = save_iris_forest(tmp_path / "forest.skops", trees=3).read_bytes()
    boundary, form = encode_multipart(
        {"artifact": FileStorage(io.BytesIO(artifact), "forest.skops")}
    )
    limits = {"store": store, "reload_interval": 0, "admin_token": TOKEN, "max_body_bytes": 100}

    def upload(admin_max_upload_bytes: int):
        app = create_app({**limits, "admin_max_upload_bytes": admin_max_upload_bytes})
        return app.test_client().post(
            "/admin/models/iris/versions",
            data=gzip.compress(form),
            headers={**AUTH, "Content-Encoding": "gzip"},
            content_type=f"multipart/form-data; boundary={boundary}",
        )

    accepted = upload(len(form) + 1024)
    assert (accepted.status_code, accepted.get_json()["version"]) == (201, "2")
    refused = upload(len(form) // 2)
    assert (refused.status_code, refused.get_json()["code"]) == (413, "payload_too_large")
    assert ModelStore(store).versions("iris") == ["1", "2"]


def test_registration_answers_which_backend_serves_the_version(admin, store, tmp_path):
    forest = save_iris_forest(tmp_path / "forest.skops", trees=3)
    converted = _upload(admin, forest.read_bytes())
    assert converted.status_code == 201, converted.get_json()
    assert converted.get_json()["backend"] == {"name": "onnx", "input_dtype": "float32"}

    centroid = save_iris_nearest_centroid(tmp_path / "centroid.skops")
    fallback = _upload(admin, centroid.read_bytes())
    assert fallback.status_code == 201, fallback.get_json()
    body = fallback.get_json()
    assert (body["version"], body["backend"]["name"]) == ("3", "sklearn")
    assert body["backend"]["reason"].startswith("no ONNX model: float64 input: Unable to find")
    assert "NearestCentroid" in body["backend"]["reason"]
    written = ModelStore(store).read_metadata("iris", "3")
    assert body["backend"]["reason"] == f"no ONNX model: {written['onnx']['error']}"


def test_registration_uses_the_servers_loading_policy(trusting_admin, tmp_path):
    """The registering process trusts what the server trusts (ML_APP_TRUSTED_TYPES)."""
    boosting = save_iris_boosting(tmp_path / "boosting.skops").read_bytes()
    trusted = _upload(trusting_admin, boosting)
    assert trusted.status_code == 201, trusted.get_json()
    # The pinned skl2onnx converts it: float32 input, like the other tree models.
    assert trusted.get_json()["backend"] == {"name": "onnx", "input_dtype": "float32"}


def test_split_and_shadow_warn_when_the_compared_versions_run_on_different_backends(
    admin, tmp_path
):
    forest = save_iris_forest(tmp_path / "f.skops", trees=3).read_bytes()
    assert _upload(admin, forest).status_code == 201
    centroid = save_iris_nearest_centroid(tmp_path / "c.skops").read_bytes()
    assert _upload(admin, centroid).status_code == 201

    same = admin.put("/admin/models/iris/split", json={"weights": {"1": 9, "2": 1}}, headers=AUTH)
    assert (same.status_code, same.get_json()["warnings"]) == (200, [])
    mixed = admin.put("/admin/models/iris/split", json={"weights": {"1": 9, "3": 1}}, headers=AUTH)
    assert mixed.status_code == 200
    [warning] = mixed.get_json()["warnings"]
    assert warning.startswith("split of iris mixes backends: version 1 on onnx (float64 input), ")
    assert "version 3 on sklearn (no ONNX model: float64 input: Unable to find" in warning
    assert mixed.get_json()["split"] == {"1": 9.0, "3": 1.0}
    assert admin.delete("/admin/models/iris/split", headers=AUTH).get_json()["warnings"] == []

    admin.put("/admin/models/iris/aliases/production", json={"version": "1"}, headers=AUTH)
    shadow = admin.put("/admin/models/iris/shadow", json={"versions": ["2", "3"]}, headers=AUTH)
    [warning] = shadow.get_json()["warnings"]
    assert warning.startswith("shadow of iris compares backends: version 3 on sklearn (")
    assert warning.endswith("against version 1 on onnx (float64 input)")
    assert shadow.get_json()["shadow"] == ["2", "3"]


def test_no_backend_warning_where_every_version_runs_on_one_backend(store, tmp_path):
    """ML_APP_BACKEND=sklearn serves every version with scikit-learn: nothing is mixed."""
    settings = {"store": store, "reload_interval": 0, "admin_token": TOKEN, "backend": "sklearn"}
    admin = create_app(settings).test_client()
    centroid = save_iris_nearest_centroid(tmp_path / "c.skops").read_bytes()
    assert _upload(admin, centroid).status_code == 201
    split = admin.put("/admin/models/iris/split", json={"weights": {"1": 9, "2": 1}}, headers=AUTH)
    assert (split.status_code, split.get_json()["warnings"]) == (200, [])
    assert split.get_json()["split"] == {"1": 9.0, "2": 1.0}


def test_register_declares_a_feature_source_from_form_fields(admin, store, tmp_path):
    path = save_iris_forest(tmp_path / "forest.skops", trees=3)
    source = "redis://127.0.0.1:6379/1"
    fields = {"entity_key": "customer_id", "feature_source": source}
    response = admin.post(
        "/admin/models/iris/versions",
        data={"artifact": (io.BytesIO(path.read_bytes()), "forest.skops"), **fields},
        headers=AUTH,
    )
    assert response.status_code == 201, response.get_json()
    metadata = ModelStore(store).read_metadata("iris", "2")
    assert (metadata["entity_key"], metadata["feature_source"]) == ("customer_id", source)
    refused = admin.post(
        "/admin/models/iris/versions",
        data={
            "artifact": (io.BytesIO(path.read_bytes()), "forest.skops"),
            "entity_key": "customer_id",
            "feature_source": "ftp://feature-host/x",
        },
        headers=AUTH,
    )
    assert (refused.status_code, refused.get_json()["code"]) == (422, "invalid_input")
    assert "feature_source" in refused.get_json()["error"]
    assert ModelStore(store).versions("iris") == ["1", "2"]


def test_a_registration_that_runs_out_of_time_is_a_503_and_the_store_stays_whole(
    admin, store, tmp_path, monkeypatch
):
    monkeypatch.setattr(registration_process, "CHILD_TIMEOUT_SECONDS", 0.05)
    response = _upload(admin, save_iris_forest(tmp_path / "forest.skops", trees=3).read_bytes())
    body = response.get_json()
    assert (response.status_code, body["code"]) == (503, "registration_timeout"), body
    assert "0.05 s" in body["error"] and "/admin/models/iris" in body["error"]
    assert ModelStore(store).versions("iris") == ["1"]  # the child was stopped before writing
