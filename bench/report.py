"""Summarize benchmark runs: medians per case, a Markdown table, URL-set checks.

Kept apart from bench/run.py so the numbers in docs/performance.md can be
recomputed from a saved results file without crawling again::

    python bench/report.py /tmp/bench-results/results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

CRAWLER_LABELS = {"ours": "crawler (this project)", "scrapy": "Scrapy"}
# (results key, table heading, digits after the decimal point)
METRICS: tuple[tuple[str, str, int], ...] = (
    ("pages", "Pages", 0),
    ("wall_seconds", "Wall s", 1),
    ("pages_per_second", "Pages/s", 0),
    ("cpu_seconds", "CPU s", 1),
    ("pages_per_cpu_second", "Pages per CPU s", 0),
    ("cores_busy", "CPU s / wall s", 2),
    ("peak_tree_rss_mb", "Peak RSS MB (tree)", 0),
    ("server_cpu_seconds", "nginx CPU s", 1),
    ("other_load_cores", "Other load, cores", 2),
)
EXAMPLES_SHOWN = 5


def canonical_url(url: str) -> str:
    """Reduce a URL to path and sorted query, the identity both crawlers share.

    Scheme and host are dropped because every run crawls a single loopback
    site, and the fragment is dropped because it names no separate resource.
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    if not parts.query:
        return path
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return f"{path}?{query}"


def describe(values: Sequence[float], digits: int) -> str:
    """Format the median, with the min-max range when the rounds differ."""
    if not values:
        return "-"
    median = statistics.median(values)
    low, high = min(values), max(values)
    text = f"{median:,.{digits}f}"
    if len(values) > 1 and f"{low:,.{digits}f}" != f"{high:,.{digits}f}":
        text += f" ({low:,.{digits}f}-{high:,.{digits}f})"
    return text


def group_key(run: dict[str, Any]) -> tuple[str, int, str]:
    return (run["site"], run["concurrency"], run["crawler"])


def summarize(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group runs by site, concurrency and crawler, with per-metric statistics.

    A run that timed out or exited non-zero is left out of the statistics and
    counted in ``failed_runs``. Skipped runs count in ``skipped_runs``.
    """
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)

    summaries = []
    for (site, concurrency, crawler), members in groups.items():
        done = [run for run in members if run["status"] == "ok"]
        summary: dict[str, Any] = {
            "site": site,
            "concurrency": concurrency,
            "crawler": crawler,
            "runs": len(done),
            "failed_runs": sum(run["status"] == "failed" for run in members),
            "skipped_runs": sum(run["status"] == "skipped" for run in members),
            "skip_reasons": sorted(
                {run.get("reason", "") for run in members if run["status"] == "skipped"}
            ),
        }
        for key, _, _ in METRICS:
            values = [run[key] for run in done]
            summary[key] = {
                "median": statistics.median(values) if values else None,
                "min": min(values, default=None),
                "max": max(values, default=None),
                "values": values,
            }
        summaries.append(summary)
    crawler_order = {name: index for index, name in enumerate(CRAWLER_LABELS)}
    summaries.sort(
        key=lambda item: (
            item["site"],
            item["concurrency"],
            crawler_order.get(item["crawler"], len(crawler_order)),
        )
    )
    return summaries


def table_row(summary: dict[str, Any]) -> str:
    """Format one summary as a Markdown table row."""
    cells = [
        summary["site"],
        str(summary["concurrency"]),
        CRAWLER_LABELS.get(summary["crawler"], summary["crawler"]),
        str(summary["runs"]),
    ]
    if summary["runs"] == 0:
        if summary["failed_runs"]:
            note = f"failed: {summary['failed_runs']} runs failed, see their logs"
        else:
            note = "pending: " + "; ".join(summary["skip_reasons"])
        cells.extend([note] + ["-"] * (len(METRICS) - 1))
    else:
        for key, _, digits in METRICS:
            cells.append(describe(summary[key]["values"], digits))
    return "| " + " | ".join(cells) + " |"


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Render the summaries as a Markdown table, median (min-max) per cell."""
    headings = ["Site", "Concurrency", "Crawler", "Rounds"]
    headings += [heading for _, heading, _ in METRICS]
    lines = [
        "| " + " | ".join(headings) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(headings) - 3)) + "|",
    ]
    lines.extend(table_row(summary) for summary in summaries)
    return "\n".join(lines)


