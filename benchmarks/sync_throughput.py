"""Benchmark: sync throughput, peak memory, the nightly delta, flag re-evaluation, bulk limit.

For each database (a fresh one per run) it measures, each step in a fresh process:

1. **full sync**: every source of the workload (less the nightly delta) end to end through the
   real connectors (OData CRM and VEU API served by local fakes from files, jobcentre CSV drops),
   as ``coordination sync`` runs it: records/s over the whole run (flag evaluation of the
   touched companies included), the sync process's CPU time per record (the database server's
   not counted) and its peak resident memory;
2. **nightly delta**: the held-back records (default 5,000) on top, as the next night's run;
3. **flag re-evaluation**: the nightly job's ``flags`` step as it runs (the companies due since
   a successful nightly run the day before), all companies, and the incremental evaluation of
   the companies the delta touched (part of step 2, timed on its own);
4. **bulk insert**: the rows the sync wrote (records, needs, companies, links, approaches, ...)
   copied straight into the same tables of another fresh database (SQLite: executemany in
   batches; PostgreSQL: COPY): the machine's practical limit, and the sync's share of it.

    python benchmarks/sync_throughput.py --approaches 50000 --companies 10000 --db both

``--profile DIR`` also runs the full sync and the delta under cProfile (slower: the timings of a
profiled run are not the benchmark's) and prints the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import pstats
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    BackendCpu,
    Deliveries,
    DropFolders,
    FakeSources,
    SyncSetup,
    Workload,
    database_size_mb,
    dump_size,
    fresh_database,
    in_child,
    load_text,
    machine,
    prepare,
    sync_setup,
    table_sizes,
)

TARGET_SQLITE = 10_000  # records/s (issue 9)
TARGET_POSTGRES = 8_000
TARGET_NIGHTLY_SECONDS = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--profile", type=Path, help="also profile; write .pstats files here")
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what the profile counts: elapsed time, or the process's CPU time (steadier on a "
        "loaded machine; leaves out waiting for the database server)",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    deliveries = prepare(workload_of(args))
    results = {}
    with tempfile.TemporaryDirectory(prefix="coordination-bench-") as workdir:
        for kind in databases(args.db):
            results[kind] = run(kind, deliveries, Path(workdir), page_size=args.page_size)
            print_results(kind, results[kind])
            if args.profile:
                paths = profile(kind, deliveries, Path(workdir), args.profile, args.profile_clock)
                print_profiles(paths)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--approaches", type=int, default=50_000)
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--delta", type=int, default=5_000, help="records in the nightly delta")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--page-size", type=int, default=1000, help="API page size (VEU: <=1000)")


def workload_of(args: argparse.Namespace) -> Workload:
    return Workload(args.approaches, args.companies, args.delta)


def databases(choice: str) -> list[str]:
    return ["sqlite", "postgres"] if choice == "both" else [choice]


# --- one run ------------------------------------------------------------------------------------


def run(
    kind: str,
    deliveries: Deliveries,
    workdir: Path,
    page_size: int = 1000,
    after: Callable[[str, SyncSetup], dict] | None = None,
) -> dict[str, Any]:
    """All steps on a fresh ``kind`` database; ``after(url, setup)`` may measure more on the
    synced database before it is dropped (its answer is added under ``"after"``)."""
    out: dict[str, Any] = {"records": deliveries.initial, "nightly_records": deliveries.nightly}
    with fresh_database(kind, workdir) as url, FakeSources(deliveries) as fakes:
        drops = DropFolders(deliveries, workdir / f"drops-{kind}-{time.monotonic_ns()}")
        setup = sync_setup(url, deliveries, fakes, drops, page_size=page_size)
        out["load_before"] = load_text()
        out["full"] = in_child(sync_step, setup, None)
        out["full"].pop("evaluated")
        fakes.reveal_nightly()
        drops.add_nightly()
        out["nightly"] = in_child(sync_step, setup, None)
        out["flags_nightly"] = in_child(flags_step, url, True, out["nightly"].pop("evaluated"))
        out["flags_full"] = in_child(flags_step, url)
        out["database_mb"] = database_size_mb(url)
        out["tables"] = table_sizes(url)
        out["dump"] = dump_size(url, workdir)
        with fresh_database(kind, workdir) as target:
            out["bulk"] = in_child(bulk_copy_step, url, target)
            out["tables_compact"] = table_sizes(target)  # the same rows without dead versions
        out["load_after"] = load_text()
        if after is not None:
            out["after"] = after(url, setup)
    return out


def profile(
    kind: str, deliveries: Deliveries, workdir: Path, folder: Path, clock: str = "wall"
) -> dict[str, str]:
    """The full sync and the nightly delta under cProfile (``clock``: ``wall`` or ``cpu``
    time); the .pstats paths by step."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {step: str(folder / f"{kind}-{step}.pstats") for step in ("full", "nightly")}
    with fresh_database(kind, workdir) as url, FakeSources(deliveries) as fakes:
        drops = DropFolders(deliveries, workdir / f"drops-profile-{kind}-{time.monotonic_ns()}")
        setup = sync_setup(url, deliveries, fakes, drops)
        in_child(sync_step, setup, paths["full"], clock)
        fakes.reveal_nightly()
        drops.add_nightly()
        in_child(sync_step, setup, paths["nightly"], clock)
    return paths


