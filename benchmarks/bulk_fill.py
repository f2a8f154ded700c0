"""Fill an empty, migrated database with a realistic consultant-facing history, fast.

For the prior-contact and page benchmarks (issues 4, 8, 9): ``--companies`` companies (default
300,000; about 1 in 11 without a CVR number, some with production units, most with a contact
person) and ``--approaches`` approaches (default 2,000,000) over the three years up to today,
2% of them planned in the next two months, each with its source record, organisation, one or
two needs and sometimes a note. One company in a thousand gets about a hundred times the
usual number of approaches (the few companies every system visits). Then the coordination
rules run over every company (``flagging.evaluate_companies``), so the stored coordination
state and flags are what the nightly job would leave, and checks exist for a third of the
companies.

Rows are generated inside the database server (PostgreSQL: ``generate_series``; SQLite: a
recursive CTE) with ``INSERT ... SELECT``; companies are built in Python (their names need the
normaliser) and inserted with COPY (PostgreSQL) or ``executemany`` (SQLite). Organisations and
sources come from ``report_year.py``.

    python benchmarks/bulk_fill.py postgresql+psycopg://postgres@127.0.0.1/bench
    python benchmarks/bulk_fill.py sqlite:////tmp/bench.db --approaches 200000 --companies 30000

The database is migrated here if needed and must hold no approaches.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from report_year import _organisations_and_sources
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    select,
    table,
    text,
)
from sqlmodel import Session, SQLModel

from coordination.config import Rules
from coordination.db import make_engine, session_scope, upgrade
from coordination.flagging import all_company_ids, evaluate_companies
from coordination.identity.normalise import normalise_company_name, normalise_organisation_name
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Company,
    ContactPerson,
    Need,
    Organisation,
    PriorContactCheck,
    ProductionUnit,
    Source,
    SourceRecord,
    utcnow,
)
from coordination.needs.codelists import load_codelists
from coordination.timeutil import local_today

HISTORY_DAYS = 3 * 365
PLANNED_SHARE = 50  # one record in 50 is planned ahead
BUSY_COMPANIES = 300  # per 300,000 companies; they get a tenth of all approaches
FIRST_WORDS = (  # noqa: SIM905 (word lists read better as text)
    "Madsen Bøgh Nordic Jysk Aarhus Vestas Kjær Holm Dansk Midt Skov Vest Lund Hansen Nielsen "
    "Sørensen Møller Thomsen Østergaard Bjerg Viborg Herning Silkeborg Randers Djurs Fjord Mølle "
    "Smed Stål Tømrer Murer Bager Grøn Blå Nord Syd Øst"
).split()
SECOND_WORDS = (  # noqa: SIM905
    "Maskinfabrik Entreprise Transport Byg Service Consult Teknik Handel Design Logistik Elektro "
    "VVS Automation Plast Metal Træ Food Agro Energi Data Rengøring Catering Montage Værktøj "
    "Industri Marine Farm Auto Print Media Optik Pleje Klinik Tag Glas Beton Lak Vinduer Koncept"
).split()
LEGAL_FORMS = ("ApS", "A/S", "I/S", "", "IVS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="an empty database (postgresql+psycopg://... or sqlite:///...)")
    parser.add_argument("--approaches", type=int, default=2_000_000)
    parser.add_argument("--companies", type=int, default=300_000)
    args = parser.parse_args(argv)
    upgrade(args.url)
    engine = make_engine(args.url)
    fill(engine, args.approaches, args.companies)
    engine.dispose()
    return 0


def fill(engine, approaches: int, companies: int, today: dt.date | None = None) -> None:
    """Fill ``engine``'s empty database (see the module doc); prints each step's time."""
    today = today or local_today()
    with Session(engine) as session:
        if session.execute(select(func.count()).select_from(Approach)).scalar_one():
            raise SystemExit("the database already holds approaches: use an empty one")
    started = time.monotonic()
    steps = [
        ("organisations and sources", lambda s: _sources(s)),
        ("companies", lambda s: _companies(s, companies)),
        ("units and contact persons", lambda s: _units_and_contacts(s)),
        ("source records", lambda s: _records(s, approaches, companies, today)),
        ("approaches", lambda s: _approaches(s)),
        ("needs", lambda s: _needs(s)),
        ("checks", lambda s: _checks(s, companies, today)),
    ]
    for name, step in steps:
        _timed(engine, name, step)
    _finish(engine)
    _timed(engine, "coordination rules", lambda s: _evaluate(s, today))
    _finish(engine)
    print(f"filled {approaches:,} approaches in {time.monotonic() - started:.0f} s", flush=True)


def _timed(engine, name: str, step) -> None:
    started = time.monotonic()
    with session_scope(engine) as session:
        step(session)
    print(f"  {name:28s} {time.monotonic() - started:6.1f} s", flush=True)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def series(session: Session, count: int):
    """A selectable of one integer column ``value``: 1 .. ``count``."""
    if _is_postgres(session):
        values = func.generate_series(1, count).table_valued(column("value", Integer))
        return values.render_derived(name="g")
    numbers = select(literal(1, Integer).label("value")).cte("g", recursive=True)
    return numbers.union_all(select(numbers.c.value + 1).where(numbers.c.value < count))


# --- organisations, sources, companies ---------------------------------------------------------


def _sources(session: Session) -> None:
    municipalities = sorted(load_codelists().municipalities)
    _organisations_and_sources(session, municipalities)
    for organisation in session.execute(select(Organisation)).scalars():
        organisation.name_key = normalise_organisation_name(organisation.name)
    now = utcnow()
    for source in session.execute(select(Source)).scalars():
        source.last_success_at, source.last_status = now, "succeeded"


def company_rows(count: int) -> list[tuple]:
    """(id, cvr, name, name_key, address, postcode, city, municipality_code, industry_section,
    size_band) for companies 1 .. ``count``; deterministic."""
    codelists = load_codelists()
    places = [
        (postcode, city, municipality.code)
        for municipality in codelists.municipalities.values()
        for postcode, city in sorted(municipality.postcodes.items())
    ]
    sections = sorted(codelists.industry_sections)
    bands = ("0-9", "10-49", "50-249", "250+")
    rows = []
    for n in range(1, count + 1):
        words = (n % len(FIRST_WORDS), (n // 7) % len(SECOND_WORDS), n % len(LEGAL_FORMS))
        name = f"{FIRST_WORDS[words[0]]} {SECOND_WORDS[words[1]]} {n % 997} {LEGAL_FORMS[words[2]]}"
        name = name.strip()
        postcode, city, municipality = places[(n * 31) % len(places)]
        rows.append(
            (
                n,
                _cvr(n),
                name,
                normalise_company_name(name),
                f"Industrivej {n % 200 + 1}",
                postcode,
                city,
                municipality,
                sections[(n * 7) % len(sections)],
                bands[n % len(bands)],
            )
        )
    return rows


def _cvr(n: int) -> str | None:
    """A valid CVR number for ``n``, or None for the one prefix in 11 that has no check digit
    (those companies stay unresolved, as some do in real data)."""
    prefix = f"{1_000_000 + n * 3:07d}"
    total = sum(int(d) * w for d, w in zip(prefix, (2, 7, 6, 5, 4, 3, 2), strict=True))
    check = (11 - total % 11) % 11
    return None if check == 10 else prefix + str(check)


_COMPANY_COLUMNS = (  # noqa: SIM905
    "id cvr name name_key address postcode city municipality_code industry_section size_band"
).split()


def _companies(session: Session, count: int) -> None:
    rows = company_rows(count)
    now = utcnow()
    if _is_postgres(session):
        cursor = session.connection().connection.driver_connection.cursor()
        names = ", ".join([*_COMPANY_COLUMNS, "created_at"])
        with cursor.copy(f"COPY company ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, now))
        return
    session.execute(
        insert(Company),
        [dict(zip(_COMPANY_COLUMNS, row, strict=True)) | {"created_at": now} for row in rows],
    )


def _units_and_contacts(session: Session) -> None:
    company = Company.__table__
    session.execute(
        insert(ProductionUnit).from_select(
            ["p_number", "company_id", "address", "postcode", "city"],
            select(
                cast(literal(1_000_000_000) + company.c.id, String),
                company.c.id,
                company.c.address,
                company.c.postcode,
                company.c.city,
            ).where(company.c.id % 3 == 0),
        )
    )
    person = literal("Kontakt ").concat(cast(company.c.id, String))
    session.execute(
        insert(ContactPerson).from_select(
            ["company_id", "person_key", "name", "email", "phone", "last_seen_on"],
            select(
                company.c.id,
                func.lower(person),
                person,
                literal("kontakt").concat(cast(company.c.id, String)).concat("@example.dk"),
                literal("+45 70 ").concat(cast(company.c.id % 100_000, String)),
                literal(dt.date(2026, 1, 1)),
            ).where(company.c.id % 5 != 0),
        )
    )


# --- approaches ---------------------------------------------------------------------------------


def _records(session: Session, count: int, companies: int, today: dt.date) -> None:
    sources = session.execute(select(func.count()).select_from(Source)).scalar_one()
    g = series(session, count)
    n = g.c.value
    busy = max(1, companies * BUSY_COMPANIES // 300_000)
    company_id = case(
        (n % 10 == 0, 1 + (cast(n // 10, BigInteger) * 7919) % busy),
        else_=1 + (cast(n, BigInteger) * 7919) % companies,
    )
    # Day and planned state from a multiplicative hash of n: plain residues of n repeat along
    # the n of one company (n = n0 + k * companies), which put all of a busy company's records on
    # a few days (a tenth of the busy companies entirely on one planned day).
    mixed = (cast(n, BigInteger) * 2_654_435_761) % 4_294_967_296
    planned = (mixed // 4096) % PLANNED_SHARE == 0
    days_back = mixed % HISTORY_DAYS
    days_ahead = (mixed // 262_144) % 60
    past = literal(today) - cast(days_back, Integer)
    ahead = literal(today) + cast(days_ahead, Integer)
    if not _is_postgres(session):  # SQLite has no date arithmetic on ISO strings
        past = func.date(literal(today.isoformat()), "-" + cast(days_back, String) + " days")
        ahead = func.date(literal(today.isoformat()), "+" + cast(days_ahead, String) + " days")
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
                "purpose",
                "consultant_name",
                "joint_with",
                "notes",
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
                case((planned, "planned"), else_="completed"),
                case((planned, ahead), else_=past),
                case((n % 3 == 0, "phone"), else_="visit"),
                literal("Rekruttering og opkvalificering"),
                literal("Konsulent ").concat(cast(n % 400, String)),
                cast(literal("[]"), SourceRecord.joint_with.type),
                case((n % 5 == 0, literal("Talte med HR om kompetencebehov")), else_=None),
                cast(literal("{}"), SourceRecord.payload.type),
                literal(utcnow()),
                literal(utcnow()),
                company_id,
            ).select_from(g),
        )
    )


def _json_array(session: Session, *values):
    return (func.json_build_array if _is_postgres(session) else func.json_array)(*values)


def _approaches(session: Session) -> None:
    record = SourceRecord.__table__
    organisation = Organisation.__table__
    source = Source.__table__
    joined = record.join(source, source.c.id == record.c.source_id).join(
        organisation, organisation.c.id == source.c.organisation_id
    )
    session.execute(
        insert(Approach).from_select(
            [
                "id",
                "group_key",
                "company_id",
                "date",
                "channel",
                "purpose",
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
                record.c.purpose,
                record.c.status == "planned",
                literal(False),
                literal(True),
                _json_array(session, organisation.c.name),
                _json_array(session, record.c.consultant_name),
            ).select_from(joined),
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
            select(record.c.id, source.c.organisation_id).select_from(
                record.join(source, source.c.id == record.c.source_id)
            ),
        )
    )


def _needs(session: Session) -> None:
    codelists = load_codelists()
    codes = [c.taxonomy_code for c in codelists.competences.values()]
    codes += sorted({o.taxonomy_code for o in codelists.occupations})
    session.execute(text("CREATE TEMPORARY TABLE bench_code (n INTEGER PRIMARY KEY, code TEXT)"))
    session.execute(
        text("INSERT INTO bench_code (n, code) VALUES (:n, :code)"),
        [{"n": i, "code": code} for i, code in enumerate(codes)],
    )
    record = SourceRecord.__table__
    code = table("bench_code", column("n"), column("code"))
    # Every record notes one need, every third a second; 1 in 20 maps nowhere.
    for shift, where in ((0, record.c.id > 0), (5, record.c.id % 3 == 0)):
        picked = record.join(code, code.c.n == (record.c.id * 31 + shift) % len(codes))
        unmapped = record.c.id % 20 == 0
        session.execute(
            insert(Need).from_select(
                ["source_record_id", "type", "code", "label", "taxonomy_code", "mapping_method"],
                select(
                    record.c.id,
                    case((code.c.code.like("komp:%"), "upskilling"), else_="recruitment"),
                    case((unmapped, "X-" + cast(record.c.id % 50, String)), else_=None),
                    case((unmapped, "Andet behov"), else_="behov"),
                    case((unmapped, None), else_=code.c.code),
                    case((unmapped, "none"), else_="exact"),
                )
                .select_from(picked)
                .where(where),
            )
        )
    session.execute(text("DROP TABLE bench_code"))


def _checks(session: Session, companies: int, today: dt.date) -> None:
    g = series(session, companies // 3)
    n = g.c.value
    at = dt.datetime.combine(today - dt.timedelta(days=40), dt.time(9), tzinfo=dt.UTC)
    session.execute(
        insert(PriorContactCheck).from_select(
            ["company_id", "organisation_id", "consultant", "checked_at"],
            select(n * 3, 1 + n % 5, literal("Konsulent"), literal(at)).select_from(g),
        )
    )


def _evaluate(session: Session, today: dt.date) -> None:
    ids = all_company_ids(session)
    raised = evaluate_companies(session, ids, Rules(), today=today)
    print(f"  ({len(ids):,} companies evaluated, {raised:,} flags raised)")


def _finish(engine) -> None:
    """Advance PostgreSQL's sequences past the explicit ids; vacuum (PostgreSQL) and analyse."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "postgresql":
            for name in SQLModel.metadata.tables:
                if "id" in SQLModel.metadata.tables[name].c:
                    connection.execute(
                        text(
                            # table names from our own metadata, not from input
                            f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "  # noqa: S608
                            f'GREATEST((SELECT max(id) FROM "{name}"), 1))'
                        )
                    )
        # A database in service has been vacuumed by autovacuum: the visibility map lets
        # PostgreSQL answer look-ups from covering indexes alone (migration 0007).
        vacuum = "VACUUM (ANALYZE)" if engine.dialect.name == "postgresql" else "ANALYZE"
        connection.execute(text(vacuum))


if __name__ == "__main__":
    sys.exit(main())