def compare_sets(
    name_a: str, set_a: set[str], name_b: str, set_b: set[str]
) -> dict[str, Any]:
    """Count what two URL sets share and list a few URLs only one of them has."""
    only_a = sorted(set_a - set_b)
    only_b = sorted(set_b - set_a)
    return {
        "a": name_a,
        "b": name_b,
        "common": len(set_a & set_b),
        "only_a": len(only_a),
        "only_b": len(only_b),
        "only_a_examples": only_a[:EXAMPLES_SHOWN],
        "only_b_examples": only_b[:EXAMPLES_SHOWN],
    }


def url_set_report(
    runs: Sequence[dict[str, Any]], references: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Check that each crawler fetched the same pages on each site.

    Per site and crawler it reports the distinct canonical URLs with status 200
    (union over runs), whether every run fetched exactly that set, and how many
    fetches were duplicates once fragments and query order are ignored. Then it
    compares the crawlers with each other and with the generator's manifest.
    """
    by_site: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        if run["status"] == "ok":
            by_site.setdefault(run["site"], {}).setdefault(run["crawler"], [])
            by_site[run["site"]][run["crawler"]].append(run)

    reports = []
    for site, crawlers in by_site.items():
        unions: dict[str, set[str]] = {}
        site_report: dict[str, Any] = {"site": site, "crawlers": {}, "comparisons": []}
        for crawler, crawler_runs in crawlers.items():
            sets = [set(run["canonical_urls"]) for run in crawler_runs]
            unions[crawler] = set().union(*sets)
            site_report["crawlers"][crawler] = {
                "distinct_urls": len(unions[crawler]),
                "same_set_every_run": all(s == unions[crawler] for s in sets),
                "duplicate_fetches": [
                    run["pages"] - len(run["canonical_urls"]) for run in crawler_runs
                ],
            }
        if site in references:
            unions["manifest"] = set(references[site])
        names = sorted(unions)
        for index, name_a in enumerate(names):
            for name_b in names[index + 1 :]:
                site_report["comparisons"].append(
                    compare_sets(name_a, unions[name_a], name_b, unions[name_b])
                )
        reports.append(site_report)
    return reports


def url_set_lines(reports: Sequence[dict[str, Any]]) -> list[str]:
    """Render the URL-set checks as Markdown bullet lines."""
    lines = []
    for report in reports:
        for crawler, facts in report["crawlers"].items():
            label = CRAWLER_LABELS.get(crawler, crawler)
            lines.append(
                f"- {report['site']}, {label}: {facts['distinct_urls']:,} distinct "
                f"URLs with status 200; same set in every run: "
                f"{'yes' if facts['same_set_every_run'] else 'no'}; duplicate "
                f"fetches per run: {facts['duplicate_fetches']}"
            )
        for comparison in report["comparisons"]:
            lines.append(
                f"- {report['site']}, {comparison['a']} vs {comparison['b']}: "
                f"{comparison['common']:,} in both, {comparison['only_a']} only in "
                f"{comparison['a']} {comparison['only_a_examples']}, "
                f"{comparison['only_b']} only in {comparison['b']} "
                f"{comparison['only_b_examples']}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print one table for one or more results files of bench/run.py."
    )
    parser.add_argument(
        "results", type=Path, nargs="+", help="JSON files written by bench/run.py"
    )
    args = parser.parse_args(argv)
    summaries: list[dict[str, Any]] = []
    url_sets: list[dict[str, Any]] = []
    for path in args.results:
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            print(f"error: cannot read {path}: {error}", file=sys.stderr)
            return 1
        summaries.extend(results["summary"])
        url_sets.extend(results["url_sets"])
    print(markdown_table(summaries))
    print()
    print("\n".join(url_set_lines(url_sets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
