"""Admin endpoints: the command line's store operations over HTTP, behind a bearer token.

Registered only when ML_APP_ADMIN_TOKEN is set. Changes are written to the store like the
command line writes them; every worker (this one included) applies them on its next poll.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Response, request

from ml_app.core import lifecycle
from ml_app.core.errors import BadRequest, InvalidInput, ModelNotFound
from ml_app.core.lifecycle import LifecycleError, NotInStore
from ml_app.core.registration_process import register_in_child
from ml_app.core.store import ModelStore
from ml_app.web.auth import bearer_matches
from ml_app.web.body import read_json_object
from ml_app.web.errors import unauthorized
from ml_app.web.responses import json_response
from ml_app.web.state import app_state

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _authorize() -> Response | None:
    settings = app_state().settings
    if bearer_matches(settings.admin_token):
        request.max_content_length = settings.admin_max_upload_bytes
        return None
    return unauthorized("A valid admin bearer token is required.", "ml_app admin")


@bp.get("/models/<name>")
def show(name: str) -> Response:
    """What the store says about a model (what workers will serve after their next poll)."""
    return _answer(lambda store: lifecycle.describe(store, name))


@bp.post("/models/<name>/versions")
def register(name: str) -> Response:
    """Register a multipart `artifact` (.skops) as a new version; optional version/alias."""
    upload = request.files.get("artifact")
    if upload is None or not upload.filename:
        raise BadRequest("Send the model as a multipart/form-data file field named 'artifact'.")
    if not upload.filename.endswith(".skops"):
        raise InvalidInput("Only .skops artifacts are accepted over HTTP (no pickle).")
    metadata = {**_metadata_field(), **_declared_features()}
    settings = app_state().settings
    with tempfile.TemporaryDirectory(prefix="ml_app-upload-") as folder:
        artifact = Path(folder) / Path(upload.filename).name
        upload.save(artifact)
        metadata_file = Path(folder) / "metadata.json"
        metadata_file.write_bytes(orjson.dumps(metadata))
        form = request.form
        new = lifecycle.NewVersion(
            name, artifact, form.get("version") or None, metadata, form.get("alias") or None
        )
        # In a child process, so this worker never imports the ONNX converter.
        done = _answer(lambda _: register_in_child(settings, new, metadata_file), raw=True)
    return json_response(done.to_json(), 201)


@bp.put("/models/<name>/aliases/<alias>")
def set_alias(name: str, alias: str) -> Response:
    """Point an alias at a version: {"version": "3"}."""
    version = str(_field("version", (str, int)))
    return _answer(lambda store: lifecycle.set_alias(store, name, alias, version), name)


@bp.delete("/models/<name>/aliases/<alias>")
def remove_alias(name: str, alias: str) -> Response:
    """Remove an alias."""
    return _answer(lambda store: lifecycle.remove_alias(store, name, alias), name)


@bp.put("/models/<name>/split")
def set_split(name: str) -> Response:
    """Split unversioned traffic: {"weights": {"3": 90, "4": 10}}."""
    weights = _field("weights", dict)
    return _answer(lambda store: lifecycle.set_split(store, name, weights), name, warn=True)


@bp.delete("/models/<name>/split")
def clear_split(name: str) -> Response:
    """Remove the traffic split."""
    return _answer(lambda store: lifecycle.set_split(store, name, {}), name, warn=True)


@bp.put("/models/<name>/shadow")
def set_shadow(name: str) -> Response:
    """Send a copy of unversioned traffic to versions: {"versions": ["5"]}."""
    versions = _field("versions", list)
    return _answer(lambda store: lifecycle.set_shadow(store, name, versions), name, warn=True)


@bp.delete("/models/<name>/shadow")
def clear_shadow(name: str) -> Response:
    """Turn shadow traffic off."""
    return _answer(lambda store: lifecycle.set_shadow(store, name, []), name, warn=True)


def _answer(action: Any, name: str | None = None, raw: bool = False, warn: bool = False) -> Any:
    """Run a store operation; answer the model's store view (or the raw result).

    `warn`: the action returns a RoutingConfig; the answer adds `warnings` about it.
    """
    settings = app_state().settings
    store = ModelStore(settings.store)
    try:
        result = action(store)
        if raw:
            return result
        answer = lifecycle.describe(store, name) if name else result
        if warn:
            answer["warnings"] = lifecycle.backend_warnings(
                store, str(name), result, settings.backend
            )
        return json_response(answer)
    except NotInStore as exc:
        raise ModelNotFound(str(exc)) from exc
    except LifecycleError as exc:
        raise InvalidInput(str(exc)) from exc


def _field(key: str, kinds: type | tuple[type, ...]) -> Any:
    body = read_json_object()
    if not isinstance(body.get(key), kinds) or isinstance(body.get(key), bool):
        raise InvalidInput(f"Send a JSON object with {key!r}.", {key: ["Missing or wrong type."]})
    return body[key]


def _metadata_field() -> dict[str, Any]:
    raw = request.form.get("metadata")
    if not raw:
        return {}
    try:
        metadata = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The metadata field is not valid JSON: {exc}.") from None
    if not isinstance(metadata, dict):
        raise InvalidInput("The metadata field must hold a JSON object.")
    return metadata


def _declared_features() -> dict[str, str]:
    """The form's entity_key and feature_source fields, as metadata (predict by entity id)."""
    form = request.form
    return {key: form[key] for key in ("entity_key", "feature_source") if form.get(key)}
