"""The Dockerfile and .dockerignore, read without an engine (tests/e2e builds and runs it)."""

from __future__ import annotations

import fnmatch
import json
import shlex

from tests.support.deploy import dockerfile_stages, env_of, instruction_args
from tests.support.server import PROJECT_ROOT

PREAMBLE, *STAGES = dockerfile_stages()
FINAL = STAGES[-1]


def test_every_stage_starts_from_the_python_we_test_on():
    assert instruction_args(PREAMBLE, "ARG") == ["PYTHON_IMAGE=python:3.11-slim-bookworm"]
    assert len(STAGES) >= 2  # wheels and training in a build stage, a lean final stage
    for stage in STAGES:
        assert instruction_args(stage, "FROM")[0].split()[0] == "${PYTHON_IMAGE}"


def test_final_stage_runs_gunicorn_as_a_numeric_non_root_user():
    user = instruction_args(FINAL, "USER")
    assert len(user) == 1
    uid, _, gid = user[0].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit()
    assert json.loads(instruction_args(FINAL, "CMD")[0]) == ["gunicorn", "-c", "gunicorn.conf.py"]


def test_final_stage_exposes_port_and_sets_up_multiprocess_metrics():
    env = env_of(FINAL)
    assert instruction_args(FINAL, "EXPOSE") == [env["PORT"]]
    multiproc = env["PROMETHEUS_MULTIPROC_DIR"]
    setup = " ".join(instruction_args(FINAL, "RUN"))
    uid = instruction_args(FINAL, "USER")[0].split(":")[0]
    # Created before Gunicorn starts and owned by the user that runs it.
    assert '"$PROMETHEUS_MULTIPROC_DIR"' in setup and f"--uid {uid}" in setup
    assert multiproc.startswith("/")


def test_healthcheck_is_python_against_a_script_the_image_holds():
    (healthcheck,) = instruction_args(FINAL, "HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[0] == "python"
    copied = {shlex.split(args)[-1] for args in instruction_args(FINAL, "COPY")}
    assert argv[1] in copied
    assert (PROJECT_ROOT / argv[1]).is_file()


def test_dockerignore_lets_through_everything_the_build_copies():
    rules = [
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for stage in STAGES
        for args in instruction_args(stage, "COPY")
        if not args.startswith("--from=")
        for source in shlex.split(args)[:-1]
    ]
    assert sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
        assert not _ignored(source, rules), f".dockerignore leaves {source} out of the context"
    assert _ignored(".venv", rules) and _ignored("tests/conftest.py", rules)
    assert _ignored("model/store", rules) and _ignored(".git", rules)


def _ignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes; a dir covers its files."""
    ignored = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored
