"""Benchmark: the nightly job on a filled database (issue 9: a nightly delta of 5,000 records on
top of 2,000,000 approaches in under 10 s, flag re-evaluation included).

``sync_throughput.py`` measures the nightly delta on top of a base it syncs itself, which takes
too long at 2,000,000 approaches. This script takes a database filled by ``bulk_fill.py`` (or
synced) instead and, on a copy of it (PostgreSQL: ``CREATE DATABASE ... TEMPLATE``, retried while
the template is in use; SQLite: a copy of the file; dropped afterwards):

1. **prepares it as a nightly run finds it** (untimed, printed): the report facts built (the
   first sync after a fill builds them for every company), the API sources' cursors at
   yesterday;
2. **builds a realistic delta** of ``--delta`` records: the last records before the CRM's planned
   appointments of a generated scenario that ends today (``coordination.demo.generator``, so the
   records are dated in the last days and carry the generator's noise, joint visits, double
   entries, cancellations, deletions and bad records). A share (``--existing``, default 75%) of
   the scenario's companies become companies of the database: its records get that company's
   CVR number (missing, mistyped or formatted where the generator's was), name (in the
   generator's variant: upper case, without the legal form, ...), address and P-number. Those
   companies are picked as the companies of random approaches, so a company is picked as often
   as it is visited and the busiest histories come up as they would. The others stay new
   companies. The scenario's six sources become six stored sources (the CRM, three jobcentres,
   two VEU centres) and their organisation names in the joint-visit fields follow;
3. **serves it through the real connectors**: the fake OData CRM and VEU APIs and the CSV drops
   of ``common.py``, with one configured source per stored source (the others deliver nothing,
   as on a quiet night);
4. **runs the nightly job's steps**, each in a fresh process: the sync (its parts timed: loading
   the company index, storing and linking, rebuilding the touched companies, their flags, the
   report facts' refresh), the ``flags`` step over the companies due since a successful run
   yesterday (their sum is the figure the target is about), and the retention step.

    python benchmarks/bulk_fill.py postgresql+psycopg://postgres@127.0.0.1/bench2m
    python benchmarks/nightly_on_filled.py postgresql+psycopg://postgres@127.0.0.1/bench2m

``--in-place`` uses the database itself instead of a copy (it is changed). ``--profile DIR`` runs
the sync under cProfile and prints its top functions (a profiled run's times are not figures;
``--profile-clock cpu`` counts the process's CPU time, without the waits for the server).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import (
    POSTGRES_ADMIN_URL,
    DropFolders,
    FakeSources,
    SyncSetup,
    in_child,
    load_text,
    machine,
    read_deliveries,
    sync_setup,
    write_deliveries,
)
from sync_throughput import TARGET_NIGHTLY_SECONDS, flags_step, print_profiles, sync_step

ORGANISATION_KINDS = {"vaeksthus": "crm", "jobcenter": "jobcenter", "veu": "veu"}
# The delta's scenario: ten times the delta over 30 days, so the delta spans the last few days.
SCENARIO_DAYS = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a filled database (bulk_fill.py); it is copied first")
    parser.add_argument("--delta", type=int, default=5_000, help="records in the nightly delta")
    parser.add_argument("--existing", type=float, default=0.75, help="share of known companies")
    parser.add_argument("--companies", type=int, default=30_000, help="the scenario's companies")
    parser.add_argument("--seed", type=int, default=2014)
    parser.add_argument("--in-place", action="store_true", help="use the database, not a copy")
    parser.add_argument("--wait", type=float, default=900, help="seconds to retry the copy")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--profile", type=Path, help="run the sync under cProfile (its times are not figures)"
    )
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what the profile counts: elapsed time, or the process's CPU time",
    )
    args = parser.parse_args(argv)
    print(machine(), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="coordination-nightly-") as workdir,
        copied_database(args.url, args.in_place, Path(workdir), args.wait) as url,
    ):
        out = run(
            url,
            Path(workdir),
            args.delta,
            args.existing,
            args.companies,
            args.seed,
            args.profile,
            args.profile_clock,
        )
    print_results(out)
    if args.profile:
        print_profiles({"nightly delta": str(args.profile / "nightly-sync.pstats")})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


def run(
    url: str,
    workdir: Path,
    delta: int,
    existing: float,
    companies: int,
    seed: int,
    profile: Path | None = None,
    profile_clock: str = "wall",
) -> dict[str, Any]:
    out: dict[str, Any] = {"url": url.rsplit("@", 1)[-1], "load_before": load_text()}
    out["prepare"] = in_child(prepare_step, url)
    print_prepared(out["prepare"])
    folder = workdir / "delta"
    folder.mkdir()
    out["delta"] = in_child(delta_step, url, str(folder), delta, existing, companies, seed)
    print_delta(out["delta"])
    deliveries = read_deliveries(folder)
    with FakeSources(deliveries) as fakes:
        drops = DropFolders(deliveries, workdir / "drops")
        setup = sync_setup(url, deliveries, fakes, drops)
        fakes.reveal_nightly()
        drops.add_nightly()
        out["load_start"] = load_text()
        if profile:
            profile.mkdir(parents=True, exist_ok=True)
        pstats = str(profile / "nightly-sync.pstats") if profile else None
        out["sync"] = in_child(sync_step, setup, pstats, profile_clock)
        out["flags"] = in_child(flags_step, url, True, out["sync"].pop("evaluated"))
        out["retention"] = in_child(retention_step, setup)
    out["linked"] = in_child(linked_step, url, out["prepare"]["last_ids"])
    out["load_after"] = load_text()
    return out


# --- the database -----------------------------------------------------------------------------


@contextlib.contextmanager
def copied_database(url: str, in_place: bool, workdir: Path, wait: float) -> Iterator[str]:
    """A copy of ``url`` (or ``url`` itself), dropped afterwards."""
    if in_place:
        yield url
        return
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        copy = workdir / f"copy-{path.name}"
        started = time.monotonic()
        with _sqlite_connection(path) as source, _sqlite_connection(copy) as target:
            source.backup(target)  # consistent even with a WAL beside the file
        print(f"copied {path} in {time.monotonic() - started:.0f} s", flush=True)
        yield f"sqlite:///{copy}"
        return
    import psycopg
    from psycopg import sql

    template = url.rsplit("/", 1)[1].split("?", 1)[0]
    name = f"bench_scale_{os.getpid()}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)
    )
    started = time.monotonic()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        while True:
            try:
                admin.execute(create)
                break
            except psycopg.errors.ObjectInUse:  # someone is connected to the template
                if time.monotonic() - started > wait:
                    raise
                time.sleep(5)
    print(f"copied {template} to {name} in {time.monotonic() - started:.0f} s", flush=True)
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


@contextlib.contextmanager
def _sqlite_connection(path: Path):
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        yield connection
    finally:
        connection.close()


# --- steps (each in a fresh process) ----------------------------------------------------------


def prepare_step(url: str) -> dict[str, Any]:
    """The database as a nightly run finds it: migrated to the code's schema (a database filled
    before a newer migration gets it), report facts built, the API sources' cursors at
    yesterday, the jobcentres' cursors set (no file of the delta read yet); and its size."""
    from sqlalchemy import func, select

    from connectors.odata_crm import STATE_KEY as CRM_CURSOR
    from connectors.rest_json import STATE_KEY as VEU_CURSOR
    from coordination.db import make_engine, session_scope, upgrade
    from coordination.models import Approach, Company, Organisation, Source, SourceRecord
    from coordination.reports.facts import facts_built, refresh_report_facts

    upgrade(url)
    engine = make_engine(url)
    out: dict[str, Any] = {}
    with session_scope(engine) as session:
        out["approaches"] = session.execute(select(func.count()).select_from(Approach)).scalar()
        out["companies"] = session.execute(select(func.count()).select_from(Company)).scalar()
        out["facts_built_before"] = facts_built(session)
        out["last_ids"] = [
            session.execute(select(func.max(table.id))).scalar() or 0
            for table in (SourceRecord, Company)
        ]
    started = time.perf_counter()
    with session_scope(engine) as session:
        if not facts_built(session):
            refresh_report_facts(session)  # analyses the fact tables it builds
    out["facts_seconds"] = time.perf_counter() - started
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    cursors = {"vaeksthus": CRM_CURSOR, "veu": VEU_CURSOR}
    with session_scope(engine) as session:
        for source, kind in session.execute(
            select(Source, Organisation.type).join(
                Organisation, Organisation.id == Source.organisation_id
            )
        ):
            if kind in cursors:
                source.state = {cursors[kind]: yesterday.strftime("%Y-%m-%dT%H:%M:%SZ")}
            elif source.state is None:  # a jobcentre: its earlier files read (none kept here)
                source.state = {"files": {}}
    engine.dispose()
    return out


