"""The ``crawler`` command.

``crawler crawl URL ...`` runs one crawl in this process with an in-memory
frontier and writes every record to a JSON Lines or CSV file as soon as it is
made. Every crawl option of the API is a flag here, in kebab-case
(``max_pages`` is ``--max-pages``).

Exit status: 0 when the crawl ended by itself (frontier empty or a limit
reached), 2 for invalid arguments or settings, 1 when the output cannot be
written, 130 after Ctrl-C (the records written so far are complete lines).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from crawler.engine import Crawler, CrawlStats
from crawler.errors import InvalidOptionError
from crawler.fetch import create_session
from crawler.frontier import MemoryStore
from crawler.guard import AddressGuard, parse_networks
from crawler.options import SCOPES, CrawlOptions, Selector
from crawler.output import CsvWriter, JsonLinesWriter, RecordWriter
from crawler.parse_pool import ParsePool
from crawler.records import PageRecord
from crawler.service_commands import add_service_commands, run_worker
from crawler.settings import Settings, load_settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_DEFAULTS = CrawlOptions(seeds=("http://placeholder.invalid/",))

# Options whose command-line spelling is not "--" plus the kebab-case name.
_OPTION_FLAGS = {
    "seeds": "URL",
    "selectors": "--select",
    "select_all": "--select-all",
    "allowed_domains": "--allowed-domain",
    "sitemaps": "--sitemap",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``crawler`` command."""
    parser = argparse.ArgumentParser(
        prog="crawler", description="A polite, concurrent web crawler and scraper."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    crawl = commands.add_parser(
        "crawl",
        help="crawl from seed URLs and write one record per page",
        description=(
            "Crawl from seed URLs and write one JSON object (or CSV row) per page."
        ),
    )
    _add_crawl_arguments(crawl)
    parser.set_defaults(plugins=add_service_commands(commands))
    return parser


def _add_crawl_arguments(crawl: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    crawl.add_argument(
        "seeds", nargs="*", metavar="URL", help="seed URLs (http or https)"
    )
    crawl.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="output file: .jsonl (default) or .csv; '-' writes JSON Lines to stdout",
    )

    limits = crawl.add_argument_group("limits")
    limits.add_argument(
        "--max-pages",
        type=int,
        default=d.max_pages,
        help=f"fetches to make at most (default {d.max_pages})",
    )
    limits.add_argument(
        "--max-depth",
        type=int,
        default=d.max_depth,
        help=f"links to follow from a seed at most (default {d.max_depth})",
    )
    limits.add_argument(
        "--max-duration-s",
        type=float,
        default=None,
        help="stop the crawl after this many seconds (default: no limit)",
    )

    polite = crawl.add_argument_group("concurrency and politeness")
    polite.add_argument(
        "--concurrency",
        type=int,
        default=d.concurrency,
        help=f"requests in flight at most (default {d.concurrency})",
    )
    polite.add_argument(
        "--per-host-concurrency",
        type=int,
        default=d.per_host_concurrency,
        help=f"requests in flight per host at most (default {d.per_host_concurrency})",
    )
    polite.add_argument(
        "--per-host-delay-s",
        type=float,
        default=d.per_host_delay_s,
        help="seconds between request starts to one host (default 0; "
        "robots.txt Crawl-delay and Retry-After raise it)",
    )
    polite.add_argument(
        "--obey-robots",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="obey robots.txt, meta robots and X-Robots-Tag (default: yes)",
    )
    polite.add_argument(
        "--user-agent",
        default=d.user_agent,
        help=f"User-Agent header (default {d.user_agent!r})",
    )

    scope = crawl.add_argument_group("scope")
    scope.add_argument(
        "--scope",
        choices=SCOPES,
        default=d.scope,
        help="host: the seeds' hosts (default); domain: their registered "
        "domains; allowlist: the --allowed-domain list",
    )
    scope.add_argument(
        "--allowed-domain",
        dest="allowed_domains",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="a domain (and its subdomains) for --scope allowlist",
    )
    scope.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="REGEX",
        help="crawl only URLs matching one of these regular expressions "
        "(re.search on the full URL); repeatable",
    )
    scope.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="REGEX",
        help="never crawl URLs matching this regular expression; beats --include",
    )
    scope.add_argument(
        "--sitemap",
        dest="sitemaps",
        action="append",
        default=[],
        metavar="URL",
        help="take seeds from this sitemap (index, XML, gzip or text); repeatable",
    )
    scope.add_argument(
        "--robots-sitemaps",
        action="store_true",
        help="take seeds from the Sitemap: lines of the seeds' robots.txt",
    )
    scope.add_argument(
        "--max-url-length",
        type=int,
        default=d.max_url_length,
        help=f"skip longer URLs (default {d.max_url_length} characters)",
    )
    scope.add_argument(
        "--strip-params",
        default=",".join(d.strip_params),
        metavar="NAMES",
        help="comma-separated query parameters (fnmatch patterns) ignored when "
        "de-duplicating URLs; '' keeps all (default: tracking parameters)",
    )
    scope.add_argument(
        "--max-path-repeats",
        type=int,
        default=d.max_path_repeats,
        help="skip URLs repeating one path segment more often (default "
        f"{d.max_path_repeats})",
    )
    scope.add_argument(
        "--max-query-params",
        type=int,
        default=d.max_query_params,
        help=f"skip URLs with more query parameters (default {d.max_query_params})",
    )
    scope.add_argument(
        "--max-query-variants",
        type=int,
        default=d.max_query_variants,
        help="distinct query strings to crawl per path at most "
        f"(default {d.max_query_variants})",
    )

    extract = crawl.add_argument_group("extraction")
    extract.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="NAME=CSS[@ATTR]",
        help="store the first match's text (or ATTR) as fields.NAME; repeatable",
    )
    extract.add_argument(
        "--select-all",
        action="append",
        default=[],
        metavar="NAME=CSS[@ATTR]",
        help="store every match as a list in fields.NAME; repeatable",
    )

    fetching = crawl.add_argument_group("fetching")
    fetching.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help=f"largest body after decompression (default {d.max_body_bytes})",
    )
    fetching.add_argument(
        "--connect-timeout-s", type=float, default=d.connect_timeout_s
    )
    fetching.add_argument(
        "--read-timeout-s",
        type=float,
        default=d.read_timeout_s,
        help="maximum seconds to wait for the next bytes",
    )
    fetching.add_argument(
        "--total-timeout-s",
        type=float,
        default=d.total_timeout_s,
        help="maximum seconds for one response, body included",
    )
    fetching.add_argument(
        "--min-rate-bytes-s",
        type=int,
        default=d.min_rate_bytes_s,
        help="cut off bodies arriving slower than this, after --rate-grace-s "
        f"(default {d.min_rate_bytes_s}; 0 disables)",
    )
    fetching.add_argument("--rate-grace-s", type=float, default=d.rate_grace_s)
    fetching.add_argument(
        "--max-retries",
        type=int,
        default=d.max_retries,
        help="retries after timeouts, connection errors, 429 and 5xx "
        f"(default {d.max_retries})",
    )
    fetching.add_argument("--backoff-base-s", type=float, default=d.backoff_base_s)
    fetching.add_argument("--backoff-max-s", type=float, default=d.backoff_max_s)
    fetching.add_argument(
        "--max-retry-after-s",
        type=float,
        default=d.max_retry_after_s,
        help="give up instead of waiting for a longer Retry-After",
    )
    fetching.add_argument("--max-redirects", type=int, default=d.max_redirects)
    fetching.add_argument(
        "--allow-network",
        dest="allow_networks",
        action="append",
        default=[],
        metavar="CIDR",
        help="let the crawler connect to this private or loopback network "
        "(adds to CRAWLER_ALLOW_NETWORKS); repeatable",
    )

    crawl.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    crawl.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=None,
        help="log level on stderr (default: CRAWLER_LOG_LEVEL or WARNING)",
    )


