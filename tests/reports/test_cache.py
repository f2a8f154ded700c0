"""The report cache: a cached result is the result counted now. Every change of the report facts
(a refresh, a flag evaluation that changes coordination) makes cached results stale; checks and
flags are counted live; nothing is cached while the reports count from the approaches."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from coordination.config import Rules
from coordination.flagging import evaluate_companies
from coordination.models import ReportCache
from coordination.reports import Period
from coordination.reports.cache import cached, live, memo_in
from coordination.reports.competence_needs import CompetenceNeedsRequest
from coordination.reports.coordination_report import CoordinationRequest, coordination_report
from coordination.reports.facts import refresh_report_facts
from coordination.web.queries import needs_page, warm_report_pages
from tests.reports import builders as b

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
MARCH = dt.date(2025, 3, 14)
WELDING = b.need("upskilling", "Svejsning", "komp:svejsning")
RULES = Rules(lookup_valid_days=14)


def computed(value):
    """A computation that counts how often it ran."""

    def compute():
        compute.runs += 1
        return value

    compute.runs = 0
    return compute


def welders(session, source, count=4, municipality="751"):
    companies = [b.company(session, municipality, "C") for _ in range(count)]
    for company in companies:
        b.approach(session, company, MARCH, source, [WELDING])
    return companies


def test_a_result_is_read_back_while_the_facts_are_unchanged(session):
    refresh_report_facts(session)
    compute = computed({"companies": 3, "share": 0.25, "months": [[2025, 3]]})
    first = cached(session, "kind", {"area": "751"}, compute)
    assert cached(session, "kind", {"area": "751"}, compute) == first
    assert compute.runs == 1
    cached(session, "kind", {"area": "657"}, compute)
    cached(session, "other kind", {"area": "751"}, compute)
    assert compute.runs == 3


def test_a_result_cached_by_other_code_is_not_read(session, monkeypatch):
    from coordination.reports import cache

    refresh_report_facts(session)
    compute = computed({"companies": 3})
    cached(session, "kind", {}, compute)
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "the next release")
    cached(session, "kind", {}, compute)
    assert compute.runs == 2


def test_nothing_is_cached_while_the_reports_count_from_the_approaches(session):
    compute = computed({"companies": 3})
    for _ in range(2):
        cached(session, "kind", {}, compute)
    assert compute.runs == 2
    assert session.execute(select(func.count()).select_from(ReportCache)).scalar_one() == 0


def test_a_refresh_of_the_facts_makes_cached_results_stale(session, jobcenter):
    company = b.company(session)
    refresh_report_facts(session)
    compute = computed({"companies": 3})
    cached(session, "kind", {}, compute)
    refresh_report_facts(session, [company.id])
    cached(session, "kind", {}, compute)
    refresh_report_facts(session)
    cached(session, "kind", {}, compute)
    assert compute.runs == 3


def test_a_flag_evaluation_that_changes_coordination_makes_cached_results_stale(
    session, jobcenter, veu
):
    companies = welders(session, jobcenter)
    for company in companies:
        b.approach(session, company, MARCH + dt.timedelta(days=1), veu)
    refresh_report_facts(session)
    compute = computed({"companies": 3})
    cached(session, "kind", {}, compute)
    evaluate_companies(session, [c.id for c in companies], Rules(), YEAR.end)  # uncoordinated
    cached(session, "kind", {}, compute)
    evaluate_companies(session, [c.id for c in companies], Rules(), YEAR.end)  # no change
    cached(session, "kind", {}, compute)
    assert compute.runs == 2


def test_the_reports_page_from_the_cache_equals_the_live_count(session, jobcenter, veu):
    welders(session, jobcenter)
    refresh_report_facts(session)
    request = CompetenceNeedsRequest("region-midtjylland", YEAR, "municipality", top=10)
    assert needs_page(session, request, memo_in(session)) == needs_page(session, request, live)
    newcomer = welders(session, veu, count=1, municipality="657")[0]
    refresh_report_facts(session, [newcomer.id])
    now = needs_page(session, request, live)
    assert needs_page(session, request, memo_in(session)) == now
    assert now["report"]["total"]["companies"] == 5


@pytest.mark.parametrize("area", ["region-midtjylland", "751"])
def test_the_coordination_report_from_the_cache_follows_new_checks_and_flags(
    session, jobcenter, area
):
    organisation = b.organisation(session, "Jobcenter Aarhus", "jobcenter", "751")
    companies = welders(session, b.source(session, organisation))
    refresh_report_facts(session)
    request = CoordinationRequest(area, YEAR)
    before = coordination_report(session, request, RULES, memo=memo_in(session))
    assert before == coordination_report(session, request, RULES)
    for company in companies:
        b.check(session, company, organisation, dt.datetime(2025, 3, 10, 9, tzinfo=dt.UTC))
        b.flag(session, company, MARCH, [organisation])
    after = coordination_report(session, request, RULES, memo=memo_in(session))
    assert after == coordination_report(session, request, RULES)
    assert after["prior_contact_checks"]["approaches"] == 4
    assert after["flags"]["flags"] == 4
    assert after["companies"] == before["companies"] == 4


def test_warming_caches_the_report_pages_first_views_of_every_council_area(session, jobcenter):
    welders(session, jobcenter)
    refresh_report_facts(session)
    warm_report_pages(session, RULES, YEAR.end)
    kinds = session.execute(select(ReportCache.kind, func.count()).group_by(ReportCache.kind))
    assert dict(kinds.all()) == {"needs-page": 3, "coordination-facts": 3, "coordination-checks": 3}
    request = CompetenceNeedsRequest("rar-oestjylland", YEAR, "sector", top=10)
    assert needs_page(session, request, memo_in(session)) == needs_page(session, request, live)


def test_the_coordination_report_from_the_cache_follows_a_deleted_check(session):
    organisation = b.organisation(session, "Jobcenter Aarhus", "jobcenter", "751")
    companies = welders(session, b.source(session, organisation))
    checks = [
        b.check(session, company, organisation, dt.datetime(2025, 3, 10, 9, tzinfo=dt.UTC))
        for company in companies
    ]
    refresh_report_facts(session)
    request = CoordinationRequest("751", YEAR)
    coordination_report(session, request, RULES, memo=memo_in(session))
    session.delete(checks[0])
    session.flush()
    after = coordination_report(session, request, RULES, memo=memo_in(session))
    assert after == coordination_report(session, request, RULES)
    assert after["prior_contact_checks"]["approaches"] == 3
