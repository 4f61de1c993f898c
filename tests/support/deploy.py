"""Readers for the deployment files (Dockerfile, compose, Kubernetes) the deploy tests share."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# The kustomization fields kustomize_build renders; any other field fails the render.
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "labels", "images"}


def kustomize_build(directory: Path = K8S_DIR) -> list[dict[str, Any]]:
    """The manifests `kubectl kustomize <directory>` renders, for the kustomize features we use.

    Resources (local files), `labels` (added to each object's metadata only) and `images`
    (name, newName, newTag) are rendered as kustomize does; anything else is refused, so a new
    feature in the kustomization fails here instead of being silently left out.
    """
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZE_FIELDS
    assert not unknown, f"kustomize_build does not render {sorted(unknown)}: extend it"
    objects = []
    for resource in spec.get("resources", []):
        objects += [doc for doc in yaml.safe_load_all((directory / resource).read_text()) if doc]
    for entry in spec.get("labels", []):
        assert set(entry) == {"pairs"}, f"only plain label pairs are rendered, not {entry}"
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in spec.get("images", []):
        assert set(image) <= {"name", "newName", "newTag"}, f"unsupported image entry {image}"
        for container in _containers(objects):
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                name, tag = image.get("newName", name), image.get("newTag", tag)
                container["image"] = f"{name}:{tag}" if tag else name
    return objects


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere below `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers"):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _split_image(reference: str) -> tuple[str, str]:
    """(name, tag) of an image reference; a registry port's colon is not a tag."""
    assert "@" not in reference, f"digests are not rendered: {reference}"
    head, _, last = reference.rpartition("/")
    name, _, tag = last.partition(":")
    return (f"{head}/{name}" if head else name), tag


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
