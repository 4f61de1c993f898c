"""The real Prometheus, with the drift rules loaded, fires the drift alert for shifted traffic.

The shipped rules look at an hour and wait 30 minutes; here the same expressions run with a 15 s
window and a 5 s wait (only the durations are rewritten), scraping and evaluating every second.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn import datasets

from ml_app.core.store import ModelStore
from tests.support.prometheus_server import PROMETHEUS_DIR, PrometheusServer, config_for, wait_until
from tests.support.reference import IRIS_FEATURES
from tests.support.server import GunicornServer

SHIFTED_FEATURE = "petal_length"
WINDOW, WAIT = "15s", "5s"


def short_rules(folder: Path) -> Path:
    """drift.yml with its window and wait shortened, every expression otherwise unchanged."""
    text = (PROMETHEUS_DIR / "drift.yml").read_text()
    shortened = re.sub(r"for: 30m", f"for: {WAIT}", text.replace("[1h]", f"[{WINDOW}]"))
    assert shortened.count(f"[{WINDOW}]") == 1 and shortened.count(f"for: {WAIT}") == 2
    path = folder / "drift.yml"
    path.write_text(shortened)
    return path


@pytest.fixture
def stack(demo_store: Path, tmp_path: Path) -> Iterator[tuple[GunicornServer, PrometheusServer]]:
    store = Path(shutil.copytree(demo_store, tmp_path / "store"))
    shutil.copytree(store / "iris", store / "iris_shifted")
    env = {"ML_APP_DRIFT_FLUSH_SECONDS": "0.5"}
    with GunicornServer(store, tmp_path / "gunicorn.log", workers=2, **env) as app:
        config = config_for(f"127.0.0.1:{app.port}")
        config["rule_files"] = [str(short_rules(tmp_path))]
        with PrometheusServer(config, tmp_path) as prometheus:
            wait_until(lambda: prometheus.scalar('up{job="ml_app"}'), 30, "the target to be up")
            yield app, prometheus


def keep_sending(url: str, batches: dict[str, np.ndarray], stop: threading.Event) -> None:
    """Each model's rows in batches of 50, twice a second, until told to stop."""
    while not stop.wait(0.5):
        for model, rows in batches.items():
            for start in range(0, len(rows), 50):
                body = {"instances": rows[start : start + 50].tolist()}
                answer = requests.post(f"{url}/models/{model}/predict/batch", json=body, timeout=10)
                assert answer.status_code == 200, answer.text


def drift_alerts(prometheus: PrometheusServer) -> dict[tuple[str, str], str]:
    """(model, feature) -> state of every drift alert, pending or firing (feature _prediction:
    MlAppPredictionDrift)."""
    return {
        (alert["labels"]["model"], alert["labels"]["feature"]): alert["state"]
        for alert in prometheus.api("alerts")["alerts"]
        if alert["labels"]["alertname"] in {"MlAppFeatureDrift", "MlAppPredictionDrift"}
    }


def test_shifted_traffic_fires_the_drift_alert_and_reference_traffic_does_not(stack, demo_store):
    app, prometheus = stack
    rows = datasets.load_iris().data
    shifted = rows.copy()
    std = ModelStore(demo_store).read_metadata("iris", "1")["baseline"][SHIFTED_FEATURE]["std"]
    shifted[:, IRIS_FEATURES.index(SHIFTED_FEATURE)] += 2 * std
    stop = threading.Event()
    sender = threading.Thread(
        target=keep_sending, args=(app.url, {"iris": rows, "iris_shifted": shifted}, stop)
    )
    sender.start()
    try:
        firing = wait_until(
            lambda: drift_alerts(prometheus).get(("iris_shifted", SHIFTED_FEATURE)) == "firing",
            60,
            "MlAppFeatureDrift to fire for iris_shifted petal_length",
        )
        assert firing
        psi = {
            (s["metric"]["model"], s["metric"]["feature"]): float(s["value"][1])
            for s in prometheus.query('ml_app:drift_psi:1h{model=~"iris|iris_shifted"}')
        }
        alerts = drift_alerts(prometheus)
    finally:
        stop.set()
        sender.join()
    assert psi[("iris_shifted", SHIFTED_FEATURE)] > 0.25
    assert all(psi[("iris", feature)] < 0.1 for feature in [*IRIS_FEATURES, "_prediction"]), psi
    # Of the features, only the shifted one of the shifted model; its predictions move too (a
    # longer petal reads as another species), so they may alert as well. The model that got
    # reference traffic has no drift alert at all.
    features = {key for key in alerts if key[1] != "_prediction"}
    assert features == {("iris_shifted", SHIFTED_FEATURE)}, (alerts, psi)
    assert not any(model == "iris" for model, _ in alerts), (alerts, psi)
    assert all(psi[("iris_shifted", f)] < 0.1 for f in IRIS_FEATURES if f != SHIFTED_FEATURE)
