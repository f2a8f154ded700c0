"""Benchmark: the councils' reports for one year over 2,000,000 approaches on PostgreSQL.

Fills an EMPTY PostgreSQL database (created and migrated here if needed; its rows are generated
inside the server with generate_series, so filling takes a minute, not an hour), then times
``competence_needs_report`` for the region and the year for every ``group_by``, and
``coordination_report``, printing the median of several runs. The target: under 2 s each.

    createdb -h 127.0.0.1 -U postgres report_bench
    python benchmarks/report_year.py postgresql+psycopg://postgres@127.0.0.1/report_bench

Then it builds the report facts (``coordination.reports.facts``) as the first refresh after a sync
would, unless ``--live`` asks to count from the approaches. Options: ``--approaches`` in the year
(default 2,000,000; the year before gets a quarter as many, so the previous-period figures have
data), ``--companies`` (300,000), ``--runs`` (3).
Use a throwaway database: ids are written explicitly and sequences are not advanced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time

from sqlalchemy import BigInteger, Integer, String, case, cast, func, insert, literal, select, text
from sqlalchemy.dialects.postgresql import array
from sqlmodel import Session

from coordination.config import Rules
from coordination.db import make_engine, session_scope, upgrade
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Company,
    Need,
    Organisation,
    Source,
    SourceRecord,
)
from coordination.needs.codelists import load_codelists
from coordination.reports import Period
from coordination.reports.competence_needs import CompetenceNeedsRequest, competence_needs_report
from coordination.reports.coordination_report import CoordinationRequest, coordination_report
from coordination.reports.facts import facts_built, refresh_report_facts

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
NOW = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="an empty PostgreSQL database (postgresql+psycopg://...)")
    parser.add_argument("--approaches", type=int, default=2_000_000)
    parser.add_argument("--companies", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--live", action="store_true", help="leave the report facts unbuilt (count from approaches)"
    )
    args = parser.parse_args(argv)
    engine = make_engine(args.url)
    if engine.dialect.name != "postgresql":
        parser.error("the benchmark fills the database with PostgreSQL's generate_series")
    upgrade(args.url)
    with Session(engine) as session:
        if session.execute(select(func.count()).select_from(Approach)).scalar_one():
            print("using the data already in the database")
        else:
            fill(engine, args.approaches, args.companies)
        if args.live:
            print("counting from the approaches: report facts not built")
        elif not facts_built(session):
            build_facts(engine)
    timings = measure(engine, args.runs)
    slowest = max(timings.values())
    if not args.live:
        timings["refresh of the facts of 3,000 companies"] = _median_seconds(
            engine, args.runs, lambda s: _refresh_some(s, args.companies)
        )
    for name, seconds in timings.items():
        print(f"{name:44s} {seconds:6.2f} s (median of {args.runs})")
    print("load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print("target: under 2 s for each report -", "met" if slowest < 2 else "NOT met")
    return 0 if slowest < 2 else 1


# --- data ---------------------------------------------------------------------------------------


def fill(engine, approaches: int, companies: int) -> None:
    codelists = load_codelists()
    municipalities = sorted(codelists.municipalities)
    sections = [*sorted(codelists.industry_sections), None]
    needs = [c.taxonomy_code for c in codelists.competences.values()]
    needs += sorted({o.taxonomy_code for o in codelists.occupations})
    started = time.monotonic()
    with session_scope(engine) as session:
        sources = _organisations_and_sources(session, municipalities)
        _companies(session, companies, municipalities, sections)
        total = approaches + approaches // 4
        _records(session, total, approaches, companies, sources)
        _approaches(session, total)
        _needs(session, total, needs)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    print(f"filled {total:,} approaches in {time.monotonic() - started:.0f} s")


def _organisations_and_sources(session: Session, municipalities: list[str]) -> int:
    kinds = {"jobcenter": "csv-drop", "veu": "rest-json", "vaeksthus": "odata-crm"}
    organisations = [(f"Jobcenter {m}", "jobcenter", m) for m in municipalities]
    organisations += [(f"VEU-center {n}", "veu", None) for n in range(1, 6)]
    organisations += [("Væksthus Midtjylland", "vaeksthus", None)]
    for number, (name, kind, municipality) in enumerate(organisations, start=1):
        session.add(
            Organisation(
                id=number,
                name=name,
                name_key=name.casefold(),
                type=kind,
                municipality_code=municipality,
            )
        )
        session.flush()
        session.add(
            Source(id=number, name=f"source-{number}", kind=kinds[kind], organisation_id=number)
        )
    session.flush()
    return len(organisations)


def _companies(session: Session, count: int, municipalities: list[str], sections: list) -> None:
    g = func.generate_series(1, count).table_valued("value").render_derived(name="g")
    n = g.c.value
    name = literal("Virksomhed ").concat(cast(n, String))
    session.execute(
        insert(Company).from_select(
            ["id", "name", "name_key", "municipality_code", "industry_section", "created_at"],
            select(
                n,
                name,
                func.lower(name),
                array(municipalities)[1 + n % len(municipalities)],
                array(sections)[1 + (n * 7) % len(sections)],
                literal(NOW),
            ),
        )
    )


def _records(session: Session, total: int, in_year: int, companies: int, sources: int) -> None:
    g = func.generate_series(1, total).table_valued("value").render_derived(name="g")
    n = g.c.value
    # The first ``in_year`` records fall in the year, the rest in the year before.
    day = cast((cast(n, BigInteger) * 13) % 365, Integer)
    date = literal(YEAR.start) + day - case((n > in_year, 365), else_=0)
    session.execute(
        insert(SourceRecord).from_select(
            [
                "id",
                "source_id",
                "external_id",
                "content_hash",
                "status",
                "approach_date",
                "channel",
                "joint_with",
                "payload",
                "first_seen_at",
                "last_seen_at",
                "company_id",
            ],
            select(
                n,
                1 + n % sources,
                cast(n, String),
                literal("0" * 64),
                literal("completed"),
                date,
                literal("visit"),
                cast(literal("[]"), SourceRecord.joint_with.type),
                cast(literal("{}"), SourceRecord.payload.type),
                literal(NOW),
                literal(NOW),
                1 + (cast(n, BigInteger) * 7919) % companies,
            ),
        )
    )


def _approaches(session: Session, total: int) -> None:
    record = SourceRecord.__table__
    session.execute(
        insert(Approach).from_select(
            [
                "id",
                "group_key",
                "company_id",
                "date",
                "channel",
                "planned",
                "joint",
                "coordinated",
                "organisations",
                "consultants",
            ],
            select(
                record.c.id,
                record.c.id,
                record.c.company_id,
                record.c.approach_date,
                record.c.channel,
                literal(False),
                literal(False),
                record.c.id % 10 != 0,
                cast(literal("[]"), Approach.organisations.type),
                cast(literal("[]"), Approach.consultants.type),
            ).where(record.c.id.between(1, total)),
        )
    )
    session.execute(
        insert(ApproachRecord).from_select(
            ["source_record_id", "approach_id"], select(record.c.id, record.c.id)
        )
    )
    session.execute(
        insert(ApproachOrganisation).from_select(
            ["approach_id", "organisation_id"],
            select(record.c.id, Source.organisation_id).join(
                Source, Source.id == record.c.source_id
            ),
        )
    )


def _needs(session: Session, total: int, taxonomy: list[str]) -> None:
    record = SourceRecord.__table__
    # Every record notes one need, every third a second one; 1 in 20 maps nowhere.
    for shift, where in ((0, record.c.id > 0), (5, record.c.id % 3 == 0)):
        code = array(taxonomy)[1 + (record.c.id * 31 + shift) % len(taxonomy)]
        need_type = case((code.like("komp:%"), "upskilling"), else_="recruitment")
        session.execute(
            insert(Need).from_select(
                ["source_record_id", "type", "label", "taxonomy_code", "mapping_method"],
                select(record.c.id, need_type, literal("behov"), code, literal("exact")).where(
                    where
                ),
            )
        )
    need = Need.__table__
    session.execute(
        need.update()
        .where(need.c.source_record_id % 20 == 0)
        .values(taxonomy_code=None, mapping_method="none")
    )


def build_facts(engine) -> None:
    """The report facts of every company, as the first refresh after a sync builds them."""
    started = time.monotonic()
    with session_scope(engine) as session:
        refresh_report_facts(session)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("reportneedfact", "reportneedmonth", "reportapproachfact"):
            connection.execute(text(f"VACUUM ANALYZE {table}"))
    print(f"built the report facts in {time.monotonic() - started:.0f} s")


# --- timing -------------------------------------------------------------------------------------


def measure(engine, runs: int) -> dict[str, float]:
    timings = {}
    for group_by in ("sector", "municipality", "organisation_type"):
        request = CompetenceNeedsRequest("region-midtjylland", YEAR, group_by)
        timings[f"competence-needs group_by={group_by}"] = _median_seconds(
            engine, runs, lambda s, r=request: competence_needs_report(s, r)
        )
    request = CoordinationRequest("region-midtjylland", YEAR)
    timings["coordination"] = _median_seconds(
        engine, runs, lambda s: coordination_report(s, request, Rules())
    )
    return timings


def _refresh_some(session: Session, companies: int) -> None:
    """What the end of a nightly delta asks for: the facts of about 3,000 touched companies
    (2,777 in the 200,000-approach workload), spread over the whole table."""
    refresh_report_facts(session, range(1, companies + 1, max(1, companies // 3000)))
    session.commit()


def _median_seconds(engine, runs: int, build) -> float:
    seconds = []
    for _ in range(runs):
        with Session(engine) as session:
            started = time.perf_counter()
            build(session)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


if __name__ == "__main__":
    sys.exit(main())
