"""docker-compose.yml: valid against the Compose Specification schema, and wired together.

No compose CLI is installed; the schema is the one Docker Compose itself validates with (vendored
by check-jsonschema), and the checks below cover what `docker compose config` adds: files and
services that must exist.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_app.core.config import Settings
from tests.support.deploy import compose, dockerfile_stages, env_of
from tests.support.server import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
GRAFANA = PROJECT_ROOT / "deploy" / "grafana"


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's ./relative bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (PROJECT_ROOT / source).resolve()
    return mounts


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def test_matches_the_compose_specification():
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_unknown_key(tmp_path):
    broken = compose()
    broken["services"]["ml_app"]["stop_grace_periodx"] = "40s"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_compose_schema(path)
    assert result.returncode == 1
    assert "stop_grace_periodx" in result.stdout


def test_references_resolve(services):
    declared_volumes = set(compose().get("volumes", {}))
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (PROJECT_ROOT / source).exists(), (name, source)
            else:
                assert source in declared_volumes, (name, source)


def test_app_is_built_here_and_reached_through_nginx(services):
    app, nginx = services["ml_app"], services["nginx"]
    assert app["build"] == "."
    port = env_of(dockerfile_stages()[-1])["PORT"]
    assert "ports" not in app  # never published past the proxy
    assert app["expose"] == [port]
    # Compose's default stop timeout (10 s) would cut the 30 s graceful drain short.
    assert int(app["stop_grace_period"].rstrip("s")) > 30
    assert app["environment"]["ML_APP_PROXY_HOPS"] == "1"
    env = nginx["environment"]
    assert env["NGINX_UPSTREAM"] == f"ml_app:{port}"
    assert f"{env['NGINX_LISTEN']}:{env['NGINX_LISTEN']}" in nginx["ports"]
    # the body limit nginx enforces is the app's own
    assert int(env["NGINX_MAX_BODY"]) == Settings().max_body_bytes
    template = bind_mounts(nginx)["/etc/ml_app-nginx"] / "nginx.conf.template"
    text = template.read_text()
    # every name the template uses is one envsubst is told to fill in, and given a value
    names = set(re.findall(r"\$\{(NGINX_\w+)\}", text)) - {"NGINX_TLS_LISTEN"}
    command = " ".join(nginx["command"])
    assert names <= set(env), names - set(env)
    assert all(f"$${name}" in command for name in names)


def test_prometheus_scrapes_the_app_with_the_rules_from_deploy(services):
    prometheus = services["prometheus"]
    config_dir = bind_mounts(prometheus)["/etc/prometheus"]
    assert config_dir == PROJECT_ROOT / "deploy" / "prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    app_port = services["ml_app"]["expose"][0]
    assert f"ml_app:{app_port}" in targets
    for rule_file in config.get("rule_files", []):
        assert (config_dir / rule_file).is_file(), rule_file


def test_grafana_is_provisioned_with_the_datasource_and_dashboard(services):
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]

    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/ml_app.yml").read_text())
    dashboard_dir = providers["providers"][0]["options"]["path"]
    assert mounts[dashboard_dir] == GRAFANA / "dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    dashboard = json.loads((GRAFANA / "dashboards" / Path(home).name).read_text())
    # Panels name the provisioned datasource by uid or name (or through a variable).
    for ref in _datasource_refs(dashboard):
        if isinstance(ref, dict) and ref.get("type") == "grafana":
            continue  # Grafana's built-in annotations source
        value = ref.get("uid") if isinstance(ref, dict) else ref
        if value is not None and not str(value).startswith("$"):
            assert value in {datasource["uid"], datasource["name"]}, ref


def _datasource_refs(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [ref for value in node.values() for ref in _datasource_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _datasource_refs(value)]
    return []


def test_the_payload_shipper_reads_the_apps_payload_volume_and_stops_after_it(services):
    app, shipper = services["ml_app"], services["payload-shipper"]
    assert shipper["image"] == app["image"]
    command = shipper["command"]
    assert command[:5] == ["python", "-m", "ml_app", "payloads", "ship"]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    folder = app["environment"]["ML_APP_PAYLOAD_LOG_DIR"]
    assert options["--dir"] == folder
    assert f"payloads:{folder}" in app["volumes"]
    assert f"payloads:{folder}" in shipper["volumes"]
    # compose stops a service before those it depends on: the app first, then the shipper
    assert "payload-shipper" in app["depends_on"]
    sink = options["--sink"]
    assert sink.startswith("redis://redis:6379/")
    assert "redis" in shipper["depends_on"]