def retention_step(setup: SyncSetup) -> dict[str, Any]:
    """The nightly job's retention step (the default retention periods)."""
    from coordination.db import make_engine, session_scope
    from coordination.privacy import apply_retention

    config = setup.config()
    engine = make_engine(config.database_url)
    started = time.perf_counter()
    with session_scope(engine) as session:
        result = apply_retention(session, config)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds} | dataclasses.asdict(result)


def linked_step(url: str, last_ids: list[int]) -> dict[str, Any]:
    """Where the delta's records went: to companies that were in the database before, to new
    ones, or to none (quarantined or unresolved)."""
    from sqlalchemy import case, func, select

    from coordination.db import make_engine, session_scope
    from coordination.models import SourceRecord

    last_record, last_company = last_ids
    where = case(
        (SourceRecord.company_id.is_(None), "none"),
        (SourceRecord.company_id <= last_company, "known"),
        else_="new",
    )
    engine = make_engine(url)
    with session_scope(engine) as session:
        rows = session.execute(
            select(where, func.count(), func.count(SourceRecord.company_id.distinct()))
            .where(SourceRecord.id > last_record)
            .group_by(where)
        ).all()
    engine.dispose()
    went = {name: {"records": records, "companies": companies} for name, records, companies in rows}
    return {"went": went}


