"""Report facts: built once for every company, then refreshed per company, they always give what
the approaches, needs and companies give; a mapping added later reaches them without a sync."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import Date, delete, func, select, text

from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    ReportApproachFact,
    ReportNeedFact,
    ReportNeedMonth,
)
from coordination.needs.review import add_mapping
from coordination.reports import Period, facts
from coordination.reports.competence_needs import CompetenceNeedsRequest, competence_needs_report
from coordination.reports.facts import facts_built, refresh_report_facts
from tests.reports import builders as b

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
MARCH = dt.date(2025, 3, 14)
WELDING = b.need("upskilling", "Svejsning", "komp:svejsning")
CNC = b.need("upskilling", "CNC", "komp:cnc")


def _nulls_first(row: tuple) -> tuple:
    return tuple((value is not None, value) for value in row)


def stored_facts(session) -> list[tuple]:
    columns = [c for c in ReportNeedFact.__table__.c if c.name != "id"]
    return sorted((tuple(row) for row in session.execute(select(*columns))), key=_nulls_first)


def derived_facts(session) -> list[tuple]:
    return sorted((tuple(row) for row in session.execute(facts.derived_facts())), key=_nulls_first)


def stored_month_sums(session) -> list[tuple]:
    return sorted(tuple(row) for row in session.execute(select(ReportNeedMonth.__table__)))


def summed_month_sums(session) -> list[tuple]:
    """The monthly sums of the stored facts as a rebuild would make them."""
    return sorted(tuple(row) for row in session.execute(facts.month_sums()))


def assert_facts_current(session) -> None:
    assert stored_facts(session) == derived_facts(session)
    assert stored_month_sums(session) == summed_month_sums(session)


def needs_by_code(session, area="region-midtjylland", group_by="sector") -> dict:
    found = competence_needs_report(session, CompetenceNeedsRequest(area, YEAR, group_by))
    return {row["code"]: (row["companies"], row["approaches"]) for row in found["needs"]}


def test_the_first_refresh_builds_the_facts_of_every_company(session, jobcenter, veu):
    first, second = b.company(session, "657", "C"), b.company(session, "751")
    b.approach(session, first, MARCH, jobcenter, [WELDING], joint=[(veu, [WELDING, CNC])])
    b.approach(session, second, MARCH, veu, [CNC])
    b.approach(session, second, MARCH, veu, [CNC], planned=True)
    assert not facts_built(session)
    refresh_report_facts(session, [first.id])
    assert facts_built(session)
    assert_facts_current(session)
    assert len(stored_facts(session)) == 4  # jobcentre and VEU welding, VEU CNC twice


def test_a_whole_build_leaves_the_fact_tables_analysed(session, jobcenter, veu):
    """PostgreSQL plans the refreshes that follow with the built tables' real size: planned
    for the empty tables of before, each refresh statement hash-joins a scan of all the facts."""
    for _ in range(3):
        company = b.company(session, "657")
        b.approach(session, company, MARCH, jobcenter, [WELDING], joint=[(veu, [CNC])])
    refresh_report_facts(session)
    if session.get_bind().dialect.name != "postgresql":  # SQLite plans without statistics
        return
    analysed = text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:names)")
    found = dict(session.execute(analysed, {"names": list(facts._FACT_TABLES)}).all())
    assert found == {
        "reportneedfact": len(stored_facts(session)),
        "reportneedmonth": len(stored_month_sums(session)),
        "reportapproachfact": len(session.execute(select(ReportApproachFact.id)).all()),
    }


def test_a_refreshed_company_gets_its_new_and_changed_approaches(session, jobcenter, veu):
    companies = [b.company(session, "657") for _ in range(3)]
    for company in companies:
        b.approach(session, company, MARCH, jobcenter, [WELDING])
    refresh_report_facts(session)
    for company in companies:
        b.approach(session, company, dt.date(2025, 6, 1), veu, [CNC])
    companies[0].municipality_code = "751"
    session.flush()
    refresh_report_facts(session, [c.id for c in companies])
    assert_facts_current(session)
    assert needs_by_code(session, "657") == {
        "komp:svejsning": (None, None),
        "komp:cnc": (None, None),
    }
    assert needs_by_code(session) == {"komp:svejsning": (3, 3), "komp:cnc": (3, 3)}


def test_facts_of_an_approach_rebuilt_under_a_new_id_replace_the_old_ones(session, jobcenter, veu):
    company = b.company(session, "657")
    first = b.approach(session, company, MARCH, jobcenter, [WELDING])
    second = b.approach(session, company, MARCH, veu, [CNC])
    refresh_report_facts(session)
    records = session.scalars(
        select(ApproachRecord.source_record_id).where(
            ApproachRecord.approach_id.in_([first.id, second.id])
        )
    ).all()
    for table, column in (
        (ApproachRecord, ApproachRecord.approach_id),
        (ApproachOrganisation, ApproachOrganisation.approach_id),
        (Approach, Approach.id),
    ):
        session.execute(delete(table).where(column.in_([first.id, second.id])))
    joint = Approach(group_key=min(records), company_id=company.id, date=MARCH, joint=True)
    session.add(joint)
    session.flush()
    session.add_all(ApproachRecord(source_record_id=r, approach_id=joint.id) for r in records)
    session.flush()
    refresh_report_facts(session, [company.id])
    assert {fact[0] for fact in stored_facts(session)} == {joint.id}
    assert_facts_current(session)


def test_companies_not_named_keep_their_facts_until_refreshed(session, jobcenter):
    refreshed, untouched = b.company(session, "657"), b.company(session, "657")
    refresh_report_facts(session)
    for company in (refreshed, untouched):
        b.approach(session, company, MARCH, jobcenter, [WELDING])
    refresh_report_facts(session, [refreshed.id])
    assert {fact[1] for fact in stored_facts(session)} == {refreshed.id}


def test_a_mapping_added_later_reaches_the_report_facts_without_a_sync(session, jobcenter):
    unknown = b.need("upskilling", "Bæredygtig emballage")
    for _ in range(3):
        b.approach(session, b.company(session, "657"), MARCH, jobcenter, [unknown, WELDING])
    refresh_report_facts(session)
    assert needs_by_code(session)["unclassified"] == (3, 3)
    add_mapping(session, "komp:cnc", label="bæredygtig emballage", created_by="tester")
    assert_facts_current(session)
    assert needs_by_code(session) == {"komp:svejsning": (3, 3), "komp:cnc": (3, 3)}


def test_marks_count_a_company_once_per_period_whatever_it_noted_before(session, jobcenter, veu):
    regular, *others = (b.company(session, "657") for _ in range(3))
    b.approach(session, regular, dt.date(2024, 6, 1), jobcenter, [WELDING])
    b.approach(session, regular, MARCH, jobcenter, [WELDING], joint=[(veu, [WELDING])])
    b.approach(session, regular, dt.date(2025, 5, 1), veu, [WELDING])
    for company in others:
        b.approach(session, company, MARCH, jobcenter, [WELDING])
    refresh_report_facts(session)
    for group_by in ("sector", "municipality", "organisation_type"):
        request = CompetenceNeedsRequest("region-midtjylland", YEAR, group_by)
        row = competence_needs_report(session, request)["needs"][0]
        assert (row["companies"], row["approaches"], row["previous_suppressed"]) == (3, 4, True)


def test_the_pages_needs_trend_counts_the_same_from_the_facts(session, jobcenter, veu):
    from coordination.web.queries import needs_trend

    herning = [b.company(session, "657") for _ in range(4)]
    for number, company in enumerate(herning):
        b.approach(session, company, MARCH, jobcenter, [WELDING], joint=[(veu, [WELDING, CNC])])
        b.approach(session, company, dt.date(2025, 6, 2 + number), veu, [CNC])
    b.approach(session, herning[0], dt.date(2025, 6, 20), veu, [CNC], planned=True)
    b.approach(session, b.company(session, "751"), MARCH, veu, [CNC])  # Østjylland
    live = needs_trend(session, "rar-vestjylland", YEAR, None)
    refresh_report_facts(session)
    assert needs_trend(session, "rar-vestjylland", YEAR, None) == live
    by_month = {row["month"]: (row["companies"], row["approaches"]) for row in live}
    assert by_month[3] == (4, 4) and by_month[6] == (4, 4) and by_month[1] == (0, 0)


def test_monthly_sums_follow_refreshes_that_move_remove_and_add_approaches(session, jobcenter, veu):
    companies = [b.company(session, "657", "C") for _ in range(3)]
    moved = b.approach(session, companies[0], MARCH, jobcenter, [WELDING, CNC])
    for company in companies:
        b.approach(session, company, dt.date(2025, 4, 2), veu, [WELDING], joint=[(jobcenter, [])])
    refresh_report_facts(session)
    assert_facts_current(session)
    assert stored_month_sums(session)
    moved.date = dt.date(2025, 5, 30)
    companies[1].industry_section = "F"
    b.approach(session, companies[2], dt.date(2025, 4, 2), jobcenter, [CNC])
    session.flush()
    refresh_report_facts(session, [c.id for c in companies])
    assert_facts_current(session)
    for table, column in (
        (ApproachRecord, ApproachRecord.approach_id),
        (ApproachOrganisation, ApproachOrganisation.approach_id),
        (Approach, Approach.id),
    ):
        session.execute(
            delete(table).where(
                column.in_(select(Approach.id).where(Approach.company_id == companies[2].id))
            )
        )
    refresh_report_facts(session, [companies[2].id])
    assert_facts_current(session)
    assert not any(row[-2] == 0 for row in stored_month_sums(session))


def test_a_refresh_rewrites_only_the_facts_that_changed(session, jobcenter, veu):
    """Unchanged facts keep their rows, also those with empty columns (no municipality, no
    need code, no earlier or later row); changed ones are replaced."""
    unknown = b.need("upskilling", "Bæredygtig emballage")
    placed, nowhere = b.company(session, "657", "C"), b.company(session, None)
    for company in (placed, nowhere):
        b.approach(session, company, dt.date(2025, 2, 3), jobcenter, [unknown])
        b.approach(session, company, MARCH, jobcenter, [WELDING])
        b.approach(session, company, dt.date(2025, 5, 2), veu, [CNC], joint=[(jobcenter, [])])
    # the facts with the highest ids, so that SQLite does not hand a deleted id out again
    b.approach(session, b.company(session, "657"), dt.date(2025, 12, 1), veu, [CNC])
    refresh_report_facts(session)
    need_ids = set(session.scalars(select(ReportNeedFact.id)))
    approach_ids = set(session.scalars(select(ReportApproachFact.id)))
    refresh_report_facts(session, [placed.id, nowhere.id])
    assert set(session.scalars(select(ReportNeedFact.id))) == need_ids
    assert set(session.scalars(select(ReportApproachFact.id))) == approach_ids
    b.approach(session, placed, dt.date(2025, 6, 1), jobcenter, [WELDING])
    refresh_report_facts(session, [placed.id, nowhere.id])
    assert_facts_current(session)
    now = set(session.scalars(select(ReportNeedFact.id)))
    # placed's welding and CNC facts now have a later day (its, the jobcentre's, the need's)
    assert (len(need_ids - now), len(now - need_ids)) == (2, 3)
    now = set(session.scalars(select(ReportApproachFact.id)))
    assert (len(approach_ids - now), len(now - approach_ids)) == (0, 1)


@pytest.mark.parametrize(
    "start, end",
    [
        (dt.date(2025, 2, 10), dt.date(2025, 7, 20)),
        (dt.date(2025, 3, 1), dt.date(2025, 3, 31)),
        (dt.date(2025, 3, 14), dt.date(2025, 3, 14)),
    ],
)
def test_the_pages_needs_trend_over_part_months_counts_the_same_from_the_facts(
    session, jobcenter, veu, start, end
):
    from coordination.web.queries import needs_trend

    companies = [b.company(session, "657") for _ in range(5)]
    for number, company in enumerate(companies):
        b.approach(session, company, MARCH, jobcenter, [WELDING], joint=[(veu, [WELDING, CNC])])
        b.approach(session, company, dt.date(2025, 3, 1 + number), veu, [CNC])
        b.approach(session, company, dt.date(2025, 2, 20 + number), veu, [CNC])
        b.approach(session, company, dt.date(2025, 7, 15 + number), jobcenter, [WELDING])
    period = Period(start, end)
    live = needs_trend(session, "rar-vestjylland", period, None)
    refresh_report_facts(session)
    assert needs_trend(session, "rar-vestjylland", period, None) == live
    assert any(row["companies"] for row in live)


def marks_by_definition(session) -> list[tuple]:
    """The facts with each mark computed by a window of its own over the rows it is defined on:
    the ``*_before`` / ``*_after`` marks the day of the previous / next row of the company's
    rows of their key, the ``approach_*_first`` marks whether the row is the first of the
    approach's rows of their key (rows in order of day, approach, organisation type, need)."""
    needs = facts.live_needs().subquery("needs")
    c = needs.c
    order = (c.day, c.approach_id, c.organisation_type, c.need_type, c.taxonomy_code)

    def over(function, *partition):
        return function.over(partition_by=partition, order_by=order)

    def first(*partition):
        return over(func.row_number(), *partition) == 1

    before, after = func.lag(c.day, type_=Date), func.lead(c.day, type_=Date)
    need, type_need = (c.need_type, c.taxonomy_code), (c.organisation_type, c.need_type)
    query = select(
        *(c[name] for name in facts._COLUMNS),
        over(before, c.company_id, *need),
        over(before, c.company_id, *type_need, c.taxonomy_code),
        over(before, c.company_id),
        over(before, c.company_id, c.organisation_type),
        first(c.approach_id, *need),
        first(c.approach_id),
        first(c.approach_id, c.organisation_type),
        over(after, c.company_id, *need),
        over(after, c.company_id, *type_need, c.taxonomy_code),
        over(after, c.company_id),
        over(after, c.company_id, c.organisation_type),
    )
    return sorted((tuple(row) for row in session.execute(query)), key=_nulls_first)


