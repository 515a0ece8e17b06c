"""Summarize bench/cluster.py runs: medians per store and worker count, as a table.

Kept apart from bench/cluster.py so the table in docs/performance.md can be
recomputed from a saved results file without running the benchmark again::

    python bench/cluster_report.py bench/results/cluster.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from report import describe

STORE_LABELS = {"sqlite": "SQLite", "ferretdb": "FerretDB"}


def worker_values(runs: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Collect one per-worker figure over every worker of every run."""
    return [
        worker[key]
        for run in runs
        for worker in run["per_worker"]
        if worker[key] is not None
    ]


def shares_by_rank(runs: Sequence[dict[str, Any]]) -> list[float]:
    """Return the median share of the busiest worker, the next, and so on.

    Which worker claims the job changes from run to run, so shares are
    compared by rank, not by worker number.
    """
    ranked = [
        sorted((worker["share"] for worker in run["per_worker"]), reverse=True)
        for run in runs
    ]
    return [statistics.median(column) for column in zip(*ranked, strict=True)]


def summarize_case(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Gather the figures of one store and worker count from its good runs."""
    done = [run for run in runs if run["status"] == "ok"]
    summary: dict[str, Any] = {
        "store": runs[0]["store"],
        "workers": runs[0]["workers"],
        "runs": len(done),
        "failed_runs": len(runs) - len(done),
    }
    if not done:
        return summary
    summary.update(
        pages=[run["pages"] for run in done],
        seconds=[run["seconds"] for run in done],
        pages_per_second=[run["pages_per_second"] for run in done],
        share_by_rank=shares_by_rank(done),
        peak_rss_mb=worker_values(done, "peak_rss_mb"),
        worker_cpu_ms_per_page=[
            1000 * run["worker_cpu_seconds"] / run["pages"] for run in done
        ],
        store_server_cpu_seconds=[
            run["store_server_cpu_seconds"]
            for run in done
            if run["store_server_cpu_seconds"] is not None
        ],
        site_cpu_seconds=[run["site_cpu_seconds"] for run in done],
        busy_cores=[run["busy_cores"] for run in done],
        idle_workers=[
            sum(worker["page_fetches"] == 0 for worker in run["per_worker"])
            for run in done
        ],
        other_load_cores=[run["other_load_cores"] for run in done],
        completion_lag_s=[run["completion_lag_s"] for run in done],
        duplicate_fetches=[run["page_fetches"] - run["pages"] for run in done],
    )
    return summary


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group runs by store and worker count; add the speed-up over 1 worker."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["store"], record["workers"]), []).append(record)
    summaries = [summarize_case(runs) for _, runs in sorted(groups.items())]

    single = {
        summary["store"]: statistics.median(summary["pages_per_second"])
        for summary in summaries
        if summary["workers"] == 1 and summary["runs"]
    }
    for summary in summaries:
        base = single.get(summary["store"])
        if summary["runs"] and base:
            summary["speedup"] = statistics.median(summary["pages_per_second"]) / base
    return summaries


HEADINGS = (
    "Store",
    "Workers",
    "Rounds",
    "Job s",
    "Pages/s",
    "Speed-up",
    "Fetch share per worker, %",
    "Idle workers",
    "Peak RSS MB per worker",
    "Worker CPU ms per page",
    "FerretDB CPU s",
    "Busy cores",
    "Other load, cores",
)


def table_row(summary: dict[str, Any]) -> str:
    cells = [
        STORE_LABELS.get(summary["store"], summary["store"]),
        str(summary["workers"]),
        str(summary["runs"]),
    ]
    if summary["failed_runs"]:
        cells[-1] += f" ({summary['failed_runs']} failed)"
    if not summary["runs"]:
        cells.append("see the logs of the failed runs")
        cells.extend(["-"] * (len(HEADINGS) - len(cells)))
        return "| " + " | ".join(cells) + " |"

    speedup = summary.get("speedup")
    cells += [
        describe(summary["seconds"], 1),
        describe(summary["pages_per_second"], 0),
        "-" if speedup is None else f"{speedup:.2f}",
        " / ".join(f"{100 * share:.0f}" for share in summary["share_by_rank"]),
        describe(summary["idle_workers"], 0),
        describe(summary["peak_rss_mb"], 0),
        describe(summary["worker_cpu_ms_per_page"], 1),
        describe(summary["store_server_cpu_seconds"], 1),
        describe(summary["busy_cores"], 2),
        describe(summary["other_load_cores"], 2),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Render the summaries as a Markdown table, median (min-max) per cell."""
    lines = [
        "| " + " | ".join(HEADINGS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(HEADINGS) - 1)) + "|",
    ]
    lines.extend(table_row(summary) for summary in summaries)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print the table of one results file of bench/cluster.py."
    )
    parser.add_argument("results", type=Path, help="JSON file by bench/cluster.py")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as error:
        print(f"error: cannot read {args.results}: {error}", file=sys.stderr)
        return 1
    print(markdown_table(summarize(results["runs"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
