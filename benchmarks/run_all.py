"""Run every benchmark at one scale and print one table (the figures of docs/performance.md).

    python benchmarks/run_all.py --approaches 200000 --companies 30000 --db both

For each database: a fresh database, the full sync, the nightly delta, flag re-evaluation and
the bulk-insert limit (``sync_throughput.py``); then, on the same synced database, the
prior-contact check under load through gunicorn (``prior_contact_load.py``) and the council
reports for the year 2025 (``report_year.py``). ``--json FILE`` keeps every figure.
Generated deliveries are cached in ``$COORDINATION_BENCH_DATA`` (default
``<tmp>/coordination-bench``) and reused by later runs at the same scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import prior_contact_load
import report_year
import sync_throughput
from common import SyncSetup, in_child, machine, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sync_throughput.add_workload_arguments(parser)
    prior_contact_load.add_load_arguments(parser)
    parser.add_argument("--report-runs", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true", help="no prior-contact load test")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    box = machine()
    print(
        f"machine: {box['cpus']} CPUs ({box['cpu_model']}), {box['memory_gb']} GB, "
        f"load {box['load'][0]:.1f}/{box['load'][1]:.1f}/{box['load'][2]:.1f}",
        flush=True,
    )
    deliveries = prepare(sync_throughput.workload_of(args))
    print(
        f"workload: {args.approaches:,} approaches, {args.companies:,} companies: "
        f"{deliveries.initial:,} records + nightly {deliveries.nightly:,}",
        flush=True,
    )

    def after(url: str, setup: SyncSetup) -> dict[str, Any]:
        figures: dict[str, Any] = {"reports": in_child(reports_step, url, args.report_runs)}
        report_year_print(figures["reports"])
        if not args.skip_load:
            figures["prior_contact"] = prior_contact_load.measure(
                url, setup, **prior_contact_load.load_options(args)
            )
            prior_contact_load.print_results(figures["prior_contact"])
        return figures

    results: dict[str, Any] = {"machine": box, "workload": vars(args) | {"json": None}}
    with tempfile.TemporaryDirectory(prefix="coordination-bench-") as workdir:
        for kind in sync_throughput.databases(args.db):
            out = sync_throughput.run(kind, deliveries, Path(workdir), args.page_size, after)
            sync_throughput.print_results(kind, out)
            results[kind] = out
    print_table(results, sync_throughput.databases(args.db))
    print(f"(all of it took {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


def reports_step(url: str, runs: int) -> dict[str, Any]:
    from coordination.db import make_engine

    engine = make_engine(url)
    try:
        return {"seconds": report_year.measure(engine, runs), "runs": runs}
    finally:
        engine.dispose()


def report_year_print(figures: dict[str, Any]) -> None:
    for name, seconds in figures["seconds"].items():
        print(f"  report {name:<38} {seconds:6.2f} s (median of {figures['runs']})", flush=True)


# --- the summary table ------------------------------------------------------------------------


def print_table(results: dict[str, Any], kinds: list[str]) -> None:
    rows = [("figure", *kinds, "target")]
    for label, pick, target in _FIGURES:
        cells = []
        for kind in kinds:
            try:
                cells.append(pick(results[kind], kind))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        rows.append((label, *cells, target))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def _pc(out: dict, key: str) -> dict:
    return out["after"]["prior_contact"][key]


_FIGURES = [
    ("records (initial sync)", lambda o, k: f"{o['records']:,}", ""),
    (
        "full sync, records/s",
        lambda o, k: f"{o['full']['records_per_second']:,.0f}",
        ">= 10,000 (SQLite), >= 8,000 (PostgreSQL)",
    ),
    ("full sync, seconds", lambda o, k: f"{o['full']['seconds']:.0f}", ""),
    ("full sync, peak memory MB", lambda o, k: f"{o['full']['peak_rss_mb']:.0f}", "< 400 at 1M"),
    ("bulk insert, records/s", lambda o, k: f"{o['bulk']['records_per_second']:,.0f}", ""),
    (
        "sync / bulk",
        lambda o, k: f"{o['full']['records_per_second'] / o['bulk']['records_per_second']:.1%}",
        "",
    ),
    (
        "nightly delta, seconds",
        lambda o, k: f"{o['nightly']['seconds']:.1f}",
        "< 10 on top of 2M, flags included",
    ),
    ("  of which flags (incremental)", lambda o, k: f"{o['nightly']['flag_seconds']:.2f}", ""),
    ("flag re-evaluation, all, s", lambda o, k: f"{o['flags_full']['seconds']:.1f}", ""),
    ("database size MB", lambda o, k: f"{o['database_mb']:.0f}", ""),
    ("pg_dump -Fc MB", lambda o, k: f"{o['dump']['mb']:.0f}", ""),
    (
        "council report (slowest), s",
        lambda o, k: f"{max(o['after']['reports']['seconds'].values()):.2f}",
        "< 2",
    ),
    (
        "/healthz saturated, req/s",
        lambda o, k: f"{_pc(o, 'healthz_max')['requests_per_second']:,.0f}",
        "",
    ),
    (
        "prior-contact saturated, req/s",
        lambda o, k: f"{_pc(o, 'prior_contact_max')['requests_per_second']:,.0f}",
        "",
    ),
    (
        "  share of /healthz",
        lambda o, k: f"{o['after']['prior_contact']['share_of_ceiling']:.0%}",
        ">= 40%",
    ),
    (
        "prior-contact p50 ms at rate",
        lambda o, k: f"{_pc(o, 'prior_contact_at_rate')['p50_ms']:.1f}",
        "< 10 (PostgreSQL, 2M, 200/s)",
    ),
    (
        "prior-contact p95 ms at rate",
        lambda o, k: f"{_pc(o, 'prior_contact_at_rate')['p95_ms']:.1f}",
        "",
    ),
    (
        "prior-contact p99 ms at rate",
        lambda o, k: f"{_pc(o, 'prior_contact_at_rate')['p99_ms']:.1f}",
        "< 50",
    ),
    (
        "prior-contact p50 ms at half max",
        lambda o, k: f"{_pc(o, 'prior_contact_at_half')['p50_ms']:.1f}",
        "",
    ),
    (
        "prior-contact p99 ms at half max",
        lambda o, k: f"{_pc(o, 'prior_contact_at_half')['p99_ms']:.1f}",
        "",
    ),
]


if __name__ == "__main__":
    sys.exit(main())
