"""compose.yaml, checked by its JSON schema, by docker-compose and by nginx -t.

``docker-compose config`` parses, interpolates and normalizes the file the
way ``docker compose up`` does, without a Docker engine, so the tests read
its rendered model. nginx -t then loads the config files at the paths where
compose.yaml mounts them in the nginx container.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.settings import load_settings
from tests.deploy.files import (
    COMPOSE_FILE,
    DEFAULT_IMAGE,
    ENV_EXAMPLE,
    REPO_ROOT,
    check_schema,
    env_example,
    render_compose,
    rendered_compose,
    run_tool,
)
from tests.sites.nginx import NGINX_BINARY
from tests.test_nginx_config import (
    CONTAINER_CACHE,
    CONTAINER_CACHE_PATHS,
    CONTAINER_LISTEN,
    CONTAINER_PID,
    CONTAINER_USER,
    RESOLVE_SUPPORT,
    SYSTEM_MIME_TYPES,
    check_config,
    render_upstream,
    replace_exactly,
    worker_user_line,
)
from tests.web.processes import SERVICE_HOST, free_port

PASSWORD = "0123456789abcdef"
REPLICAS = 3
APP_PORT = "8080"
NGINX_CONFIG_ROOT = "/etc/nginx/"


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return rendered_compose(MONGO_PASSWORD=PASSWORD)


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = model["services"]
    return rendered


def test_compose_matches_schema() -> None:
    result = check_schema(COMPOSE_FILE, "vendor.compose-spec")

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services(services: dict[str, Any]) -> None:
    assert sorted(services) == ["app", "mongo", "nginx"]


def test_app_runs_three_replicas(services: dict[str, Any]) -> None:
    app = services["app"]

    assert app["deploy"]["replicas"] == REPLICAS
    # `--scale app=N` needs replicas that differ only by number: no fixed
    # container name and no host port.
    assert "container_name" not in app
    assert "ports" not in app
    assert app["expose"] == [APP_PORT]


def test_app_waits_for_healthy_mongo(services: dict[str, Any]) -> None:
    mongo = services["mongo"]

    assert services["app"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    healthcheck = mongo["healthcheck"]
    assert healthcheck["test"][:2] == ["CMD", "mongosh"]
    assert "ping" in healthcheck["test"][-1]
    assert healthcheck["retries"] >= 3


def test_only_nginx_publishes_a_port(services: dict[str, Any]) -> None:
    publishing = {name for name, service in services.items() if "ports" in service}

    assert publishing == {"nginx"}
    (port,) = services["nginx"]["ports"]
    assert port["target"] == 80
    assert port["published"] == "80"


def test_app_image_name_and_build(
    services: dict[str, Any], model: dict[str, Any]
) -> None:
    app = services["app"]

    assert app["image"] == f"{DEFAULT_IMAGE}:latest"
    assert Path(app["build"]["context"]) == REPO_ROOT
    assert app["build"]["dockerfile"] == "Dockerfile"
    tagged = rendered_compose(
        MONGO_PASSWORD=PASSWORD, CRAWLER_IMAGE="someone/crawler", CRAWLER_TAG="abc123"
    )
    assert tagged["services"]["app"]["image"] == "someone/crawler:abc123"


def test_app_store_is_mongo(services: dict[str, Any]) -> None:
    environment = services["app"]["environment"]

    url = environment["CRAWLER_STORE_URL"]
    assert url == (
        f"mongodb://crawler:{PASSWORD}@mongo:27017/crawler"
        "?authSource=admin&serverSelectionTimeoutMS=5000"
    )
    mongo_env = services["mongo"]["environment"]
    assert mongo_env["MONGO_INITDB_ROOT_USERNAME"] == "crawler"
    assert mongo_env["MONGO_INITDB_ROOT_PASSWORD"] == PASSWORD


def test_app_settings_load(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"MONGO_PASSWORD={PASSWORD}\nCRAWLER_WORKER_JOBS=4\nCRAWLER_LOG_LEVEL=debug\n"
    )

    result = render_compose(env_file=env_file)

    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)["services"]["app"]["environment"]
    # null in the rendered model means "left unset in the container".
    set_values = {k: v for k, v in environment.items() if v is not None}
    assert set_values["CRAWLER_WORKER_JOBS"] == "4"
    assert environment["CRAWLER_LEASE_S"] is None
    settings = load_settings(set_values)
    assert settings.worker_jobs == 4
    assert settings.log_level == "DEBUG"
    assert settings.store_url.startswith("mongodb://crawler:")


def test_app_passes_every_setting() -> None:
    settings_doc = (REPO_ROOT / "crawler" / "settings.py").read_text("utf-8")
    documented = set(re.findall(r"^(CRAWLER_[A-Z_]+)\s", settings_doc, re.MULTILINE))
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")

    # CRAWLER_HOST and CRAWLER_PORT apply to `crawler serve`, not gunicorn.
    expected = documented - {"CRAWLER_HOST", "CRAWLER_PORT"}
    assert "CRAWLER_STORE_URL" in expected
    for name in sorted(expected):
        assert f"      {name}:" in compose_text, f"compose.yaml does not pass {name}"


def test_stop_grace_exceeds_graceful_timeout(services: dict[str, Any]) -> None:
    grace = services["app"]["stop_grace_period"]
    gunicorn_conf = (REPO_ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")

    match = re.search(r'"GUNICORN_GRACEFUL_TIMEOUT", "(\d+)"', gunicorn_conf)
    assert match is not None
    assert grace.endswith("s")
    assert int(grace[:-1]) > int(match[1]) > 10


def test_mongo_pinned_by_major(services: dict[str, Any], model: dict[str, Any]) -> None:
    mongo = services["mongo"]

    assert re.fullmatch(r"mongo:\d+", mongo["image"]), mongo["image"]
    (volume,) = mongo["volumes"]
    assert volume["type"] == "volume"
    assert volume["target"] == "/data/db"
    assert volume["source"] in model["volumes"]


def test_nginx_image_supports_resolve(services: dict[str, Any]) -> None:
    image = services["nginx"]["image"]

    match = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?(?:-alpine)?", image)
    assert match, f"pin nginx by version, got {image}"
    version = tuple(int(part or 0) for part in match.groups())
    assert version >= RESOLVE_SUPPORT, f"{image} has no upstream `server ... resolve`"


def test_nginx_mounts_config_read_only(services: dict[str, Any]) -> None:
    mounts = services["nginx"]["volumes"]

    config_files = sorted(path.name for path in (REPO_ROOT / "nginx").glob("*.conf"))
    assert sorted(Path(m["source"]).name for m in mounts) == config_files
    for mount in mounts:
        assert mount["type"] == "bind"
        assert mount["read_only"] is True, f"{mount['source']} is writable"
        assert Path(mount["source"]).parent == REPO_ROOT / "nginx"
        assert mount["target"] == NGINX_CONFIG_ROOT + Path(mount["source"]).name


def test_upstream_names_app_service(services: dict[str, Any]) -> None:
    upstream = (REPO_ROOT / "nginx" / "upstream.conf").read_text(encoding="utf-8")

    servers = re.findall(r"^\s*server (\S+):(\d+) resolve", upstream, re.MULTILINE)
    assert servers == [("app", APP_PORT)]
    assert "app" in services


def test_every_container_rotates_logs(services: dict[str, Any]) -> None:
    for name, service in services.items():
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file", name
        assert options["max-size"] and options["max-file"], name
        assert service["restart"] == "unless-stopped", name


# -- required variables and .env ----------------------------------------------------


def test_missing_password_is_clear_error() -> None:
    result = render_compose()

    assert result.returncode != 0
    assert "required variable MONGO_PASSWORD is missing a value" in result.stderr
    assert "set MONGO_PASSWORD in .env (see .env.example)" in result.stderr


def test_empty_password_is_rejected() -> None:
    result = render_compose({"MONGO_PASSWORD": ""})

    assert result.returncode != 0
    assert "MONGO_PASSWORD" in result.stderr


def test_env_example_lists_every_variable() -> None:
    interpolated = set(
        re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text(encoding="utf-8"))
    )
    example = env_example()

    assert interpolated - set(example) == set()
    assert example["MONGO_PASSWORD"] == ""
    assert example["CRAWLER_IMAGE"] == DEFAULT_IMAGE


def test_env_example_renders(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    env_file.write_text(
        text.replace("MONGO_PASSWORD=\n", f"MONGO_PASSWORD={PASSWORD}\n")
    )

    result = render_compose(env_file=env_file)

    assert result.returncode == 0, result.stderr


def test_env_file_never_committed_or_built() -> None:
    git = shutil.which("git")
    assert git is not None
    ignored = run_tool([git, "check-ignore", ".env", ".env.production"])
    example_check = run_tool([git, "check-ignore", ".env.example"])

    assert ignored.stdout.split() == [".env", ".env.production"]
    assert example_check.returncode == 1, ".env.example must stay committed"
    tracked = run_tool([git, "ls-files", ".env"])
    assert tracked.stdout == ""


# -- nginx -t on the files as the container loads them -------------------------------


def rewrite(path: Path, change: Callable[[str], str]) -> None:
    """Apply ``change`` to the file's text; leave a missing file missing."""
    if path.exists():
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


