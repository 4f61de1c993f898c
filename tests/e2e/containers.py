"""Build and run the real ml_app image through the docker CLI (any Docker-API engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest

from ml_app.core import apikeys
from tests.support.server import PROJECT_ROOT, free_port, wait_for_http

# What deploy/k8s asks of the pod: read-only root with a fresh writable /tmp (an emptyDir there;
# the multiprocess directory lives under it), no capabilities, no privilege escalation.
LIKE_KUBERNETES = (
    "--read-only",
    "--tmpfs=/tmp",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)
# Where the image's ML_APP_API_KEYS_FILE lives: the folder a keys secret is mounted at.
KEYS_FOLDER = "/run/secrets/ml_app-keys"
ENGINE_HINT = (
    "DOCKER_HOST is not set, so there is no container engine to build and run the image. "
    "Point it at a Docker-API engine first: a Docker daemon, or `podman system service`."
)


def require_engine() -> None:
    """Fail (not skip) with instructions when no engine is configured."""
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail(ENGINE_HINT, pytrace=False)
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is not on PATH", pytrace=False)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one docker CLI command and capture its output as text."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def image_ids() -> set[str]:
    """Every image the engine holds, intermediate build layers included."""
    return set(docker("image", "ls", "--all", "--quiet", "--no-trunc").stdout.split())


def remove_images_since(before: set[str]) -> None:
    """Remove the images added since `before`: a build's stages and cached layers."""
    remaining = image_ids() - before
    while remaining:
        removed = {
            image for image in remaining if docker("rmi", image, check=False).returncode == 0
        }
        if not removed:  # in use by someone else's container, or already gone
            return
        remaining -= removed


def engine_is_podman() -> bool:
    """Podman stores HEALTHCHECK but only runs it on demand (`podman healthcheck run`)."""
    return "podman" in docker("version", "--format", "{{json .Server}}").stdout.lower()


def make(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a target of the project's Makefile, the way a user would."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


class Container:
    """One detached container of `image` on the host network, started with `make run-container`.

    The engine offers host networking only, so the app gets a free port through PORT and binds
    127.0.0.1 through HOST; its API keys file holds one key, `api_key`; `remove()` always deletes
    the container.
    """

    def __init__(self, image: str, log_dir: Path, flags: tuple[str, ...] = (), **env: str) -> None:
        self.image = image
        self.name = f"ml_app-e2e-{uuid.uuid4().hex[:10]}"
        # API keys are on in the image: a keys file with one key, mounted as its secret would be.
        keys = log_dir / f"{self.name}-keys"
        keys.mkdir()
        keys.chmod(0o755)  # the image's user is uid 10001
        self.api_key = apikeys.add_key(keys / "keys.json", "e2e")
        self.auth = {"X-API-Key": self.api_key}  # headers for routes that need a key
        self.flags = (*flags, f"--volume={keys}:{KEYS_FOLDER}:ro")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{self.name}.log"
        self.env = {"PORT": str(self.port), "HOST": "127.0.0.1", **env}

    def start(self, timeout: float = 90) -> Container:
        """Start detached and wait until /health/ready answers 200."""
        flags = ["--detach", "--name", self.name, "--network", "host", *self.flags]
        flags += [f"--env={key}={value}" for key, value in self.env.items()]
        repository, tag = self.image.rsplit(":", 1)
        make(
            "run-container",
            f"IMAGE={repository}",
            f"TAG={tag}",
            f"DOCKER_RUN_FLAGS={' '.join(flags)}",
        )
        try:
            wait_for_http(self.url + "/health/ready", self.running, timeout)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from exc
        return self

    def running(self) -> bool:
        """True while the container's main process is up."""
        return self.state()["Running"] is True

    def state(self) -> dict:
        """The container's State block from `docker inspect`."""
        return orjson.loads(docker("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr so far."""
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        """Run a command inside the container (as the image's user)."""
        return docker("exec", self.name, *command, check=False)

    def remove(self) -> None:
        """Keep the logs for a failing test's report, then delete the container."""
        self.log_path.write_text(self.logs())
        docker("rm", "--force", self.name, check=False)
