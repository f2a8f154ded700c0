"""Reads the pages need that no feature's service offers as such.

Each builds on the features' own code (``coordination.approach_queries``, the reports' area scope
and suppression) rather than repeating it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Collection, Sequence

from sqlalchemy import distinct, extract, func, select, true
from sqlmodel import Session

from coordination.approach_queries import _approach_rows, serialise_approaches
from coordination.config import Rules
from coordination.models import (
    Approach,
    QuarantinedRecord,
    ReportNeedFact,
    ReportNeedMonth,
    Source,
    SyncRun,
    SyncRunSource,
)
from coordination.needs.codelists import load_codelists
from coordination.reports import Period, resolve_area
from coordination.reports.cache import Memo, live, memo_in
from coordination.reports.competence_needs import CompetenceNeedsRequest, competence_needs_report
from coordination.reports.coordination_report import CoordinationRequest, coordination_report
from coordination.reports.facts import (
    COMPANY,
    MonthOf,
    expressed_needs,
    facts_built,
    spans_by_days,
    whole_months,
)
from coordination.reports.suppression import Line, suppress


def approaches_by_id(session: Session, ids: Collection[int], viewer: str) -> dict[int, dict]:
    """The approaches with these ids as the service shows them, keyed by id (a fixed number
    of queries however many ids). ``viewer`` is the caller's organisation (whose notes show)."""
    if not ids:
        return {}
    rows = session.execute(_approach_rows().where(Approach.__table__.c.id.in_(list(ids)))).all()
    return {approach["id"]: approach for approach in serialise_approaches(session, rows, viewer)}


def newest_approach_ids(
    session: Session, id_lists: Sequence[Sequence[int]], count: int
) -> list[list[int]]:
    """For each list of approach ids, the ``count`` newest (by date, then id) that exist; one
    light query of ids and dates, so a flag over thousands of approaches costs no more than
    the ``count`` shown."""
    wanted = sorted({i for ids in id_lists for i in ids})
    dates: dict[int, object] = {}
    table = Approach.__table__
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        query = select(table.c.id, table.c.date).where(table.c.id.in_(chunk))
        dates.update((row.id, row.date) for row in session.execute(query))
    return [
        sorted((i for i in ids if i in dates), key=lambda i: (dates[i], i), reverse=True)[:count]
        for ids in id_lists
    ]


def latest_run_per_source(session: Session) -> dict[str, dict]:
    """Per source name, its most recent sync-run entry (counts, status, error, times)."""
    latest = (
        select(func.max(SyncRunSource.id).label("id"))
        .group_by(SyncRunSource.source_id)
        .subquery("latest")
    )
    rows = session.execute(
        select(SyncRunSource, Source.name)
        .join(latest, latest.c.id == SyncRunSource.id)
        .join(Source, Source.id == SyncRunSource.source_id)
    ).all()
    return {name: entry.model_dump() for entry, name in rows}


def open_quarantine_per_source(session: Session) -> dict[str, int]:
    """Per source name, how many of its records are quarantined and not yet corrected."""
    rows = session.execute(
        select(Source.name, func.count(QuarantinedRecord.id))
        .join(Source, Source.id == QuarantinedRecord.source_id)
        .where(QuarantinedRecord.resolved_at.is_(None))
        .group_by(Source.name)
    ).all()
    return dict(rows)


def recent_runs(session: Session, count: int) -> list[dict]:
    """The ``count`` newest sync runs with their counts per source, as the API shows them."""
    from coordination.api.sync_runs import _run  # the API's view of one run, reused as is

    runs = session.execute(select(SyncRun).order_by(SyncRun.id.desc()).limit(count)).scalars()
    return [_run(session, run) for run in runs]


DEFAULT_DAYS = 365  # the report pages' period without choices: the last 365 days
TOP_NEEDS = 10  # needs in the reports page's top-needs chart


def default_period(today: dt.date) -> Period:
    return Period(today - dt.timedelta(days=DEFAULT_DAYS - 1), today)


def needs_page(session: Session, request: CompetenceNeedsRequest, memo: Memo = live) -> dict:
    """What the reports page shows: the competence-needs report (``report``) and its trend
    (``trend``), through ``memo`` (both are counted from the report facts alone)."""

    def compute() -> dict:
        report = competence_needs_report(session, request)
        trend = needs_trend(session, request.area, request.period, report["total"]["companies"])
        return {"report": report, "trend": trend}

    return memo("needs-page", dataclasses.asdict(request), compute)


def competence_needs(session: Session, request: CompetenceNeedsRequest, memo: Memo) -> dict:
    """The competence-needs report through ``memo`` (the downloads)."""
    compute = functools.partial(competence_needs_report, session, request)
    return memo("competence-needs", dataclasses.asdict(request), compute)