def delta_step(
    url: str, folder: str, delta: int, existing: float, companies: int, seed: int
) -> dict[str, Any]:
    """Write the delta's deliveries into ``folder`` (see the module doc); what it holds."""
    from coordination.db import make_engine, session_scope
    from coordination.demo.generator import Scenario, deliveries
    from coordination.timeutil import local_today

    started = time.perf_counter()
    today = local_today()
    scenario = Scenario.scale(
        approaches=10 * delta,
        companies=companies,
        seed=seed,
        start=today - dt.timedelta(days=SCENARIO_DAYS),
        end=today,
    )
    items: collections.deque = collections.deque(maxlen=delta)
    for item in deliveries(scenario):
        if item.truth.state == "planned":
            break
        items.append(item)
    keys = sorted({i.truth.company_key for i in items if i.truth.company_key is not None})
    pick = random.Random(seed)
    known_keys = [key for key in keys if pick.random() < existing]
    engine = make_engine(url)
    with session_scope(engine) as session:
        stored = stored_sources(session)
        targets = known_companies(session, len(known_keys), pick)
    engine.dispose()
    names = source_names(scenario, stored)
    organisations = {org: stored[names[name]][0] for name, org, _ in scenario.sources()}
    rewrite = Rewriter(dict(zip(known_keys, targets, strict=False)), organisations, pick)
    rewritten = [rewrite(item, names[item.source_name]) for item in items]
    sources = [(name, *stored[name]) for name in stored]
    files = write_deliveries(Path(folder), scenario, sources, rewritten, len(rewritten))
    manifest = {
        "workload": {"delta": delta, "existing": existing, "companies": companies, "seed": seed},
        "sources": [dataclasses.asdict(s) for s in files],
        "generated_seconds": round(time.perf_counter() - started, 1),
    }
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    known = {key for key in known_keys if key in rewrite.targets}
    return {
        "records": len(rewritten),
        "days": sorted({_day(item) for item in items} - {None}),
        "by_source": {s.name: s.nightly for s in files if s.nightly},
        "scenario_companies": len(keys),
        "known_companies": len(known),
        "records_of_known": sum(1 for i in items if i.truth.company_key in known),
        "known_approaches": sum(t.approaches for t in targets),
        "busiest_known": max((t.approaches for t in targets), default=0),
        "sources_configured": len(stored),
        "seconds": time.perf_counter() - started,
    }