def print_profiles(paths: dict[str, str], limit: int = 35) -> None:
    for step, path in paths.items():
        text = io.StringIO()
        stats = pstats.Stats(path, stream=text)
        stats.sort_stats("cumulative").print_stats(limit)
        print(f"\n--- profile of the {step} sync ({path}), by cumulative time ---")
        print(text.getvalue())


# --- steps (each in a fresh process) ----------------------------------------------------------


def sync_step(
    setup: SyncSetup, profile_path: str | None, profile_clock: str = "wall"
) -> dict[str, Any]:
    """One ``coordination sync`` run. The parts of it that are not per batch are timed on their
    own (``parts``, seconds): loading the company index (``IdentityStage``), rebuilding the
    touched companies' approaches, the flag evaluation and the report facts' refresh."""
    import coordination.sync as sync_module
    from coordination.db import make_engine
    from coordination.services import run_sync

    config = setup.config()
    engine = make_engine(config.database_url)
    parts = {"index": 0.0, "rebuild": 0.0, "flags": 0.0, "facts": 0.0}
    # the same parts' CPU seconds: the syncing process's and the database server's
    parts_cpu = dict.fromkeys(parts, 0.0)
    parts_server_cpu = dict.fromkeys(parts, 0.0)
    server = BackendCpu(config.database_url)
    flag_companies = [0]
    timed_parts = {
        "IdentityStage": "index",
        "rebuild_companies": "rebuild",
        "plan_rebuild": "rebuild",
        "evaluate_companies": "flags",
        "refresh_report_facts": "facts",
    }
    for attribute, part in timed_parts.items():
        timed = _timed(getattr(sync_module, attribute), parts, part)
        timed = _cpu_timed(timed, parts_cpu, parts_server_cpu, server, part)
        setattr(sync_module, attribute, timed)
    evaluate = sync_module.evaluate_companies

    def counted_evaluation(session, company_ids, rules, today=None):
        ids = set(company_ids)
        flag_companies[0] += len(ids)
        return evaluate(session, ids, rules, today)

    sync_module.evaluate_companies = counted_evaluation
    profiler = None
    if profile_path:
        # CPU time: what the process itself spends, whatever else the machine runs
        profiler = (
            cProfile.Profile(time.process_time) if profile_clock == "cpu" else cProfile.Profile()
        )
    server_started = server.snapshot()
    readers_started = _children_cpu()
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = run_sync(config, trigger="cli", engine=engine)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile_path)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    _end_fork_server()
    reader_cpu_seconds = _children_cpu() - readers_started
    server_cpu_seconds = server.since(server_started, server.snapshot())
    engine.dispose()
    totals: dict[str, int] = {}
    for outcome in result.outcomes:
        for name, value in dataclasses.asdict(outcome.counts).items():
            totals[name] = totals.get(name, 0) + value
    return {
        "seconds": seconds,
        "records_per_second": totals.get("fetched", 0) / seconds if seconds else 0.0,
        "cpu_seconds": cpu_seconds,
        "server_cpu_seconds": server_cpu_seconds,
        # the sources' reader processes (``coordination.sync_reader``) and their fork server,
        # ended by now
        "reader_cpu_seconds": reader_cpu_seconds,
        "reader_cpu_ms_per_record": 1000 * reader_cpu_seconds / totals["fetched"]
        if totals.get("fetched")
        else 0.0,
        "reader_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "cpu_ms_per_record": 1000 * cpu_seconds / totals["fetched"]
        if totals.get("fetched")
        else 0.0,
        "server_cpu_ms_per_record": 1000 * server_cpu_seconds / totals["fetched"]
        if totals.get("fetched") and server.database is not None
        else None,
        "counts": totals,
        "flags_raised": result.flags_raised,
        "flag_seconds": parts["flags"],
        "flag_companies": flag_companies[0],
        "parts": parts,
        "parts_cpu": parts_cpu,
        "parts_server_cpu": parts_server_cpu,
        "failed": {o.name: o.error for o in result.outcomes if o.status != "succeeded"},
        "source_seconds": {o.name: round(o.seconds, 2) for o in result.outcomes},
        # for the nightly job's flags step, which leaves out what the sync has just evaluated
        "evaluated": dataclasses.replace(result, outcomes=[]),  # popped before printing
    }