def options_from_args(args: argparse.Namespace) -> CrawlOptions:
    """Build validated CrawlOptions from parsed arguments."""
    selectors = [Selector.parse(s) for s in args.select]
    for spec in args.select_all:
        try:
            selectors.append(Selector.parse(spec, all_matches=True))
        except InvalidOptionError as exc:
            raise InvalidOptionError("select_all", exc.message) from exc
    strip_params = tuple(p.strip() for p in args.strip_params.split(",") if p.strip())
    options = CrawlOptions(
        seeds=tuple(args.seeds),
        max_pages=args.max_pages,
        max_depth=args.max_depth,
        max_duration_s=args.max_duration_s,
        concurrency=args.concurrency,
        per_host_concurrency=args.per_host_concurrency,
        per_host_delay_s=args.per_host_delay_s,
        scope=args.scope,
        allowed_domains=tuple(args.allowed_domains),
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        obey_robots=args.obey_robots,
        user_agent=args.user_agent,
        sitemaps=tuple(args.sitemaps),
        robots_sitemaps=args.robots_sitemaps,
        selectors=tuple(selectors),
        max_body_bytes=args.max_body_bytes,
        connect_timeout_s=args.connect_timeout_s,
        read_timeout_s=args.read_timeout_s,
        total_timeout_s=args.total_timeout_s,
        min_rate_bytes_s=args.min_rate_bytes_s,
        rate_grace_s=args.rate_grace_s,
        max_retries=args.max_retries,
        backoff_base_s=args.backoff_base_s,
        backoff_max_s=args.backoff_max_s,
        max_retry_after_s=args.max_retry_after_s,
        max_redirects=args.max_redirects,
        max_url_length=args.max_url_length,
        strip_params=strip_params,
        max_path_repeats=args.max_path_repeats,
        max_query_params=args.max_query_params,
        max_query_variants=args.max_query_variants,
    )
    options.validate()
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crawler`` command; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "crawl":
        return _run_service_command(parser, args)

    try:
        settings = load_settings()
        extra_networks = parse_networks(args.allow_networks, option="allow_network")
        options = options_from_args(args)
    except InvalidOptionError as exc:
        flag = (
            exc.option
            if exc.option.startswith("CRAWLER_")
            else _OPTION_FLAGS.get(exc.option, "--" + exc.option.replace("_", "-"))
        )
        parser.exit(EXIT_USAGE, f"crawler crawl: error: {flag}: {exc.message}\n")

    logging.basicConfig(
        level=args.log_level or settings.log_level or "WARNING",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        with _open_output(args.output, options) as writer:
            return asyncio.run(
                _crawl(
                    options,
                    settings,
                    settings.allow_networks + extra_networks,
                    writer,
                    args.progress,
                )
            )
    except OSError as exc:
        print(
            f"crawler crawl: error: cannot write {args.output!r}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _run_service_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> int:
    try:
        settings = load_settings()
    except InvalidOptionError as exc:
        # Settings messages start with the variable's name already.
        parser.exit(EXIT_USAGE, f"crawler {args.command}: error: {exc.message}\n")
    if args.command == "worker":
        return run_worker(settings)
    plugin_run: int = args.plugins[args.command].run(args, settings)
    return plugin_run


@contextlib.contextmanager
def _open_output(target: str, options: CrawlOptions) -> Iterator[RecordWriter]:
    stream: IO[str]
    if target == "-":
        if sys.stdout is None:
            raise OSError("standard output is closed")
        yield JsonLinesWriter(sys.stdout)
        return
    path = Path(target)
    with path.open("w", encoding="utf-8", newline="") as stream:
        if path.suffix.lower() == ".csv":
            yield CsvWriter(stream, [s.name for s in options.selectors])
        else:
            yield JsonLinesWriter(stream)


async def _crawl(
    options: CrawlOptions,
    settings: Settings,
    allow_networks: Any,
    writer: RecordWriter,
    progress: bool | None,
) -> int:
    show_progress = sys.stderr.isatty() if progress is None else progress
    bar = _ProgressBar(show_progress)
    output_errors: list[Exception] = []

    def write(record: PageRecord) -> None:
        # The first failed write (a full disk, a closed pipe) ends the crawl:
        # fetching on would only produce records that cannot be kept.
        if output_errors:
            return
        try:
            writer.write(record)
        except (OSError, ValueError) as exc:
            output_errors.append(exc)
            crawler.stop("output_failed")

    store = MemoryStore(on_record=write)
    pool = ParsePool(settings.parse_mode, settings.parse_workers)
    session = create_session(AddressGuard(allow_networks))
    interrupted = False
    try:
        crawler = Crawler(options, store, session, pool, on_progress=bar.update)

        def on_signal(signame: str) -> None:
            nonlocal interrupted
            interrupted = True
            print(f"\ncrawler crawl: {signame} received; stopping", file=sys.stderr)
            crawler.stop(signame)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)

        stats = await crawler.run()
    finally:
        bar.close()
        await session.close()
        pool.close()

    _print_summary(stats, store.records_saved)
    if output_errors:
        error = output_errors[0]
        if isinstance(error, BrokenPipeError):
            # The reader went away (| head): keep Python's exit-time flush of
            # stdout from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(
            f"crawler crawl: error: writing the output failed: {error}", file=sys.stderr
        )
        return EXIT_FAILURE
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


class _ProgressBar:
    """A tqdm bar with pages, pages/s and errors; silent when not on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(unit="page", file=sys.stderr, dynamic_ncols=True)
        self._last = 0.0

    def update(self, stats: CrawlStats) -> None:
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and stats.finished is None:
            return
        self._last = now
        self._bar.n = stats.fetched
        self._bar.set_postfix(
            queued=stats.queued,
            errors=stats.failed,
            in_flight=stats.in_flight,
            refresh=False,
        )
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _print_summary(stats: CrawlStats, records: int) -> None:
    elapsed = (stats.finished or time.monotonic()) - stats.started
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items())) or "none"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items())) or "none"
    print(
        f"crawler crawl: {stats.finish_reason}: {records} records, "
        f"{stats.fetched} fetched, {stats.failed} failed in {elapsed:.1f} s "
        f"({stats.pages_per_s(time.monotonic()):.1f} pages/s); "
        f"errors: {errors}; skipped: {skipped}",
        file=sys.stderr,
    )
