"""deploy/k8s: rendered as kustomize renders it, valid against the Kubernetes schemas, and
consistent with the image and the app it runs."""

from __future__ import annotations

import re
import shutil
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ml_app.core.config import PROJECT_ROOT
from tests.support.deploy import (
    K8S_DIR,
    dockerfile_stages,
    env_of,
    kustomization,
    kustomize_build,
)

# The oldest Kubernetes we support (autoscaling/v2 and policy/v1 are GA well before it) and the
# newest whose schemas the pinned kubernetes-validate ships; both are checked offline.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The rendered manifests by kind."""
    rendered = kustomize_build()
    # by kind; a second object of a kind (the nginx ConfigMap) by kind/name
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in rendered:
        key = (
            doc["kind"]
            if doc["kind"] not in by_kind
            else f"{doc['kind']}/{doc['metadata']['name']}"
        )
        by_kind[key] = doc
    assert len(by_kind) == len(rendered), "objects with the same kind and name"
    return by_kind


@pytest.fixture(scope="module")
def pod(manifests) -> dict[str, Any]:
    return manifests["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod) -> dict[str, Any]:
    """The app's container."""
    (app,) = (c for c in pod["spec"]["containers"] if c["image"].startswith("ml_app"))
    return app


@pytest.fixture(scope="module")
def nginx(pod) -> dict[str, Any]:
    """The nginx sidecar in front of it."""
    (sidecar,) = (c for c in pod["spec"]["containers"] if c["name"] == "nginx")
    return sidecar


def test_kustomization_lists_every_manifest():
    files = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization()["resources"]) == sorted(files)


