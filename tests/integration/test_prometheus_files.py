"""deploy/prometheus and our exposition, checked by promtool (Debian package `prometheus`)."""

from __future__ import annotations

import re

import yaml
from flask.testing import FlaskClient

from ml_app.core.config import PROJECT_ROOT
from ml_app.core.drift_bins import psi
from tests.support.prometheus import promtool
from tests.support.reference import IRIS_SETOSA

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"


def test_scrape_config_is_valid_and_finds_its_rules():
    checked = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rule files found" in checked.stdout


def test_alert_rules_are_valid():
    checked = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_alert_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_drift_rules_are_valid():
    checked = promtool("check", "rules", str(PROMETHEUS_DIR / "drift.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_drift_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", str(PROMETHEUS_DIR / "drift_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_drift_rule_tests_expect_the_psi_the_app_defines():
    """The PSI values drift_test.yml expects from the rules are drift_bins.psi's own."""
    tests = yaml.safe_load((PROMETHEUS_DIR / "drift_test.yml").read_text())["tests"]
    reference = [0.0, 0.5, 0.5, 0.0]  # below, 0, 1, above: as in every case of the file
    expected = {
        "mixed": psi(reference, [0, 3, 1, 0]),
        "shifted": psi(reference, [0, 0, 0, 1]),
    }
    checked = [
        check["expr"]
        for case in tests
        for check in case.get("promql_expr_test", [])
        if check["expr"].startswith('abs(ml_app:drift_psi:1h{feature="x"}')
    ]
    found = [float(re.search(r" - ([0-9.]+)\) < bool 1e-9$", expr)[1]) for expr in checked]
    assert found == [0, expected["mixed"], expected["shifted"]]


def test_single_process_exposition_passes_promtool(client: FlaskClient):
    assert client.post("/predict", json={"features": IRIS_SETOSA}).status_code == 200
    assert client.get("/nope").status_code == 404
    checked = promtool("check", "metrics", stdin=client.get("/metrics").get_data(as_text=True))
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
