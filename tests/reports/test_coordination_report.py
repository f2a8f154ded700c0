"""The coordination report: how often companies are approached, by how many organisations,
how much of it is uncoordinated or preceded by a prior-contact check, and the flags raised."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import delete

from coordination.config import Rules
from coordination.flagging import evaluate_companies
from coordination.models import ReportFactState
from coordination.reports import Period
from coordination.reports.coordination_report import CoordinationRequest, coordination_report
from coordination.reports.facts import refresh_report_facts
from tests.reports import builders as b

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
JUNE = dt.date(2025, 6, 10)


@pytest.fixture
def organisations(session):
    return {
        "jobcenter": b.organisation(session, "Jobcenter Herning", "jobcenter", "657"),
        "veu": b.organisation(session, "VEU-center Vest", "veu"),
        "vaeksthus": b.organisation(session, "Væksthus Midtjylland", "vaeksthus"),
    }


@pytest.fixture
def sources(session, organisations):
    return {kind: b.source(session, org) for kind, org in organisations.items()}


def report(session, area="region-midtjylland", period=YEAR, rules=None, codelists=None):
    """The report counted from the approaches, checked against the same report counted from
    freshly built report facts."""
    request = CoordinationRequest(area, period)
    rules = rules or Rules(lookup_valid_days=14)
    session.execute(delete(ReportFactState))
    counted = coordination_report(session, request, rules, codelists)
    refresh_report_facts(session)
    assert coordination_report(session, request, rules, codelists) == counted
    return counted


def buckets(section):
    return {item["bucket"]: item["companies"] for item in section}


def approached(session, source, times, municipality="751", count=3, **options):
    """``count`` companies, each approached ``times`` times by ``source`` in the year."""
    companies = []
    for _ in range(count):
        company = b.company(session, municipality)
        for day in range(times):
            b.approach(
                session, company, dt.date(2025, 2, 1) + dt.timedelta(days=day), source, **options
            )
        companies.append(company)
    return companies


def test_companies_are_counted_by_how_often_they_were_approached(session, sources):
    for times in (1, 2, 3, 4, 6):
        approached(session, sources["jobcenter"], times)
    found = report(session)
    assert buckets(found["approaches_per_company"]) == {"1": 3, "2": 3, "3": 3, "4-5": 3, "6+": 3}
    assert (found["companies"], found["approaches"]) == (15, 3 * (1 + 2 + 3 + 4 + 6))


def test_companies_are_counted_by_how_many_organisations_approached_them(session, sources):
    approached(session, sources["jobcenter"], 2)
    for company in approached(session, sources["jobcenter"], 1):
        b.approach(session, company, JUNE, sources["veu"])
    for company in approached(session, sources["jobcenter"], 1, count=4):
        b.approach(session, company, JUNE, sources["veu"], joint=[(sources["vaeksthus"], ())])
    found = report(session)
    assert buckets(found["organisations_per_company"]) == {"1": 3, "2": 3, "3": 4, "4+": 0}


def test_planned_approaches_and_approaches_outside_the_period_do_not_count(session, sources):
    approached(session, sources["jobcenter"], 1)
    for company in approached(session, sources["veu"], 1, count=3):
        b.approach(session, company, JUNE, sources["veu"], planned=True)
        b.approach(session, company, dt.date(2026, 1, 1), sources["veu"])
    found = report(session)
    assert (found["companies"], found["approaches"]) == (6, 6)


def test_the_share_of_uncoordinated_approaches(session, sources):
    for company in approached(session, sources["jobcenter"], 1, count=4):
        b.approach(session, company, JUNE, sources["veu"], coordinated=False)
    approached(session, sources["veu"], 2, count=4)
    found = report(session)["uncoordinated"]
    assert found == {"approaches": 4, "companies": 4, "share": 0.25, "suppressed": False}


def test_a_check_within_lookup_valid_days_by_the_approachs_organisation_precedes_it(
    session, sources, organisations
):
    jobcenter, veu = organisations["jobcenter"], organisations["veu"]
    cases = [
        (jobcenter, JUNE - dt.timedelta(days=13), True),
        (jobcenter, JUNE - dt.timedelta(days=14), True),
        (jobcenter, JUNE - dt.timedelta(days=15), False),
        (veu, JUNE - dt.timedelta(days=2), False),  # another organisation's check
        (jobcenter, JUNE + dt.timedelta(days=1), False),  # a check after the approach
        (jobcenter, JUNE, True),  # the same day
    ]
    for organisation, day, _ in cases:
        company = b.company(session)
        b.approach(session, company, JUNE, sources["jobcenter"])
        at = dt.datetime.combine(day, dt.time(10, 0), tzinfo=dt.UTC)
        b.check(session, company, organisation, at)
    found = report(session)["prior_contact_checks"]
    assert (found["approaches"], found["companies"]) == (3, 3)
    assert found["share"] == round(3 / 6, 4)
    assert found["median_lead_days"] == 13


def test_the_lead_time_runs_from_the_latest_check_and_its_median_is_taken_over_approaches(
    session, sources, organisations
):
    for leads in ([1, 8], [4], [6], [9]):
        company = b.company(session)
        b.approach(session, company, JUNE, sources["jobcenter"])
        for lead in leads:
            at = dt.datetime.combine(JUNE - dt.timedelta(days=lead), dt.time(9), tzinfo=dt.UTC)
            b.check(session, company, organisations["jobcenter"], at)
    found = report(session)["prior_contact_checks"]
    assert found["approaches"] == 4
    assert found["median_lead_days"] == 5.0  # leads 1, 4, 6, 9


@pytest.mark.parametrize(
    ("checked_at_utc", "lead_days"),
    [
        (dt.datetime(2025, 6, 9, 22, 30, tzinfo=dt.UTC), 0),  # 00:30 on 10 June, summer time
        (dt.datetime(2025, 6, 9, 21, 30, tzinfo=dt.UTC), 1),  # 23:30 on 9 June
        (dt.datetime(2025, 1, 9, 23, 30, tzinfo=dt.UTC), 0),  # 00:30 on 10 January, winter time
        (dt.datetime(2025, 1, 9, 22, 30, tzinfo=dt.UTC), 1),  # 23:30 on 9 January
    ],
)
def test_check_days_are_counted_in_danish_time(
    session, sources, organisations, checked_at_utc, lead_days
):
    for _ in range(3):
        company = b.company(session)
        b.approach(session, company, checked_at_utc.date() + dt.timedelta(days=1), sources["veu"])
        b.check(session, company, organisations["veu"], checked_at_utc)
    assert report(session)["prior_contact_checks"]["median_lead_days"] == lead_days


def test_flags_raised_in_the_period_are_counted_per_organisation_type(
    session, sources, organisations
):
    jobcenter, veu, vaeksthus = (organisations[k] for k in ("jobcenter", "veu", "vaeksthus"))
    for company in approached(session, sources["jobcenter"], 1, count=3):
        b.flag(session, company, JUNE, [jobcenter, veu])
    for company in approached(session, sources["jobcenter"], 1, count=4):
        b.flag(session, company, JUNE, [jobcenter, vaeksthus], status="resolved")
    for company in approached(session, sources["jobcenter"], 1, count=3):
        b.flag(session, company, dt.date(2024, 12, 31), [jobcenter, veu])
    found = report(session)["flags"]
    assert (found["flags"], found["companies"]) == (7, 7)
    by_type = {
        t["organisation_type"]: (t["label"], t["flags"]) for t in found["by_organisation_type"]
    }
    assert by_type == {
        "vaeksthus": ("Væksthus (erhvervshus)", 4),
        "jobcenter": ("Jobcenter", 7),
        "veu": ("VEU-center", 3),
    }


def test_a_company_in_herning_counts_for_vestjylland_and_not_for_oestjylland(
    session, sources, organisations
):
    for company in approached(session, sources["jobcenter"], 2, municipality="657"):
        b.flag(session, company, JUNE, [organisations["jobcenter"], organisations["veu"]])
    west, east = report(session, "rar-vestjylland"), report(session, "rar-oestjylland")
    assert (west["companies"], west["flags"]["flags"]) == (3, 3)
    assert (east["companies"], east["approaches"], east["flags"]["flags"]) == (0, 0, 0)


def test_every_municipality_of_the_area_gets_a_row(session, sources):
    approached(session, sources["jobcenter"], 2, municipality="657", coordinated=False)
    approached(session, sources["jobcenter"], 1, municipality="661", count=4)
    rows = {
        r["municipality_code"]: r for r in report(session, "rar-vestjylland")["by_municipality"]
    }
    assert sorted(rows) == ["657", "661", "665", "671", "756", "760", "779", "791"]
    herning = rows["657"]
    assert (herning["name"], herning["companies"], herning["approaches"]) == ("Herning", 3, 6)
    assert (herning["uncoordinated_approaches"], herning["share_uncoordinated"]) == (6, 1.0)
    assert (rows["661"]["companies"], rows["665"]["companies"]) == (4, 0)


def test_figures_about_fewer_than_three_companies_are_suppressed(session, sources):
    approached(session, sources["jobcenter"], 1, count=2, coordinated=False)
    found = report(session)
    assert (found["companies"], found["approaches"], found["suppressed"]) == (None, None, True)
    assert found["uncoordinated"] == {
        "approaches": None,
        "companies": None,
        "share": None,
        "suppressed": True,
    }


def test_a_suppressed_bucket_takes_the_next_smallest_with_it(session, sources):
    approached(session, sources["jobcenter"], 1, count=5)
    approached(session, sources["jobcenter"], 2, count=1)
    approached(session, sources["jobcenter"], 3, count=4)
    found = report(session)
    assert found["companies"] == 10
    assert buckets(found["approaches_per_company"]) == {
        "1": 5,
        "2": None,
        "3": None,
        "4-5": 0,
        "6+": 0,
    }


def test_a_suppressed_municipality_takes_the_next_smallest_with_it(session, sources):
    approached(session, sources["jobcenter"], 1, municipality="657", count=5)
    approached(session, sources["jobcenter"], 1, municipality="661", count=2)
    approached(session, sources["jobcenter"], 1, municipality="665", count=3)
    rows = {
        r["municipality_code"]: r for r in report(session, "rar-vestjylland")["by_municipality"]
    }
    assert [rows[m]["companies"] for m in ("657", "661", "665")] == [5, None, None]
    assert rows["661"]["suppressed"] and rows["665"]["approaches"] is None


# --- counted from the report facts ---------------------------------------------------------------


def busy_companies(session, sources, organisations, count=30, seed=7):
    """``count`` companies in Herning and Aarhus approached five to eight times between October
    2024 and June 2025 (twice on some days), by one organisation or jointly, some uncoordinated,
    some after a check."""
    chosen = random.Random(seed)
    kinds = sorted(sources)
    for _ in range(count):
        company = b.company(session, chosen.choice(["657", "751"]))
        days = [dt.date(2024, 10, 1) + dt.timedelta(days=chosen.randrange(270)) for _ in range(5)]
        for on in [*days, *days[: chosen.randint(0, 3)]]:
            first, other = chosen.sample(kinds, 2)
            joint = [(sources[other], ())] if chosen.random() < 0.3 else []
            coordinated = chosen.random() < 0.8
            b.approach(session, company, on, sources[first], joint=joint, coordinated=coordinated)
            if chosen.random() < 0.4:
                at = dt.datetime.combine(on, dt.time(9), tzinfo=dt.UTC)
                before = at - dt.timedelta(days=chosen.randrange(20))
                b.check(session, company, organisations[first], before)


@pytest.mark.parametrize(
    "start, end",
    [
        (dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
        (dt.date(2025, 2, 10), dt.date(2025, 5, 20)),
        (dt.date(2024, 11, 15), dt.date(2025, 3, 14)),
    ],
)
def test_any_period_counts_the_same_from_the_facts(session, sources, organisations, start, end):
    busy_companies(session, sources, organisations)
    found = report(session, period=Period(start, end))
    assert found["companies"] > 3 and found["prior_contact_checks"]["approaches"]


def test_a_municipality_that_joins_an_area_mid_period_counts_from_that_day(
    session, sources, organisations, tmp_path
):
    # From 15 March 2025 Herning (657) moves to RAR Østjylland in this made-up reform.
    reformed = b.herning_moves_to_oestjylland(tmp_path / "codelists", dt.date(2025, 3, 15))
    busy_companies(session, sources, organisations)
    for area in ("rar-oestjylland", "rar-vestjylland", "region-midtjylland"):
        report(session, area, codelists=reformed)


def test_the_flag_evaluation_keeps_the_facts_of_coordination_current(session, sources):
    companies = approached(session, sources["jobcenter"], 2, count=4)
    for company in companies:
        b.approach(session, company, dt.date(2025, 2, 2), sources["veu"])
    refresh_report_facts(session)
    request = CoordinationRequest("region-midtjylland", YEAR)
    evaluate_companies(session, [c.id for c in companies], Rules(), dt.date(2025, 12, 31))
    from_facts = coordination_report(session, request, Rules())
    session.execute(delete(ReportFactState))
    assert coordination_report(session, request, Rules()) == from_facts
    assert from_facts["uncoordinated"]["approaches"] > 0
