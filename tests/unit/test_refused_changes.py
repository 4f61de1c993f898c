"""A refused operator action changes nothing: the store's files byte for byte before and after."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import skops.io
from click.testing import CliRunner
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge

from ml_app import create_app
from ml_app.core import lifecycle
from ml_app.core.lifecycle import LifecycleError
from ml_app.core.store import LoadPolicy, ModelStore
from ml_app.ops.cli import main
from tests.support.reference import IRIS_SETOSA
from tests.support.store import add_version

TOKEN = "refusal-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def store_files(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under the store, hidden ones included."""
    return {
        path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A valid iris classifier and a regressor, as operators hand them over."""
    folder = tmp_path_factory.mktemp("artifacts")
    x, y = datasets.load_iris(return_X_y=True)
    skops.io.dump(
        RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), folder / "f.skops"
    )
    xd, yd = datasets.load_diabetes(return_X_y=True)
    skops.io.dump(Ridge().fit(xd, yd), folder / "ridge.skops")
    (folder / "bad.json").write_bytes(b"{not json")
    return {
        "forest": folder / "f.skops",
        "ridge": folder / "ridge.skops",
        "bad": folder / "bad.json",
    }


@pytest.fixture
def staged(store: Path) -> Path:
    """The store with a second version, an alias, a split and a shadow to refuse changes to."""
    add_version(store, "iris", "2")
    models = ModelStore(store)
    lifecycle.set_alias(models, "iris", "production", "1")
    lifecycle.set_split(models, "iris", {"1": 9, "2": 1})
    lifecycle.set_shadow(models, "iris", ["2"])
    # As a store whose control files were written by hand: a refusal must not add a lock file.
    (store / "iris" / ".lock").unlink()
    return store


def _upload(path: Path, **form: str) -> dict:
    return {"artifact": (io.BytesIO(path.read_bytes()), path.name), **form}


ADMIN_REFUSALS = [
    ("post", "/admin/models/iris/versions", {"alias": "not an alias!"}, 422),
    ("post", "/admin/models/iris/versions", {"alias": "7"}, 422),
    ("post", "/admin/models/iris/versions", {"version": "../x"}, 422),
    ("post", "/admin/models/iris/versions", {"version": "1"}, 422),
    ("post", "/admin/models/iris/versions", {"metadata": "{nope"}, 400),
    ("post", "/admin/models/iris/versions", {"metadata": "[1]"}, 422),
    ("post", "/admin/models/iris/versions", {"metadata": '{"task": "regression"}'}, 422),
    ("post", "/admin/models/fresh/versions", {}, 422),  # a new model needs feature names
    ("post", "/admin/models/diabetes/versions", {}, 422),  # 4 features for a 10-feature model
    ("get", "/admin/models/nope", None, 404),
    ("put", "/admin/models/iris/aliases/production", {"version": "9"}, 404),
    ("put", "/admin/models/iris/aliases/4", {"version": "1"}, 422),
    ("put", "/admin/models/nope/aliases/production", {"version": "1"}, 404),
    ("put", "/admin/models/iris/aliases/production", {"v": "1"}, 422),
    ("delete", "/admin/models/iris/aliases/staging", None, 404),
    ("delete", "/admin/models/nope/aliases/production", None, 404),
    ("put", "/admin/models/iris/split", {"weights": {"1": 1, "9": 1}}, 404),
    ("put", "/admin/models/iris/split", {"weights": {"1": -1}}, 422),
    ("put", "/admin/models/iris/split", {"weights": {"1": 0}}, 422),
    ("delete", "/admin/models/nope/split", None, 404),
    ("put", "/admin/models/iris/shadow", {"versions": ["9"]}, 404),
    ("put", "/admin/models/iris/shadow", {"versions": "2"}, 422),
    ("delete", "/admin/models/nope/shadow", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ADMIN_REFUSALS)
def test_refused_admin_request_changes_nothing(staged, artifacts, method, path, body, status):
    client = create_app({"store": staged, "reload_interval": 0, "admin_token": TOKEN}).test_client()
    before = store_files(staged)
    if path.endswith("/versions"):
        response = client.post(path, data=_upload(artifacts["forest"], **body), headers=AUTH)
    else:
        response = getattr(client, method)(path, json=body, headers=AUTH)
    answer = response.get_json()
    assert response.status_code == status, answer
    assert {"error", "code", "status", "request_id"} <= set(answer)
    assert answer["status"] == status
    assert str(staged) not in answer["error"]
    assert store_files(staged) == before


@pytest.mark.parametrize(
    ("upload", "status"),
    [({}, 400), ({"artifact": (io.BytesIO(b"\x80\x04junk"), "model.pkl")}, 422)],
)
def test_refused_upload_changes_nothing(staged, upload, status):
    client = create_app({"store": staged, "reload_interval": 0, "admin_token": TOKEN}).test_client()
    before = store_files(staged)
    response = client.post("/admin/models/iris/versions", data=upload, headers=AUTH)
    assert (response.status_code, response.get_json()["status"]) == (status, status)
    assert store_files(staged) == before


CLI_REFUSALS = [
    ["list", "nope"],
    ["register", "iris", "{forest}", "--alias", "not an alias!"],
    ["register", "iris", "{forest}", "--alias", "7"],
    ["register", "iris", "{forest}", "--version", "2"],
    ["register", "iris", "{forest}", "--metadata", "{bad}"],
    ["register", "iris", "{ridge}"],
    ["register", "fresh", "{forest}"],
    ["alias", "set", "iris", "production", "9"],
    ["alias", "set", "iris", "4", "1"],
    ["alias", "set", "nope", "production", "1"],
    ["alias", "remove", "iris", "staging"],
    ["split", "iris", "1=1", "9=1"],
    ["split", "iris", "1=0"],
    ["split", "nope", "--clear"],
    ["shadow", "iris", "9"],
    ["shadow", "nope", "--clear"],
]


@pytest.mark.parametrize("args", CLI_REFUSALS, ids=" ".join)
def test_refused_cli_command_changes_nothing(staged, artifacts, args):
    before = store_files(staged)
    argv = [arg.format(**artifacts) for arg in args]
    result = CliRunner().invoke(main, ["models", "--store", str(staged), *argv])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert store_files(staged) == before


def test_register_with_an_alias_refused_by_a_broken_routing_file_writes_nothing(store, artifacts):
    (store / "iris" / "routing.json").write_bytes(b"{half-written")
    before = store_files(store)
    new = lifecycle.NewVersion("iris", artifacts["forest"], alias="staging")
    with pytest.raises(LifecycleError, match=r"iris/routing\.json is not valid JSON"):
        lifecycle.register_version(ModelStore(store), LoadPolicy(), new)
    assert store_files(store) == before


def test_a_version_whose_alias_cannot_be_set_is_not_left_serving(store, artifacts, monkeypatch):
    before = store_files(store)

    def concurrent_failure(self, name, aliases):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ModelStore, "write_aliases", concurrent_failure)
    new = lifecycle.NewVersion("iris", artifacts["forest"], alias="staging")
    with pytest.raises(LifecycleError, match="No space left"):
        lifecycle.register_version(ModelStore(store), LoadPolicy(), new)
    monkeypatch.undo()
    after = store_files(store)
    # It got as far as taking the model's lock (a file servers never read); nothing else stays.
    assert after.pop("iris/.lock") == b""
    assert after == before
    client = create_app({"store": store, "reload_interval": 0}).test_client()
    served = client.post("/predict", json={"features": IRIS_SETOSA}).get_json()
    assert served["version"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/admin/models/iris", None),
        ("put", "/admin/models/iris/aliases/staging", {"version": "1"}),
        ("delete", "/admin/models/iris/aliases/production", None),
        ("put", "/admin/models/iris/split", {"weights": {"production": 1, "2": 1}}),
        ("put", "/admin/models/iris/shadow", {"versions": ["production"]}),
    ],
)
def test_admin_request_on_a_half_edited_aliases_file_is_refused(staged, method, path, body):
    (staged / "iris" / "aliases.json").write_bytes(b'{"production": ')
    client = create_app({"store": staged, "reload_interval": 0, "admin_token": TOKEN}).test_client()
    before = store_files(staged)
    response = getattr(client, method)(path, json=body, headers=AUTH)
    answer = response.get_json()
    assert (response.status_code, answer["code"]) == (422, "invalid_input"), answer
    assert answer["error"].startswith("iris/aliases.json is not valid JSON")
    assert store_files(staged) == before