def _day(item) -> str | None:
    """The record's day as ISO text (None for a bad record)."""
    if item.truth.quarantine:
        return None
    payload = item.payload
    value = str(payload.get("scheduledstart") or payload.get("date") or payload.get("Dato"))
    if value[2:3] in (".", "-"):  # a jobcentre's dd.mm.yyyy or dd-mm-yyyy
        return f"{value[6:10]}-{value[3:5]}-{value[:2]}"
    return value[:10]


# --- the delta's shape --------------------------------------------------------------------------


def stored_sources(session) -> dict[str, tuple[str, str, str | None]]:
    """Every stored source, in id order: name -> (organisation, kind (crm, jobcenter, veu),
    municipality code). A source of an organisation of another type is left out."""
    from sqlalchemy import select

    from coordination.models import Organisation, Source

    rows = session.execute(
        select(Source.name, Organisation.name, Organisation.type, Organisation.municipality_code)
        .join(Organisation, Organisation.id == Source.organisation_id)
        .order_by(Source.id)
    ).all()
    return {
        name: (organisation, ORGANISATION_KINDS[kind], code)
        for name, organisation, kind, code in rows
        if kind in ORGANISATION_KINDS
    }


def source_names(scenario, stored: dict[str, tuple[str, str, str | None]]) -> dict[str, str]:
    """The stored source that stands in for each of the scenario's sources: of the same kind,
    a jobcentre of the same municipality where there is one."""
    municipality = {name: code for name, _, code in scenario.jobcentres}
    free = dict(stored)
    names = {}
    for name, _, kind in scenario.sources():
        same_kind = [s for s, (_, k, _) in free.items() if k == kind]
        same_place = [s for s in same_kind if free[s][2] == municipality.get(name)]
        if not same_kind:
            raise SystemExit(f"the database has too few sources of kind {kind} for the delta")
        names[name] = (same_place or same_kind)[0]
        del free[names[name]]
    return names


@dataclasses.dataclass(frozen=True)
class Target:
    """A company of the database that a scenario company becomes."""

    id: int
    cvr: str
    name: str
    address: str
    postcode: str
    city: str
    p_number: str | None
    approaches: int


def known_companies(session, count: int, pick: random.Random) -> list[Target]:
    """``count`` distinct live companies with a CVR number, each the company of a random
    approach (so picked as often as visited)."""
    from sqlalchemy import func, select

    from coordination.models import Approach, Company, ProductionUnit

    low, high = session.execute(select(func.min(Approach.id), func.max(Approach.id))).one()
    chosen: dict[int, None] = {}
    for _ in range(50):
        if len(chosen) >= count or low is None:
            break
        ids = [pick.randint(low, high) for _ in range(2 * (count - len(chosen)) + 10)]
        live = Company.cvr.is_not(None) & Company.merged_into_id.is_(None)
        company_of = dict(
            session.execute(
                select(Approach.id, Approach.company_id)
                .join(Company, Company.id == Approach.company_id)
                .where(Approach.id.in_(ids), live)
            ).all()
        )
        for approach_id in ids:  # in the order drawn: the same picks on every database
            if approach_id in company_of and len(chosen) < count:
                chosen.setdefault(company_of[approach_id])
    ids = list(chosen)
    unit = (
        select(func.min(ProductionUnit.p_number))
        .where(ProductionUnit.company_id == Company.id)
        .scalar_subquery()
    )
    visits = select(func.count()).where(Approach.company_id == Company.id).scalar_subquery()
    rows = {}
    for start in range(0, len(ids), 5_000):
        for row in session.execute(
            select(
                Company.id,
                Company.cvr,
                Company.name,
                Company.address,
                Company.postcode,
                Company.city,
                unit,
                visits,
            ).where(Company.id.in_(ids[start : start + 5_000]))
        ):
            rows[row[0]] = Target(*(row[:3]), *(v or "" for v in row[3:6]), row[6], row[7])
    return [rows[i] for i in ids if i in rows]


