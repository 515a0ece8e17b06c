"""Generate the seeded static site that the crawler benchmark serves with nginx.

A benchmark needs the same input on every run and on every machine, so the site
is built from a seeded random generator and no other input: the same seed, page
count and Python version give byte-identical files. The pages mimic a
documentation or news site closely enough to exercise the costly parts of a
crawl: 20-40 KB of markup to parse, 30-60 links per page to resolve, normalize
and deduplicate.

The link mix is chosen to test URL handling as well as speed:

* relative links (``page0042.html``, ``../s07/page0712.html``) and
  absolute-path links (``/s07/page0712.html``) to the same pages,
* fragments (``page0042.html#sec-3``), which name no new page,
* the same "print view" query written in two parameter orders
  (``?view=print&lang=en`` and ``?lang=en&view=print``), which a crawler that
  sorts query parameters fetches once,
* links to hosts under the reserved ``.invalid`` top-level domain and
  ``mailto:`` links, which a crawler limited to the site's host must skip.

Every page is reachable from ``index.html`` within a few hops, because page
``i`` always links to pages ``2i+1`` and ``2i+2`` (a binary tree 13 levels deep
for 5,000 pages). ``manifest.json`` in the output folder lists the paths a
crawler should fetch, so a run can be checked against it.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, cast

DEFAULT_OUTPUT = Path("/tmp/bench-site")
DEFAULT_PAGES = 5000
DEFAULT_SEED = 20240501
PAGES_PER_SECTION = 100
MIN_PAGE_BYTES = 20_000
MAX_PAGE_BYTES = 40_000
MIN_LINKS = 30
MAX_LINKS = 60
# The navigation block links home plus this many section landing pages.
NAV_SECTIONS = 6
# One page in this many has a print view reached through a query string.
PRINT_VIEW_EVERY = 25
PRINT_QUERIES = ("view=print&lang=en", "lang=en&view=print")
EXTERNAL_LINKS = (
    "http://external.invalid/",
    "http://external.invalid/news/today.html",
    "https://cdn.external.invalid/assets/report.html",
    "https://partner.external.invalid/about?ref=bench",
    "mailto:editor@external.invalid",
)
MANIFEST_NAME = "manifest.json"

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or "
    "his from at which but have an they you were her she there been one all "
    "would their has will more if no when what so about can said up out into "
    "them than its time only new some could these two may then first any like "
    "other over such our also after most made should did just where those "
    "because through each people before between many being under while "
    "network request response server client crawler parser document index "
    "query header status cache proxy socket stream buffer queue worker thread "
    "process memory latency throughput bandwidth timeout retry schedule "
    "priority domain host path fragment anchor markup element attribute "
    "section chapter report archive release version library module package "
    "function method class object value string number list table record field "
    "history market policy research system program service public local "
    "national company family council water school health city county music "
    "season league river island mountain station railway bridge village"
).split()
HEADING_WORDS = (
    "Overview Background History Design Usage Examples Configuration "
    "Performance Limits Notes Reference Summary Details Results Methods "
    "Architecture Deployment Security Migration Appendix Glossary"
).split()


class Manifest(TypedDict):
    """Contents of manifest.json: the generator's inputs and what it wrote."""

    seed: int
    pages: int
    total_bytes: int
    in_text_links: int
    expected_paths: list[str]


@dataclass
class Page:
    """One generated page: its site path and the links it carries."""

    number: int
    path: str
    links: list[str] = field(default_factory=list)


def page_path(number: int) -> str:
    """Return the site path of page ``number``, with page 0 as the home page."""
    if number == 0:
        return "/index.html"
    section = number // PAGES_PER_SECTION
    return f"/s{section:02d}/page{number:04d}.html"


def has_print_view(number: int) -> bool:
    return number % PRINT_VIEW_EVERY == 7


def relative_href(source: str, target: str) -> str:
    """Write ``target`` relative to the folder of ``source``, both site paths."""
    source_dir = source.rsplit("/", 1)[0]
    target_dir, target_name = target.rsplit("/", 1)
    if source_dir == target_dir:
        return target_name
    if source_dir == "":
        return target.lstrip("/")
    if target_dir == "":
        return "../" + target_name
    return "../" + target.lstrip("/")


def choose_href(rng: random.Random, source: str, target_number: int) -> str:
    """Write a link to ``target_number`` in one of the forms a real site uses."""
    target = page_path(target_number)
    form = rng.random()
    if form < 0.45:
        href = relative_href(source, target)
    elif form < 0.85:
        href = target
    else:
        href = relative_href(source, target) if form < 0.93 else target
        href += f"#sec-{rng.randint(1, 6)}"
        return href
    if has_print_view(target_number) and rng.random() < 0.3:
        href += "?" + rng.choice(PRINT_QUERIES)
    return href


def choose_links(rng: random.Random, number: int, page_count: int) -> list[str]:
    """Pick the in-text hrefs of one page: tree children, random pages, externals."""
    source = page_path(number)
    targets = [
        child for child in (2 * number + 1, 2 * number + 2) if child < page_count
    ]
    link_count = rng.randint(MIN_LINKS, MAX_LINKS) - NAV_SECTIONS - 1
    external_count = rng.randint(0, 3)
    while len(targets) < link_count - external_count:
        targets.append(rng.randrange(page_count))
    hrefs = [choose_href(rng, source, target) for target in targets]
    hrefs.extend(rng.sample(EXTERNAL_LINKS, external_count))
    rng.shuffle(hrefs)
    return hrefs


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 24))
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, hrefs: list[str]) -> str:
    """Build one paragraph of escaped text with the given links set inline."""
    parts = [html.escape(sentence(rng)) for _ in range(rng.randint(3, 7))]
    for href in hrefs:
        label = html.escape(" ".join(rng.choices(WORDS, k=rng.randint(1, 4))))
        position = rng.randrange(len(parts) + 1)
        parts.insert(position, f'<a href="{html.escape(href)}">{label}</a>')
    return "<p>" + " ".join(parts) + "</p>"


