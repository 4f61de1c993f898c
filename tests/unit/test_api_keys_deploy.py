"""The image, compose and Kubernetes examples turn API keys on, the keys file from a secret."""

from __future__ import annotations

from pathlib import PurePosixPath

from tests.support.deploy import compose, dockerfile_stages, env_of, kustomize_build
from tests.support.server import PROJECT_ROOT


def _image_keys_file() -> PurePosixPath:
    return PurePosixPath(env_of(dockerfile_stages()[-1])["ML_APP_API_KEYS_FILE"])


def test_the_image_expects_the_keys_file_in_a_secrets_folder():
    keys_file = _image_keys_file()
    # Its own folder: a folder mount (docker -v, a Kubernetes Secret) sees atomic rewrites.
    assert keys_file.parent.parent == PurePosixPath("/run/secrets")
    assert keys_file.name == "keys.json"


def test_compose_mounts_the_keys_file_secret_where_the_image_looks():
    document = compose()
    app = document["services"]["ml_app"]
    assert "ML_APP_API_KEYS_FILE" not in app["environment"]  # the image's own path
    (secret,) = app["secrets"]
    assert PurePosixPath(secret["target"]) == _image_keys_file()
    source = document["secrets"][secret["source"]]
    assert source == {"file": "./deploy/keys/keys.json"}
    assert (PROJECT_ROOT / "deploy" / "keys").is_dir()
    ignored = (PROJECT_ROOT / "deploy" / "keys" / ".gitignore").read_text().splitlines()
    assert "*" in ignored  # no keys file is ever committed


def test_kubernetes_mounts_the_keys_secret_folder_where_the_image_looks():
    (deployment,) = [d for d in kustomize_build() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (app,) = (c for c in pod["containers"] if c["image"].startswith("ml_app"))
    env = {item["name"]: item.get("value") for item in app["env"]}
    keys_file = PurePosixPath(env["ML_APP_API_KEYS_FILE"])
    assert keys_file == _image_keys_file()
    (mount,) = (m for m in app["volumeMounts"] if m["mountPath"] == str(keys_file.parent))
    assert "subPath" not in mount  # a subPath mount never sees the Secret change
    assert mount["readOnly"] is True
    (volume,) = (v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "ml-app-api-keys"
    assert volume["secret"]["items"] == [{"key": "keys.json", "path": keys_file.name}]
    # Without the Secret the pod still starts (keyed requests 401), rather than hang unscheduled.
    assert volume["secret"]["optional"] is True
    assert not [d for d in kustomize_build() if d["kind"] == "Secret"]  # no key in git