def test_renders_the_objects_a_scaled_deployment_needs(manifests):
    wanted = {
        "ConfigMap",
        "ConfigMap/ml-app-nginx",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert set(manifests) == wanted


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(manifests, version):
    for manifest in manifests.values():
        # strict: unknown fields (a typo such as `readinesProbe`) are errors too.
        kubernetes_validate.validate(manifest, version, strict=True)


def test_schema_check_rejects_a_misspelt_field(manifests):
    broken = {**manifests["Service"], "spec": {**manifests["Service"]["spec"], "selecter": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_probes_ask_routes_the_app_serves_through_nginx(app, container, nginx):
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for probe in probes.values():
        assert probe["path"] in routes
        # Gunicorn listens on loopback, which the kubelet cannot reach: probes go through nginx
        assert probe["port"] == nginx["ports"][0]["containerPort"]


def test_ports_line_up_from_service_through_nginx_to_the_image(manifests, pod, container, nginx):
    image_env = env_of(dockerfile_stages()[-1])
    app_port = container["ports"][0]["containerPort"]
    assert app_port == int(image_env["PORT"])
    env = {item["name"]: item["value"] for item in container["env"]}
    assert (env["PORT"], env["HOST"], env["ML_APP_PROXY_HOPS"]) == (str(app_port), "127.0.0.1", "1")
    front = nginx["ports"][0]
    nginx_env = {item["name"]: item["value"] for item in nginx["env"]}
    assert nginx_env["NGINX_LISTEN"] == str(front["containerPort"])
    assert nginx_env["NGINX_UPSTREAM"] == f"127.0.0.1:{app_port}"
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == front["name"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(front["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_nginx_configmap_holds_the_bundled_template(manifests, nginx):
    template = (PROJECT_ROOT / "deploy" / "nginx" / "nginx.conf.template").read_text()
    data = manifests["ConfigMap/ml-app-nginx"]["data"]
    assert data["nginx.conf.template"] == template
    command = " ".join(nginx["command"])
    names = set(re.findall(r"\$\{(NGINX_\w+)\}", template))
    given = {item["name"] for item in nginx["env"]}
    assert names <= given, names - given
    assert all(f"${name}" in command for name in names)
    assert nginx["securityContext"]["readOnlyRootFilesystem"] is True


def test_selectors_pick_the_deployment_pods(manifests, pod):
    labels = pod["metadata"]["labels"]
    selectors = [
        manifests["Service"]["spec"]["selector"],
        manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        manifests["Deployment"]["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        manifests["Deployment"]["metadata"]["name"],
    )
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert manifests["PodDisruptionBudget"]["spec"]["minAvailable"] < hpa["minReplicas"]


def test_settings_come_from_the_configmap(manifests, container):
    name = manifests["ConfigMap"]["metadata"]["name"]
    assert {"configMapRef": {"name": name}} in container["envFrom"]
    settings = manifests["ConfigMap"]["data"]
    assert int(settings["WEB_CONCURRENCY"]) <= int(container["resources"]["limits"]["cpu"])


def test_termination_outlasts_the_graceful_drain(manifests, pod, container):
    drain = int(manifests["ConfigMap"]["data"]["GUNICORN_GRACEFUL_TIMEOUT"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain + pre_stop


def test_runs_as_the_image_user_with_writable_scratch_only(pod, container):
    final = dockerfile_stages()[-1]
    uid = int(next(args for name, args in final if name == "USER").split(":")[0])
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
    # Gunicorn's worker heartbeat files and the Prometheus multiprocess files must be writable.
    writable = [path for path, name in mounts.items() if name in empty_dirs]
    multiproc = env_of(final)["PROMETHEUS_MULTIPROC_DIR"]
    assert "/tmp" in writable
    assert any(multiproc.startswith(path.rstrip("/") + "/") for path in writable)


def _kustomization(tmp_path, **fields: Any) -> None:
    shutil.copy(K8S_DIR / "deployment.yaml", tmp_path / "deployment.yaml")
    spec = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(spec))


def test_rendering_sets_labels_and_images_as_kustomize_does(tmp_path):
    # The expected values are what `kubectl kustomize` (kustomize v5.5) renders for this file.
    _kustomization(
        tmp_path,
        resources=["deployment.yaml"],
        labels=[{"pairs": {"team": "models"}}],
        images=[{"name": "ml_app", "newName": "registry.example.com:5000/ml_app", "newTag": "1"}],
    )
    (deployment,) = kustomize_build(tmp_path)
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/name": "ml-app",
        "team": "models",
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app.kubernetes.io/name": "ml-app"}  # untouched
    images = [c["image"] for c in template["spec"]["containers"]]
    assert images == [
        "nginxinc/nginx-unprivileged:1.27-alpine",
        "registry.example.com:5000/ml_app:1",
    ]


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"namePrefix": "prod-"}, "does not render ['namePrefix']"),
        (
            {"labels": [{"pairs": {"team": "models"}, "includeSelectors": True}]},
            "only plain label pairs",
        ),
        ({"images": [{"name": "ml_app", "digest": "sha256:00"}]}, "unsupported image entry"),
    ],
)
def test_rendering_refuses_kustomize_features_it_does_not_implement(tmp_path, fields, refusal):
    _kustomization(tmp_path, resources=["deployment.yaml"], **fields)
    with pytest.raises(AssertionError, match=re.escape(refusal)):
        kustomize_build(tmp_path)


def _expanded(arguments: list[str], variables: dict[str, str]) -> list[str]:
    """$(NAME) references filled in, as the kubelet does from the container's environment."""
    return [re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], arg) for arg in arguments]


def test_the_payload_shipper_is_a_native_sidecar_on_the_apps_payload_volume(
    manifests, pod, container
):
    (shipper,) = pod["spec"]["initContainers"]
    # started before the app and stopped after it, so its last pass sees the final segments
    assert shipper["restartPolicy"] == "Always"
    assert shipper["image"] == container["image"]
    settings = manifests["ConfigMap"]["data"]
    assert {"configMapRef": {"name": manifests["ConfigMap"]["metadata"]["name"]}} in shipper[
        "envFrom"
    ]
    command = _expanded(shipper["command"], settings)
    assert command[:5] == ["python", "-m", "ml_app", "payloads", "ship"]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert set(options) == {"--dir", "--sink"}
    assert options["--sink"].split("://")[0] in ("http", "https", "redis", "rediss")
    # the folder the app writes (ML_APP_PAYLOAD_LOG_DIR) is the volume the shipper reads
    folder = settings["ML_APP_PAYLOAD_LOG_DIR"]
    assert options["--dir"] == folder
    app_mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    shipper_mounts = {m["mountPath"]: m["name"] for m in shipper["volumeMounts"]}
    assert app_mounts[folder] == shipper_mounts[folder]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == app_mounts[folder]]
    assert "medium" not in volume["emptyDir"]  # on disk: segments wait here while the sink is down
    assert shipper["securityContext"]["readOnlyRootFilesystem"] is True
