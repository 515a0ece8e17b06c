"""An independent walk of a static site's links on disk, the expected result of
crawls of the Python docs.

It does not use the crawler's modules: the standard library's HTML parser reads
each file, and ``urllib.parse`` resolves its links.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

# Characters that the URL standard strips from both ends of an href.
_HREF_STRIP = "".join(chr(code) for code in range(0x21))


class _LinkParser(HTMLParser):
    """Collects the ``href`` of every ``<a>`` and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base_href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = next((value for name, value in attrs if name == "href"), None)
        if href is None:
            return
        if tag == "a":
            self.hrefs.append(href)
        elif tag == "base" and self.base_href is None:
            self.base_href = href


@dataclass
class SiteWalk:
    """The pages reachable by ``<a href>`` links from a start page, found on disk."""

    pages: set[str] = field(default_factory=set)
    """Percent-decoded site paths of reachable .html files, such as ``/index.html``."""
    broken_links: set[str] = field(default_factory=set)
    """Decoded .html paths that are linked but not on disk (nginx returns 404)."""
    linked_files: set[str] = field(default_factory=set)
    """Decoded paths of linked files under ``root`` that are not .html pages."""


def walk_site(root: Path, start: str = "/index.html") -> SiteWalk:
    """Follow links from ``start`` through the .html files under ``root``.

    Fragments and queries are dropped and paths are percent-decoded. Links to
    other schemes or hosts and to paths outside ``root`` are ignored. Links to
    existing files that are not .html are recorded but not followed. A page is
    read as UTF-8, which the Sphinx-built docs declare.
    """
    root = root.resolve()
    walk = SiteWalk(pages={start})
    queue = deque([start])

    while queue:
        page_path = queue.popleft()
        parser = _LinkParser()
        parser.feed((root / page_path.lstrip("/")).read_text(encoding="utf-8"))
        parser.close()

        # A file: URL makes urljoin resolve "../" above the root the way browsers
        # do for http: URLs, by staying at the root.
        page_url = "file://" + quote(page_path)
        base_url = page_url
        if parser.base_href is not None:
            base_url = urljoin(page_url, parser.base_href.strip(_HREF_STRIP))

        for href in parser.hrefs:
            target = _resolve_link(root, base_url, href.strip(_HREF_STRIP))
            if target is None:
                continue
            exists = (root / target.lstrip("/")).is_file()
            if not target.endswith(".html"):
                if exists:
                    walk.linked_files.add(target)
                continue
            if not exists:
                walk.broken_links.add(target)
                continue
            if target not in walk.pages:
                walk.pages.add(target)
                queue.append(target)

    return walk


def _resolve_link(root: Path, base_url: str, href: str) -> str | None:
    """Return the decoded site path of a link to a file under ``root``, or None."""
    if not href:
        return None

    # The files on disk cannot know nginx's host and port, so a link with a scheme
    # or a host names another site.
    link = urlsplit(href)
    if link.scheme or link.netloc:
        return None

    path = unquote(urlsplit(urljoin(base_url, href)).path)
    if not (root / path.lstrip("/")).resolve().is_relative_to(root):
        return None
    return path
