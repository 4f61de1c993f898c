"""The Grafana dashboard and the alert rules name only metrics the app exports."""

from __future__ import annotations

import re

import orjson
import yaml
from flask.testing import FlaskClient

from ml_app.core.config import PROJECT_ROOT
from tests.support.prometheus import Exposition
from tests.support.reference import IRIS_SETOSA

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "ml_app.json"
ALERTS = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"
DRIFT_RULES = PROJECT_ROOT / "deploy" / "prometheus" / "drift.yml"
_METRIC_NAME = re.compile(r"\bml_app_[a-z_]+")
_RECORDED_NAME = re.compile(r"\bml_app:[a-z_]+:?[a-z0-9_]*")


def dashboard_exprs() -> list[str]:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_panels_each_query_prometheus_through_the_datasource_variable():
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    topics = ("request rate", "error ratio", "latency", "predictions by class", "inference")
    for topic in (*topics, "psi per feature", "live vs reference"):
        assert topic in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_dashboard_and_alerts_use_only_exported_metric_names(client: FlaskClient):
    client.post("/predict", json={"features": IRIS_SETOSA})  # the latency histogram has a series
    exported = Exposition.parse(client.get("/metrics").get_data(as_text=True)).names()
    rules = ALERTS.read_text() + DRIFT_RULES.read_text()
    used = set(_METRIC_NAME.findall(" ".join(dashboard_exprs()) + rules))
    assert len(used) >= 8
    assert used <= exported, used - exported


def test_dashboard_reads_only_series_the_drift_rules_record():
    recorded = {
        rule.get("record")
        for group in yaml.safe_load(DRIFT_RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    used = set(_RECORDED_NAME.findall(" ".join(dashboard_exprs())))
    assert used == {"ml_app:drift_psi:1h", "ml_app:drift_share:1h", "ml_app:drift_reference_share"}
    assert used <= recorded