def _end_fork_server() -> None:
    """Ends the fork server the sources' readers were forked from (``coordination.sync_reader``)
    and waits for it: only then are the readers' CPU time and peak memory (the server's children,
    ended and waited for by it) this process's children's."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # no public way; the standard library's own tests do this


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_timed(
    function: Callable[..., Any],
    cpu: dict[str, float],
    server_cpu: dict[str, float],
    server: BackendCpu,
    part: str,
) -> Callable[..., Any]:
    """``function``, adding the process's and the database server's CPU seconds each call
    takes to ``cpu[part]`` and ``server_cpu[part]`` (the server's read before ``function``'s
    wall-clock timing starts and after it ends)."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        server_started, started = server.snapshot(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            cpu[part] += time.process_time() - started
            server_cpu[part] += server.since(server_started, server.snapshot())

    return timed


def _timed(function: Callable[..., Any], parts: dict[str, float], part: str) -> Callable[..., Any]:
    """``function``, adding the seconds each call takes to ``parts[part]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            parts[part] += time.perf_counter() - started

    return timed


def flags_step(url: str, due_only: bool = False, after_sync: Any = None) -> dict[str, Any]:
    """The coordination rules over every company, or (``due_only``) the nightly job's ``flags``
    step: over the companies due since a successful nightly run the day before, but those the
    job's sync step has just evaluated (``after_sync``, its ``SyncResult``) and nothing has
    changed since."""
    import datetime as dt

    from coordination.config import Rules
    from coordination.db import make_engine, session_scope
    from coordination.flagging import all_company_ids, companies_due, evaluate_companies
    from coordination.jobs import flags_due
    from coordination.timeutil import local_today

    engine = make_engine(url)
    today, yesterday = local_today(), local_today() - dt.timedelta(days=1)
    server = BackendCpu(url)
    server_started = server.snapshot()
    started, cpu_started = time.perf_counter(), time.process_time()
    with session_scope(engine) as session:
        if due_only:
            ids = flags_due(session, today, yesterday, after_sync, Rules())
        else:
            ids = all_company_ids(session)
        raised = evaluate_companies(session, ids, Rules(), today)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    server_cpu_seconds = server.since(server_started, server.snapshot())
    with session_scope(engine) as session:  # untimed: what the sync's evaluation spared
        left_out = (
            len(companies_due(session, today, yesterday, Rules())) - len(ids) if due_only else 0
        )
    engine.dispose()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "server_cpu_seconds": server_cpu_seconds,
        "companies": len(ids),
        "left_out": left_out,
        "flags_raised": raised,
    }


def bulk_copy_step(source_url: str, target_url: str) -> dict[str, Any]:
    """Copy the synced rows into the same tables of an empty database; time the writes only.

    SQLite: the stored values as they are, with the driver's ``executemany`` in batches of
    10,000, one transaction each. PostgreSQL: ``COPY`` in batches of 10,000."""
    from coordination.db import make_engine

    source, target = make_engine(source_url), make_engine(target_url)
    copy_table = _copy_postgres if target.dialect.name == "postgresql" else _copy_sqlite
    per_table = {}
    for table in bulk_tables():
        rows, seconds = copy_table(source, target, table)
        per_table[table.name] = {"rows": rows, "seconds": round(seconds, 2)}
    source.dispose()
    target.dispose()
    total = sum(t["seconds"] for t in per_table.values())
    records = per_table["sourcerecord"]["rows"]
    return {
        "seconds": total,
        "records_per_second": records / total if total else 0.0,
        "rows": sum(t["rows"] for t in per_table.values()),
        "tables": per_table,
        "method": "COPY" if copy_table is _copy_postgres else "executemany",
    }


BULK_BATCH = 10_000


def _copy_sqlite(source, target, table) -> tuple[int, float]:
    from sqlalchemy import insert, select

    reading = str(select(table).order_by(*_parents_first(table)).compile(dialect=source.dialect))
    writing = str(insert(table).compile(dialect=target.dialect))
    rows, seconds = 0, 0.0
    source_connection, target_connection = source.raw_connection(), target.raw_connection()
    try:
        cursor = source_connection.cursor()
        cursor.execute(reading)
        while part := cursor.fetchmany(BULK_BATCH):
            started = time.perf_counter()
            target_connection.cursor().executemany(writing, part)
            target_connection.commit()
            seconds += time.perf_counter() - started
            rows += len(part)
    finally:
        source_connection.close()
        target_connection.close()
    return rows, seconds


def _copy_postgres(source, target, table) -> tuple[int, float]:
    from psycopg import sql
    from sqlalchemy import JSON, select

    columns = list(table.columns)
    as_json = [isinstance(column.type, JSON) for column in columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    rows, seconds = 0, 0.0
    query = select(table).order_by(*_parents_first(table))
    target_connection = target.raw_connection()
    try:
        with source.connect() as reading:
            result = reading.execution_options(yield_per=BULK_BATCH).execute(query)
            for part in result.partitions():
                started = time.perf_counter()
                with target_connection.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in part:
                        values = zip(row, as_json, strict=True)
                        copy.write_row(
                            [json.dumps(v) if j and v is not None else v for v, j in values]
                        )
                target_connection.commit()
                seconds += time.perf_counter() - started
                rows += len(part)
    finally:
        target_connection.close()
    return rows, seconds


# Bookkeeping of runs, jobs and access: not rows the sync writes per record.
NOT_BULK = {"syncrun", "syncrunsource", "jobclaim", "apitoken", "auditentry", "needmapping"}


def bulk_tables():
    """The tables a sync fills, parents before children (every table of the schema but the
    bookkeeping ones, so tables added later are copied too)."""
    from sqlmodel import SQLModel

    import coordination.models  # noqa: F401 (registers the tables)

    return [t for t in SQLModel.metadata.sorted_tables if t.name not in NOT_BULK]


def _parents_first(table) -> list:
    """Primary-key order; a company merged into another comes after the live ones, so that
    row-by-row foreign-key checks (SQLite) find the company it points to."""
    keys = list(table.primary_key.columns)
    if table.name == "company":
        return [table.c.merged_into_id.is_not(None), *keys]
    return keys


# --- printing ---------------------------------------------------------------------------------


def _reader_cpu(step: dict[str, Any]) -> str:
    if not step.get("reader_cpu_seconds"):
        return ""
    return f" (+ reader processes {step['reader_cpu_ms_per_record']:.2f} ms/record)"


def _reader_peak(step: dict[str, Any]) -> str:
    if not step.get("reader_cpu_seconds"):
        return ""
    return f" (reader processes {step['reader_peak_rss_mb']:.0f} MB)"


def print_results(kind: str, out: dict[str, Any]) -> None:
    full, nightly, bulk = out["full"], out["nightly"], out["bulk"]
    target = TARGET_SQLITE if kind == "sqlite" else TARGET_POSTGRES
    nightly_total = nightly["seconds"] + out["flags_nightly"]["seconds"]
    lines = [
        f"== {kind}: {out['records']:,} records, then a nightly delta of "
        f"{out['nightly_records']:,} ({out['load_before']} -> {out['load_after']})",
        _line(
            "full sync",
            f"{full['records_per_second']:,.0f} records/s",
            f"{full['seconds']:.1f} s, CPU {full['cpu_ms_per_record']:.2f} ms/record"
            f"{_reader_cpu(full)}{_server_cpu(full)}, "
            f"peak {full['peak_rss_mb']:.0f} MB{_reader_peak(full)}, flags "
            f"{full['flag_seconds']:.1f} s for {full['flag_companies']:,} companies",
            f"target >= {target:,}/s",
        ),
        _line(
            "bulk insert (same rows)",
            f"{bulk['records_per_second']:,.0f} records/s",
            f"{bulk['seconds']:.1f} s for {bulk['rows']:,} rows ({bulk['method']})",
            f"sync/bulk = {full['records_per_second'] / bulk['records_per_second']:.1%}"
            if bulk["records_per_second"]
            else "",
        ),
        _line(
            "nightly delta sync",
            f"{nightly['seconds']:.1f} s",
            f"{nightly['counts'].get('fetched', 0):,} fetched, CPU {nightly['cpu_seconds']:.1f} s"
            + (
                ""
                if nightly.get("server_cpu_ms_per_record") is None
                else f" (+ PostgreSQL backends {nightly['server_cpu_seconds']:.1f} s)"
            )
            + ", "
            "incremental flags "
            f"{nightly['flag_seconds']:.2f} s for {nightly['flag_companies']:,} companies, "
            f"company index {nightly['parts']['index']:.1f} s, rebuild "
            f"{nightly['parts']['rebuild']:.1f} s, report facts {nightly['parts']['facts']:.1f} s, "
            f"peak {nightly['peak_rss_mb']:.0f} MB",
            f"target < {TARGET_NIGHTLY_SECONDS:.0f} s",
        ),
        _line(
            "nightly flags step",
            f"{out['flags_nightly']['seconds']:.1f} s",
            f"{out['flags_nightly']['companies']:,} companies due "
            f"({out['flags_nightly']['left_out']:,} more left out: the delta evaluated them)",
            f"nightly job total (delta + flags) {nightly_total:.1f} s",
        ),
        _line(
            "flag re-evaluation, all",
            f"{out['flags_full']['seconds']:.1f} s",
            f"{out['flags_full']['companies']:,} companies",
            "",
        ),
        _line("database size", f"{out['database_mb']:.0f} MB", "", ""),
    ]
    if out.get("dump"):
        dump = out["dump"]
        lines.append(_line("pg_dump -Fc", f"{dump['mb']:.0f} MB", f"{dump['seconds']:.1f} s", ""))
    failed = {**full["failed"], **nightly["failed"]}
    if failed:
        lines.append(f"  FAILED SOURCES: {failed}")
    print("\n".join(lines), flush=True)


def _server_cpu(step: dict[str, Any]) -> str:
    server = step.get("server_cpu_ms_per_record")
    return "" if server is None else f" (+ PostgreSQL backends {server:.2f} ms/record)"


def _line(what: str, figure: str, detail: str, target: str) -> str:
    return f"  {what:<26} {figure:>18}  {detail}  {target}".rstrip()


if __name__ == "__main__":
    print(machine())
    sys.exit(main())
