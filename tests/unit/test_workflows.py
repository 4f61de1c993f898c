""".github/workflows: valid against GitHub's workflow schema (offline), pinned, least privilege."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ml_app.core.config import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.y*ml"))
CI = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
# owner/repo[/path]@<full commit SHA> # <the tag it was taken from>
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+(\.\d+)*$")


def load(path: Path) -> dict[Any, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); it is the trigger block either way.
    return yaml.safe_load(path.read_text())


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_ci_workflow_exists():
    assert CI in WORKFLOWS


def test_workflows_are_valid_against_the_github_workflow_schema():
    # The schema ships with check-jsonschema: no network needed.
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok -- validation done" in checked.stdout


def test_every_action_is_pinned_by_full_commit_sha_with_its_version():
    assert WORKFLOWS
    for path in WORKFLOWS:
        used = [
            line.split("uses:", 1)[1].strip()
            for line in path.read_text().splitlines()
            if re.match(r"^\s*(- )?uses:", line)
        ]
        assert used, f"{path.name}: no actions used"
        assert len(used) == sum(1 for step in steps(load(path)) if "uses" in step)
        assert [line for line in used if not PINNED.match(line)] == [], path.name


def test_least_privilege_bounded_jobs_and_superseded_runs_cancelled():
    assert WORKFLOWS
    for path in WORKFLOWS:
        workflow = load(path)
        assert workflow["permissions"] == {"contents": "read"}, path.name
        for name, job in workflow["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 60, (path.name, name)
            if name == "push":
                assert job["permissions"] == {"contents": "read", "packages": "write"}
            else:
                assert "write" not in str(job.get("permissions", {})), (path.name, name)
        concurrency = workflow["concurrency"]
        assert "github.ref" in concurrency["group"]
        assert concurrency["cancel-in-progress"] not in (False, None)


def test_only_the_push_job_can_write_packages_and_it_runs_only_on_main_and_tags():
    workflow = load(CI)
    writers = [
        name for name, job in workflow["jobs"].items() if "packages" in job.get("permissions", {})
    ]
    assert writers == ["push"]
    push = workflow["jobs"]["push"]
    assert push["needs"] == ["test", "image"]
    assert "refs/heads/main" in push["if"] and "refs/tags/" in push["if"]
    assert "github.event_name == 'push'" in push["if"]


def test_the_test_job_runs_the_readme_commands_in_order():
    runs = [step["run"] for step in load(CI)["jobs"]["test"]["steps"] if "run" in step]
    assert runs[-2:] == ["make lint test", "make e2e"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make test" in readme and "make e2e" in readme and "make lint" in readme
