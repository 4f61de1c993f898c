"""The real image, built once per session for every test module that runs it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.containers import docker, image_ids, make, remove_images_since, require_engine


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """The image built from this checkout with `make build`; it and its build layers are removed
    afterwards."""
    require_engine()
    before = image_ids()
    tag = f"e2e-{uuid.uuid4().hex[:10]}"
    try:
        build = make("build", "IMAGE=ml_app", f"TAG={tag}")
        print(build.stdout.splitlines()[-1])  # "ml_app:<tag> is N bytes"
        yield f"ml_app:{tag}"
    finally:
        docker("rmi", "--force", f"ml_app:{tag}", check=False)
        remove_images_since(before)
