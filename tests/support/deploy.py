"""Readers for the deployment files (Dockerfile, compose, Kubernetes) the deploy tests share."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.server import PROJECT_ROOT

K8S_DIR = PROJECT_ROOT / "deploy" / "k8s"

Instruction = tuple[str, str]


def dockerfile_stages(path: Path = PROJECT_ROOT / "Dockerfile") -> list[list[Instruction]]:
    """The instructions of each build stage, continuation lines joined, comments dropped.

    Global ARGs before the first FROM form stage 0's preamble and are returned as their own list.
    """
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[Instruction]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), " ".join(args.split())))
    return stages


def instruction_args(stage: list[Instruction], keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction in a stage, in order."""
    return [args for name, args in stage if name == keyword]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The ENV key=value pairs a stage sets."""
    env: dict[str, str] = {}
    for args in instruction_args(stage, "ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def kustomization() -> dict[str, Any]:
    """deploy/k8s/kustomization.yaml, parsed."""
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def kustomize_build() -> list[dict[str, Any]]:
    """The manifests `kubectl kustomize deploy/k8s` renders (what `kubectl apply -k` sends)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl (which embeds kustomize) is needed to render deploy/k8s", pytrace=False
        )
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return list(yaml.safe_load_all(rendered.stdout))


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
