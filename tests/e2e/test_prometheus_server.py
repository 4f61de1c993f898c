"""A real Prometheus scrapes real Gunicorn (/metrics behind a token) and counts what was sent."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import requests

from ml_app.core.config import PROJECT_ROOT
from tests.support.prometheus_server import PrometheusServer, config_for, wait_until
from tests.support.reference import IRIS_SETOSA, IRIS_VIRGINICA
from tests.support.server import GunicornServer

TOKEN = "e2e-scrape-token"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "ml_app.json"
# (path, body) per request: 40 + 40 iris rows, 3 batches of 5 iris rows, 10 diabetes rows.
TRAFFIC = (
    [("/predict", {"features": IRIS_SETOSA})] * 40
    + [("/predict", {"features": IRIS_VIRGINICA})] * 40
    + [("/predict/batch", {"instances": [IRIS_SETOSA, IRIS_VIRGINICA] * 2 + [IRIS_SETOSA]})] * 3
    + [("/models/diabetes/predict", {"features": [0.01] * 10})] * 10
)
ROWS_SENT = 40 + 40 + 3 * 5 + 10


@pytest.fixture
def stack(demo_store: Path, tmp_path: Path) -> Iterator[tuple[GunicornServer, PrometheusServer]]:
    """A fresh server and a Prometheus that has scraped it: no test sees another's traffic."""
    log = tmp_path / "gunicorn.log"
    with GunicornServer(demo_store, log, workers=3, ML_APP_METRICS_TOKEN=TOKEN) as app:
        config = config_for(f"127.0.0.1:{app.port}", TOKEN)
        with PrometheusServer(config, tmp_path) as prometheus:
            wait_until(lambda: prometheus.scalar('up{job="ml_app"}'), 30, "the target to be up")
            yield app, prometheus


def send(app: GunicornServer, traffic: list[tuple[str, dict]]) -> list[int]:
    def post(item: tuple[str, dict]) -> int:
        path, body = item
        return requests.post(app.url + path, json=body, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(post, traffic))


def test_prometheus_counts_exactly_the_predictions_sent(stack):
    app, prometheus = stack
    assert requests.get(app.url + "/metrics", timeout=5).status_code == 401  # the token is on
    assert prometheus.scalar("sum(ml_app_predictions_total)") == 0  # series exist from start

    assert set(send(app, TRAFFIC)) == {200}
    total = wait_until(
        lambda: prometheus.scalar("sum(ml_app_predictions_total)") == ROWS_SENT or None,
        60,
        f"sum(ml_app_predictions_total) == {ROWS_SENT}",
    )
    assert total
    by_class = {
        (s["metric"]["model"], s["metric"].get("class", "")): float(s["value"][1])
        for s in prometheus.query("sum by (model, class) (ml_app_predictions_total)")
    }
    assert by_class == {
        ("iris", "setosa"): 40 + 3 * 3,
        ("iris", "versicolor"): 0,
        ("iris", "virginica"): 40 + 3 * 2,
        ("breast_cancer", "malignant"): 0,
        ("breast_cancer", "benign"): 0,
        ("diabetes", ""): 10,
    }
    requests_by_route = prometheus.query(
        'sum by (route) (ml_app_http_requests_total{route=~"/predict.*|/models/.*"})'
    )
    assert {s["metric"]["route"]: float(s["value"][1]) for s in requests_by_route} == {
        "/predict": 80,
        "/predict/batch": 3,
        "/models/<name>/predict": 10,
    }


def test_alert_rules_load_and_stay_quiet_while_models_are_ready(stack):
    _, prometheus = stack

    def evaluated() -> list[dict] | None:
        groups = {group["name"]: group for group in prometheus.api("rules")["groups"]}
        assert set(groups) == {"ml_app", "drift"}  # alerts.yml, drift.yml
        group = groups["ml_app"]
        healthy = all(rule["health"] == "ok" for rule in group["rules"])
        return group["rules"] if healthy and group["lastEvaluation"] > "2" else None

    rules = wait_until(evaluated, 30, "the alert rules to be evaluated")
    assert {rule["name"] for rule in rules} == {
        "MlAppHighErrorRatio",
        "MlAppHighLatencyP99",
        "MlAppNoReadyModel",
        "MlAppModelNotReady",
    }
    assert prometheus.scalar('max(ml_app_model_ready{job="ml_app"})') == 1
    active = {alert["labels"]["alertname"] for alert in prometheus.api("alerts")["alerts"]}
    assert not active & {"MlAppNoReadyModel", "MlAppModelNotReady"}


def test_every_dashboard_query_runs_on_the_real_server(stack):
    app, prometheus = stack
    assert set(send(app, TRAFFIC[:20])) == {200}
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "30s")
            expr = expr.replace("$model", ".*").replace("$feature", ".*")
            prometheus.query(expr)  # a query Prometheus refuses fails here
            if 'status=~"5..' in expr or 'status=~"4..' in expr:
                continue  # no errors were sent: an empty answer is the right one
            # rate() needs two scrapes after the traffic; wait for them (bounded).
            wait_until(lambda e=expr: prometheus.query(e) or None, 30, f"{panel['title']}: {expr}")
