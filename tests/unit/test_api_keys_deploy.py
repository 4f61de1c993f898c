"""The compose and Kubernetes examples turn API keys on, from a folder the app can re-read."""

from __future__ import annotations

from pathlib import PurePosixPath

from tests.support.deploy import compose, kustomize_build
from tests.support.server import PROJECT_ROOT


def test_compose_reads_the_keys_file_from_a_mounted_folder():
    app = compose()["services"]["ml_app"]
    keys_file = PurePosixPath(app["environment"]["ML_APP_API_KEYS_FILE"])
    mounts = dict(volume.split(":")[1::-1] for volume in app["volumes"])
    # the folder holding the file is mounted (a file mount would pin the old file)
    assert mounts[str(keys_file.parent)] == "./deploy/keys"
    assert (PROJECT_ROOT / "deploy" / "keys").is_dir()


def test_kubernetes_mounts_the_keys_secret_as_the_keys_file():
    (deployment,) = [d for d in kustomize_build() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (app,) = (c for c in pod["containers"] if c["image"].startswith("ml_app"))
    env = {item["name"]: item.get("value") for item in app["env"]}
    keys_file = PurePosixPath(env["ML_APP_API_KEYS_FILE"])
    (mount,) = (m for m in app["volumeMounts"] if m["mountPath"] == str(keys_file.parent))
    assert "subPath" not in mount  # a subPath mount never sees the Secret change
    (volume,) = (v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "ml-app-api-keys"
    assert volume["secret"]["items"] == [{"key": "keys.json", "path": keys_file.name}]
