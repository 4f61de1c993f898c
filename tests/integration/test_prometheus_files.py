"""deploy/prometheus and our exposition, checked by promtool (Debian package `prometheus`)."""

from __future__ import annotations

from flask.testing import FlaskClient

from ml_app.core.config import PROJECT_ROOT
from tests.support.prometheus import promtool
from tests.support.reference import IRIS_SETOSA

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"


def test_scrape_config_is_valid_and_finds_its_rules():
    checked = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_alert_rules_are_valid():
    checked = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_alert_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_single_process_exposition_passes_promtool(client: FlaskClient):
    assert client.post("/predict", json={"features": IRIS_SETOSA}).status_code == 200
    assert client.get("/nope").status_code == 404
    checked = promtool("check", "metrics", stdin=client.get("/metrics").get_data(as_text=True))
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