def warm_report_pages(session: Session, rules: Rules, today: dt.date) -> None:
    """Cache what the report pages show without choices, for every council area: after a
    refresh of the report facts the first visitors then need not wait for the counting."""
    memo = memo_in(session)
    period = default_period(today)
    for area in sorted(load_codelists().areas):
        needs_page(session, CompetenceNeedsRequest(area, period, "sector", top=TOP_NEEDS), memo)
        coordination_report(session, CoordinationRequest(area, period), rules, memo=memo)


def needs_trend(
    session: Session, area: str, period: Period, published_total: int | None
) -> list[dict]:
    """Per calendar month of ``period`` (oldest first): how many companies of the area expressed
    at least one competence need, and at how many approaches.

    The competence-needs report has no time series, so the trend counts here, with the report's
    own rules: approaches that took place, by companies whose municipality belonged to the area
    on the approach's date (``AreaScope.condition``), that noted a need. Months are suppressed as
    the reports suppress figures: a month derived from 1 or 2 companies is ``None``; and when the
    report publishes its total (``published_total``: the report's ``total.companies``, which
    counts the same companies), the months form a line with it, so that no suppressed month can
    be recovered by subtraction either.
    """
    scope = resolve_area(load_codelists(), area, period)
    spans = scope.spans(period)
    if facts_built(session) and spans is not None:
        counted = _monthly_from_facts(session, spans)
    else:
        counted = _monthly_counted(session, scope, period)
    months = _months(period)
    companies = {key: counted.get(key, (0, 0))[0] for key in months}
    lines = [] if published_total is None else [Line(tuple(months), "total")]
    hidden = suppress({**companies, "total": published_total or 0}, lines)
    return [
        {
            "year": year_,
            "month": month_,
            "companies": None if key in hidden else companies[key],
            "approaches": None if key in hidden else counted.get(key, (0, 0))[1],
        }
        for key in months
        for year_, month_ in [key]
    ]


def _monthly_counted(session: Session, scope, period: Period) -> dict[tuple, tuple[int, int]]:
    needs = expressed_needs(session, organisation_type=False)
    year, month = extract("year", needs.c.day), extract("month", needs.c.day)
    query = (
        select(
            year,
            month,
            func.count(distinct(needs.c.company_id)),
            func.count(distinct(needs.c.approach_id)),
        )
        .where(
            needs.c.day.between(period.start, period.end),
            scope.condition(needs.c.municipality_code, needs.c.day),
        )
        .group_by(year, month)
    )
    return {(int(y), int(m)): (c, a) for y, m, c, a in session.execute(query)}


def _monthly_from_facts(session: Session, spans) -> dict[tuple, tuple[int, int]]:
    """The months wholly in the period and the area from the monthly sums of the report facts
    (a company counts in the month when its previous fact lies before it), the others from the
    fact rows. A company has one municipality, so the municipalities' counts add up."""
    counted: dict[tuple, tuple[int, int]] = {}

    def add(rows) -> None:
        for day, companies, approaches in rows:
            key = (day.year, day.month)
            before = counted.get(key, (0, 0))
            counted[key] = (before[0] + int(companies or 0), before[1] + int(approaches or 0))

    sums, facts = ReportNeedMonth.__table__.c, ReportNeedFact.__table__.c
    for (first, last), codes in spans_by_days(spans).items():
        whole = whole_months(first, last)
        partial = [(first, last)]
        if whole is not None:
            add(
                session.execute(
                    select(
                        sums.month,
                        func.sum(sums.facts).filter(sums.before_month < sums.month),
                        func.sum(sums.approaches),
                    )
                    .where(
                        sums.level == COMPANY,
                        sums.month.between(whole[0], whole[1].replace(day=1)),
                        sums.municipality_code.in_(codes),
                    )
                    .group_by(sums.month)
                )
            )
            partial = [
                (start, end)
                for start, end in ((first, whole[0] - _DAY), (whole[1] + _DAY, last))
                if start <= end
            ]
        for start, end in partial:
            month = MonthOf(facts.day)
            add(
                session.execute(
                    select(
                        month,
                        func.count(distinct(facts.company_id)),
                        func.count(distinct(facts.approach_id)),
                    )
                    .where(
                        facts.day.between(start, end),
                        facts.municipality_code.in_(codes),
                        facts.approach_first == true(),
                    )
                    .group_by(month)
                )
            )
    return counted


_DAY = dt.timedelta(days=1)


def _months(period: Period) -> list[tuple[int, int]]:
    months = []
    year, month = period.start.year, period.start.month
    while (year, month) <= (period.end.year, period.end.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