def stored_approach_facts(session) -> list[tuple]:
    columns = [c for c in ReportApproachFact.__table__.c if c.name != "id"]
    return sorted((tuple(row) for row in session.execute(select(*columns))), key=_nulls_first)


def approach_marks_by_definition(session) -> list[tuple]:
    """The approach facts with ``approach_first`` on the approach's row of its first organisation
    and ``organisation_before`` the day of the previous row of the company's rows of the
    organisation (in order of day and approach)."""
    approaches = facts.live_approaches().subquery("approaches")
    c = approaches.c
    query = select(
        *c,
        func.row_number().over(partition_by=c.approach_id, order_by=c.organisation_id) == 1,
        func.lag(c.day, type_=Date).over(
            partition_by=(c.company_id, c.organisation_id), order_by=(c.day, c.approach_id)
        ),
    )
    return sorted((tuple(row) for row in session.execute(query)), key=_nulls_first)


def test_the_marks_are_those_of_their_definitions(session, jobcenter, veu):
    """Random histories with several approaches a day, joint visits, needs of one type with and
    without a code: the derived marks (computed by fewer windows) are those of the definitions,
    stored and refreshed."""
    crm = b.source(session, b.organisation(session, "Væksthus Midtjylland", "vaeksthus"))
    pool = [
        WELDING,
        CNC,
        b.need("upskilling", "Bæredygtig emballage"),
        b.need("recruitment", "Svejser"),
        b.need("recruitment", "Smed", "komp:smed"),
    ]
    sources = [jobcenter, veu, crm]
    chance = random.Random(9)
    companies = [b.company(session, chance.choice(["657", "751", None])) for _ in range(6)]

    def visit(company):
        first, *others = chance.sample(sources, chance.randint(1, 3))
        b.approach(
            session,
            company,
            dt.date(2025, 3, chance.randint(1, 6)),
            first,
            chance.sample(pool, chance.randint(0, 3)),
            joint=[(other, chance.sample(pool, chance.randint(0, 2))) for other in others],
            planned=chance.random() < 0.1,
        )

    for company in companies:
        for _ in range(chance.randint(1, 12)):
            visit(company)
    refresh_report_facts(session)
    assert stored_facts(session) == marks_by_definition(session)
    assert stored_approach_facts(session) == approach_marks_by_definition(session)
    for company in companies[:3]:
        for _ in range(3):
            visit(company)
    refresh_report_facts(session, [c.id for c in companies[:3]])
    assert stored_facts(session) == marks_by_definition(session)
    assert stored_approach_facts(session) == approach_marks_by_definition(session)
    assert_facts_current(session)


def test_a_refresh_leaves_the_transactions_settings_as_they_were(session, jobcenter):
    """The refresh's own PostgreSQL settings (no JIT, more work_mem) end with it (SQLite has
    none to set: its refresh runs the same statements without them)."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    company = b.company(session, "657")
    b.approach(session, company, MARCH, jobcenter, [WELDING])
    refresh_report_facts(session)
    settings = "SELECT current_setting('work_mem'), current_setting('jit')"
    if postgresql:
        session.execute(text("SET LOCAL work_mem = '5MB'"))
        before = session.execute(text(settings)).one()
        assert before[0] == "5MB"
    b.approach(session, company, dt.date(2025, 6, 1), jobcenter, [CNC])
    refresh_report_facts(session, [company.id])
    assert_facts_current(session)
    if postgresql:
        assert session.execute(text(settings)).one() == before
