"""Readiness while draining, and the `drain` command a preStop hook runs."""

from __future__ import annotations

from click.testing import CliRunner

from ml_app import create_app
from ml_app.core.drain import DrainMarker
from ml_app.ops.cli import main


def test_readiness_answers_503_while_the_marker_exists(demo_store, tmp_path):
    marker = tmp_path / "draining"
    client = create_app({"store": demo_store, "drain_file": str(marker)}).test_client()
    assert client.get("/health/ready").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    marker.touch()
    ready = client.get("/health/ready")
    assert (ready.status_code, ready.get_json()["reasons"]) == (
        503,
        ["the server is shutting down (draining)"],
    )
    assert client.get("/v2/health/ready").get_json() == {
        "ready": False,
        "reasons": ["the server is shutting down (draining)"],
    }
    # still serving: draining is for balancers to notice, not a refusal
    predicted = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
    assert predicted.get_json()["prediction"] == "setosa"
    marker.unlink()
    assert client.get("/health/ready").status_code == 200


def test_drain_command_makes_the_marker(tmp_path, monkeypatch):
    marker = tmp_path / "run" / "draining"
    monkeypatch.setenv("ML_APP_DRAIN_FILE", str(marker))
    result = CliRunner().invoke(main, ["drain", "--wait", "0"])
    assert result.exit_code == 0, result.output
    assert marker.exists()
    assert DrainMarker(marker).active()
    assert 0 <= DrainMarker(marker).age() < 5


def test_drain_command_needs_a_marker_path(monkeypatch):
    monkeypatch.delenv("ML_APP_DRAIN_FILE", raising=False)
    result = CliRunner().invoke(main, ["drain"])
    assert result.exit_code == 1
    assert "ML_APP_DRAIN_FILE is not set" in result.output