class Rewriter:
    """A scenario record as a record of the company of the database it stands for (if any),
    keeping the record's noise; the source's organisation names in its joint-visit field."""

    LEGAL_FORMS = ("ApS", "A/S", "I/S", "IVS", "A.m.b.a.")

    def __init__(self, targets: dict[str, Target], organisations: dict[str, str], pick) -> None:
        self.targets = targets
        self.organisations = organisations
        self.pick = pick

    def __call__(self, item, source_name: str):
        payload = json.loads(json.dumps(item.payload))
        target = self.targets.get(item.truth.company_key)
        if item.kind == "crm":
            account = payload.get("regardingobjectid_account") or {}
            fields = ("cr_cvr", "name", "address1_line1", "address1_postalcode", "address1_city")
            self._company(account, target, item.truth, fields, "cr_pnumber", "")
            payload["cr_jointwith"] = self._joint(payload.get("cr_jointwith"), ";")
        elif item.kind == "veu":
            company = payload.get("company") or {}
            fields = ("cvr", "name", "address", "postcode", "city")
            self._company(company, target, item.truth, fields, "p_number", None)
            if isinstance(payload.get("joint_with"), list):
                payload["joint_with"] = [
                    self.organisations.get(o, o) for o in payload["joint_with"]
                ]
        else:
            fields = ("CVR", "Virksomhed", "Adresse", "Postnr", "By")
            self._company(payload, target, item.truth, fields, "PNummer", "")
            payload["KoordineretMed"] = self._joint(payload.get("KoordineretMed"), "|")
        return item._replace(source_name=source_name, payload=payload)

    def _company(self, company: dict, target, truth, fields, p_field: str, empty) -> None:
        if target is None or not company:
            return
        cvr, name, address, postcode, city = fields
        if company.get(cvr):
            company[cvr] = self._cvr(target.cvr, truth.cvr_noise, str(company[cvr]))
        if company.get(name):
            company[name] = self._name(target.name, truth.name_noise)
        company[address], company[postcode], company[city] = (
            target.address,
            target.postcode,
            target.city,
        )
        if company.get(p_field):
            company[p_field] = target.p_number or empty

    def _cvr(self, cvr: str, noise: str, written: str) -> str:
        if noise == "mistyped":
            digits = list(cvr)
            i = self.pick.randrange(len(digits) - 1)
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            if digits == list(cvr):
                digits[i] = str((int(digits[i]) + 1) % 10)
            return "".join(digits)
        if noise == "formatted":
            if " " in written:
                return f"{cvr[:2]} {cvr[2:4]} {cvr[4:6]} {cvr[6:]}"
            return ("DK-" if written.startswith("DK-") else "DK") + cvr
        return cvr

    def _name(self, name: str, noise: str) -> str:
        words = name.split()
        if noise in ("form_dropped", "form_changed") and words[-1] in self.LEGAL_FORMS:
            return " ".join(words[:-1])
        if noise == "case":
            return name.upper()
        if noise == "folded":
            return name.replace("æ", "ae").replace("ø", "oe").replace("å", "aa")
        if noise == "typo" and len(words[0]) >= 4:
            w = words[0]
            return " ".join([w[0] + w[2] + w[1] + w[3:], *words[1:]])
        return name

    def _joint(self, value, separator: str):
        if not isinstance(value, str) or not value:
            return value
        return separator.join(self.organisations.get(o, o) for o in value.split(separator))


# --- printing ---------------------------------------------------------------------------------


def print_prepared(prepared: dict[str, Any]) -> None:
    print(
        f"database: {prepared['approaches']:,} approaches, {prepared['companies']:,} companies; "
        f"report facts {'were built' if prepared['facts_built_before'] else 'built'} "
        f"({prepared['facts_seconds']:.0f} s)",
        flush=True,
    )


def print_delta(delta: dict[str, Any]) -> None:
    days = delta["days"]
    print(
        f"delta: {delta['records']:,} records dated {days[0] if days else '-'} .. "
        f"{days[-1] if days else '-'}, of {delta['scenario_companies']:,} companies: "
        f"{delta['known_companies']:,} known ({delta['records_of_known']:,} records; their "
        f"histories {delta['known_approaches']:,} approaches, the longest "
        f"{delta['busiest_known']:,}), the others new; {delta['sources_configured']} sources "
        f"configured; by source {delta['by_source']} (built in {delta['seconds']:.0f} s)",
        flush=True,
    )