def render_main(text: str, prefix: Path) -> str:
    """Point nginx.conf's user, pid file and temporary folders into ``prefix``."""
    text = replace_exactly(
        text, CONTAINER_USER, worker_user_line(), count=1, source="nginx.conf"
    )
    text = replace_exactly(
        text, CONTAINER_PID, f"pid {prefix}/nginx.pid;", count=1, source="nginx.conf"
    )
    return replace_exactly(
        text,
        CONTAINER_CACHE,
        f"{prefix}/cache/",
        count=CONTAINER_CACHE_PATHS,
        source="nginx.conf",
    )


def render_container_layout(prefix: Path, mounts: list[dict[str, Any]]) -> Path:
    """Lay out nginx's files under ``prefix`` as compose.yaml mounts them.

    Each mount's source is copied to ``prefix`` + its target below
    /etc/nginx/, so a file that compose.yaml does not mount is missing here
    too. What differs from the container, and why:

    * Debian's nginx (1.22) lacks the upstream `resolve` parameter, so the
      `server app:8080 resolve` line becomes a loopback server with the same
      other parameters, as tests/test_nginx_config.py does;
    * `user nginx` becomes the test's own user, because Debian has no
      `nginx` user;
    * the pid file and the /var/cache/nginx temporary folders move into
      ``prefix``, and nginx listens on a free loopback port instead of 80;
    * mime.types comes from Debian's nginx-common instead of the image.
    """
    etc = prefix / "etc" / "nginx"
    etc.mkdir(parents=True)
    (prefix / "cache").mkdir()
    for mount in mounts:
        target = Path(mount["target"])
        assert str(target).startswith(NGINX_CONFIG_ROOT), target
        destination = etc / target.relative_to(NGINX_CONFIG_ROOT)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mount["source"], destination)
    shutil.copyfile(SYSTEM_MIME_TYPES, etc / "mime.types")

    rewrite(etc / "nginx.conf", lambda text: render_main(text, prefix))
    rewrite(
        etc / "crawler.conf",
        lambda text: replace_exactly(
            text,
            CONTAINER_LISTEN,
            f"listen {SERVICE_HOST}:{free_port()} default_server;",
            count=1,
            source="crawler.conf",
        ),
    )
    rewrite(etc / "upstream.conf", lambda text: render_upstream(text, [free_port()]))
    return etc / "nginx.conf"


def test_nginx_t_on_mounted_layout(tmp_path: Path, services: dict[str, Any]) -> None:
    assert NGINX_BINARY.exists(), f"{NGINX_BINARY} not found: install nginx-light"
    config = render_container_layout(tmp_path, services["nginx"]["volumes"])

    result = check_config(config)

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_fails_without_a_mount(
    tmp_path: Path, services: dict[str, Any]
) -> None:
    mounts = [
        mount
        for mount in services["nginx"]["volumes"]
        if not mount["target"].endswith("/upstream.conf")
    ]
    config = render_container_layout(tmp_path, mounts)

    result = check_config(config)

    assert result.returncode == 1, result.stderr
    assert "upstream.conf" in result.stderr
    assert "No such file or directory" in result.stderr
