"""Scrape /metrics, read it with prometheus_client's own parser, sum samples; run promtool."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL_MISSING = "promtool not found: `make test` installs it (Debian package `prometheus`)"


@dataclass(frozen=True)
class Exposition:
    """The samples of one scrape, as (name, labels) -> value."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        """Parse the text format; raises on anything Prometheus would refuse."""
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples named `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str, **labels: str) -> list[dict[str, str]]:
        """The label sets of the samples named `name` that include `labels`."""
        wanted = set(labels.items())
        return [dict(ls) for (n, ls) in self.samples if n == name and wanted <= ls]

    def names(self) -> set[str]:
        """Every sample name present."""
        return {name for name, _ in self.samples}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian package `prometheus`) and return what it said."""
    binary = shutil.which("promtool")
    assert binary, PROMTOOL_MISSING
    return subprocess.run(
        [binary, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def scrape_app(client: FlaskClient) -> Exposition:
    """The app's /metrics through Flask's test client, parsed."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return Exposition.parse(response.get_data(as_text=True))


def scrape_text(url: str) -> str:
    """A running server's /metrics text (`url` is the server's base URL)."""
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def scrape(url: str) -> Exposition:
    """A running server's /metrics, parsed."""
    return Exposition.parse(scrape_text(url))


def growth(before: Exposition, after: Exposition, name: str, **labels: str) -> float:
    """How much the samples named `name` with `labels` grew between two scrapes."""
    return after.total(name, **labels) - before.total(name, **labels)