def print_results(out: dict[str, Any]) -> None:
    sync, flags, retention = out["sync"], out["flags"], out["retention"]
    parts = sync["parts"]
    rest = sync["seconds"] - sum(parts.values())
    total = sync["seconds"] + flags["seconds"]
    counts = sync["counts"]
    lines = [
        f"== nightly job on {out['url']} ({out['load_start']} -> {out['load_after']})",
        _line(
            "delta sync",
            f"{sync['seconds']:.1f} s",
            f"{counts.get('fetched', 0):,} fetched ({counts.get('new', 0):,} new, "
            f"{counts.get('quarantined', 0):,} quarantined), peak {sync['peak_rss_mb']:.0f} MB",
        ),
        _line("  company index", f"{parts['index']:.1f} s", "loading IdentityStage"),
        _line("  fetch, store, link", f"{rest:.1f} s", "the rest of the sync"),
        _line("  rebuild companies", f"{parts['rebuild']:.1f} s", "display fields, approaches"),
        _line(
            "  flags (incremental)",
            f"{parts['flags']:.1f} s",
            f"{sync['flag_companies']:,} companies, {sync['flags_raised']:,} flags raised",
        ),
        _line("  report facts", f"{parts['facts']:.1f} s", "refresh of the touched companies"),
        _line(
            "flags step",
            f"{flags['seconds']:.1f} s",
            f"{flags['companies']:,} companies due ({flags['left_out']:,} more left out: the "
            f"sync evaluated them), peak {flags['peak_rss_mb']:.0f} MB",
        ),
        _line(
            "nightly job total",
            f"{total:.1f} s",
            f"sync + flags step; target < {TARGET_NIGHTLY_SECONDS:.0f} s",
        ),
        _line(
            "retention step",
            f"{retention['seconds']:.1f} s",
            f"the job's third step; with it {total + retention['seconds']:.1f} s",
        ),
        "  CPU seconds (this process + database server), steadier than the wall clock on a "
        "loaded machine:",
        _cpu_line("delta sync", sync["cpu_seconds"], sync["server_cpu_seconds"]),
        *(
            _cpu_line(f"  {name}", sync["parts_cpu"][part], sync["parts_server_cpu"][part])
            for name, part in _PARTS
        ),
        _cpu_line("  fetch, store, link", *_rest_cpu(sync)),
        _cpu_line("flags step", flags["cpu_seconds"], flags["server_cpu_seconds"]),
        _cpu_line(
            "nightly job total",
            sync["cpu_seconds"] + flags["cpu_seconds"],
            sync["server_cpu_seconds"] + flags["server_cpu_seconds"],
        ),
    ]
    linked = out["linked"]["went"]
    lines.append(
        "  the delta's records went to: "
        + ", ".join(
            f"{kind} companies {v['records']:,} records ({v['companies']:,} companies)"
            if kind != "none"
            else f"no company {v['records']:,}"
            for kind, v in sorted(linked.items())
        )
    )
    if sync["failed"]:
        lines.append(f"  FAILED SOURCES: {sync['failed']}")
    print("\n".join(lines), flush=True)


def _line(what: str, figure: str, detail: str) -> str:
    return f"  {what:<24} {figure:>9}  {detail}".rstrip()


_PARTS = (
    ("company index", "index"),
    ("rebuild companies", "rebuild"),
    ("flags (incremental)", "flags"),
    ("report facts", "facts"),
)


def _cpu_line(what: str, client: float, server: float) -> str:
    return _line(what, f"{client + server:.1f} s", f"{client:.2f} + {server:.2f} s")


def _rest_cpu(sync: dict[str, Any]) -> tuple[float, float]:
    """The sync's CPU seconds outside the timed parts: the process's and the server's."""
    client = sync["cpu_seconds"] - sum(sync["parts_cpu"].values())
    return client, sync["server_cpu_seconds"] - sum(sync["parts_server_cpu"].values())


if __name__ == "__main__":
    sys.exit(main())
