"""The Grafana dashboard and the alert rules name only metrics the app exports."""

from __future__ import annotations

import re

import orjson
from flask.testing import FlaskClient

from ml_app.core.config import PROJECT_ROOT
from tests.support.prometheus import Exposition
from tests.support.reference import IRIS_SETOSA

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "ml_app.json"
ALERTS = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"
_METRIC_NAME = re.compile(r"\bml_app_[a-z_]+")


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
    for topic in ("request rate", "error ratio", "latency", "predictions by class", "inference"):
        assert topic in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_dashboard_and_alerts_use_only_exported_metric_names(client: FlaskClient):
    client.post("/predict", json={"features": IRIS_SETOSA})  # the latency histogram has a series
    exported = Exposition.parse(client.get("/metrics").get_data(as_text=True)).names()
    used = set(_METRIC_NAME.findall(" ".join(dashboard_exprs()) + ALERTS.read_text()))
    assert len(used) >= 8
    assert used <= exported, used - exported