def heading(rng: random.Random) -> str:
    return " ".join(rng.sample(HEADING_WORDS, rng.randint(1, 3)))


def nav_block(rng: random.Random, source: str, page_count: int) -> str:
    """Build the site navigation: home plus a few section landing pages."""
    items = ['<li><a href="/index.html">Home</a></li>']
    for _ in range(NAV_SECTIONS):
        target = rng.randrange(0, page_count, PAGES_PER_SECTION)
        label = f"Section {target // PAGES_PER_SECTION}"
        href = relative_href(source, page_path(target))
        items.append(f'<li><a href="{href}">{label}</a></li>')
    return '<nav class="site-nav"><ul>' + "".join(items) + "</ul></nav>"


def render_page(rng: random.Random, page: Page, page_count: int) -> str:
    """Render a full HTML document of 20-40 KB around the page's links."""
    title = f"{heading(rng)} {page.number}: {sentence(rng)[:-1]}"
    description = sentence(rng) + " " + sentence(rng)
    target_bytes = rng.randint(MIN_PAGE_BYTES, MAX_PAGE_BYTES)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<meta name="description" content="{html.escape(description)}">\n'
        '<link rel="stylesheet" href="/static/site.css">\n</head>\n<body>\n'
        f"<header><h1>{html.escape(title)}</h1></header>\n"
        f"{nav_block(rng, page.path, page_count)}\n<main>\n"
    )
    tail = (
        "</main>\n<footer><p>Generated benchmark page "
        f"{page.number}.</p></footer>\n</body>\n</html>\n"
    )
    body = build_body(rng, page.links, target_bytes - len(head) - len(tail))
    return head + body + tail


def build_body(rng: random.Random, hrefs: list[str], target_bytes: int) -> str:
    """Spread the links over sections of paragraphs until the size is reached."""
    pending = list(hrefs)
    chunks: list[str] = []
    size = 0
    section = 0
    while pending or size < target_bytes:
        if section % 3 == 0 or not chunks:
            section_heading = html.escape(heading(rng))
            chunk = f'<h2 id="sec-{section // 3 + 1}">{section_heading}</h2>'
        elif section % 7 == 5:
            chunk = f"<h3>{html.escape(heading(rng))}</h3>"
        else:
            take = min(len(pending), rng.randint(0, 4))
            chunk = paragraph(rng, pending[:take])
            del pending[:take]
        chunks.append(chunk)
        size += len(chunk) + 1
        section += 1
    return "\n".join(chunks) + "\n"


def expected_urls(pages: list[Page]) -> list[str]:
    """List the site paths a host-limited crawler fetches, queries sorted."""
    paths = {page.path for page in pages}
    for page in pages:
        for href in page.links:
            if "?" in href and not href.startswith(("http", "mailto")):
                paths.add(resolve_path(page.path, href))
    return sorted(paths)


def resolve_path(source: str, href: str) -> str:
    """Resolve a generated in-site href to a path with sorted query params."""
    href = href.split("#", 1)[0]
    target, _, query = href.partition("?")
    if not target.startswith("/"):
        base = source.rsplit("/", 1)[0]
        if target.startswith("../"):
            base = base.rsplit("/", 1)[0]
            target = target[3:]
        target = f"{base}/{target}"
    if query:
        target += "?" + "&".join(sorted(query.split("&")))
    return target


def generate(output: Path, page_count: int, seed: int) -> Manifest:
    """Write the whole site into ``output``, replacing what a previous run left."""
    rng = random.Random(seed)
    pages = [Page(number, page_path(number)) for number in range(page_count)]
    for page in pages:
        page.links = choose_links(rng, page.number, page_count)

    if output.exists():
        shutil.rmtree(output)
    total_bytes = 0
    for page in pages:
        target = output / page.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        text = render_page(rng, page, page_count)
        target.write_text(text, encoding="utf-8")
        total_bytes += len(text.encode("utf-8"))

    manifest: Manifest = {
        "seed": seed,
        "pages": page_count,
        "total_bytes": total_bytes,
        "in_text_links": sum(len(page.links) for page in pages),
        "expected_paths": expected_urls(pages),
    }
    (output / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(output: Path) -> Manifest | None:
    """Return the manifest of an existing site, or None if there is none."""
    try:
        return cast(Manifest, json.loads((output / MANIFEST_NAME).read_text()))
    except (OSError, ValueError):
        return None


def ensure_site(output: Path, page_count: int, seed: int) -> Manifest:
    """Reuse a site generated with the same seed and size, or generate it."""
    manifest = read_manifest(output)
    if manifest and manifest["seed"] == seed and manifest["pages"] == page_count:
        return manifest
    return generate(output, page_count, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"folder to write the site into, replaced if it exists "
        f"(default {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--pages",
        type=int,
        default=DEFAULT_PAGES,
        help=f"number of HTML pages (default {DEFAULT_PAGES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the random generator (default {DEFAULT_SEED})",
    )
    args = parser.parse_args(argv)
    if args.pages < 1:
        parser.error(f"--pages must be at least 1, got {args.pages}")

    manifest = generate(args.output, args.pages, args.seed)
    expected = manifest["expected_paths"]
    print(
        f"wrote {manifest['pages']} pages ({manifest['total_bytes'] / 1e6:.1f} MB, "
        f"{manifest['in_text_links']} in-text links) to {args.output}; "
        f"{len(expected)} distinct URLs to fetch once query order is ignored"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
