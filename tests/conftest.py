"""Fixtures that start the loopback test sites the crawler's tests crawl.

Every site listens on a 127.x.y.z address chosen here, because the tests must not
reach any other machine. On Linux the whole 127.0.0.0/8 range routes to loopback,
so the hostile site on 127.0.0.2 and the loopback site on 127.0.0.1 are different
hosts to the crawler but need no network setup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.sites.docs_walk import SiteWalk, walk_site
from tests.sites.hostile import (
    ServedApp,
    create_hostile_app,
    serve_app,
    start_gzip_bomb_build,
)
from tests.sites.nginx import NginxSite, NginxUnavailableError, require_nginx, run_nginx

HOSTILE_HOST = "127.0.0.2"
LOOPBACK_HOST = "127.0.0.1"
PYTHON_DOCS_ROOT = Path("/usr/share/doc/python3.11/html")
PYTHON_DOCS_PACKAGE = "python3.11-doc"

StartHostileSite = Callable[..., ServedApp]


@pytest.fixture(scope="session")
def _gzip_bomb_build() -> None:
    """Start building the ``/gzip-bomb`` body, which takes seconds, once per session.

    Otherwise the first request for it waits for the build, and a crawler test with a
    short timeout would see a timeout instead of an oversized body.
    """
    start_gzip_bomb_build()


@pytest.fixture
def start_hostile_site(_gzip_bomb_build: None) -> Iterator[StartHostileSite]:
    """Yield ``start(robots=None, host="127.0.0.2")``, which serves a new hostile site.

    Each call builds a fresh app with :func:`~tests.sites.hostile.create_hostile_app`,
    so its first-time-only routes start over. Every site started stops when the test
    ends.
    """
    with ExitStack() as stack:

        def start(
            robots: str | int | None = None, host: str = HOSTILE_HOST
        ) -> ServedApp:
            return stack.enter_context(serve_app(create_hostile_app(robots), host))

        yield start


@pytest.fixture
def hostile_site(
    request: pytest.FixtureRequest, start_hostile_site: StartHostileSite
) -> ServedApp:
    """Serve a fresh hostile site on 127.0.0.2 and a free port for one test.

    Without a parameter it has no robots.txt. To serve one, parametrize the fixture
    indirectly with the robots.txt text or a status code, for example
    ``@pytest.mark.parametrize("hostile_site", [HOSTILE_ROBOTS], indirect=True)``.
    """
    robots: str | int | None = getattr(request, "param", None)
    return start_hostile_site(robots=robots)


@pytest.fixture
def loopback_site(start_hostile_site: StartHostileSite) -> ServedApp:
    """Serve another hostile site on 127.0.0.1, the target of ``/redirect/loopback``."""
    return start_hostile_site(host=LOOPBACK_HOST)


@pytest.fixture(scope="session")
def docs_walk(python_docs_site: NginxSite) -> SiteWalk:
    """Walk the served docs on disk once per session: it takes 10 to 20 s."""
    return walk_site(python_docs_site.root)


@pytest.fixture(scope="session")
def python_docs_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxSite]:
    """Serve Debian's Python 3.11 HTML docs with nginx on 127.0.0.1 for the session.

    Fails, rather than skips, when nginx or the docs are missing, because a skipped
    end-to-end test would let CI pass without ever crawling a real site.
    """
    try:
        require_nginx(PYTHON_DOCS_ROOT, root_package=PYTHON_DOCS_PACKAGE)
    except NginxUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)

    with run_nginx(
        PYTHON_DOCS_ROOT, tmp_path_factory.mktemp("nginx-python-docs")
    ) as site:
        yield site
