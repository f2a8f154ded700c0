"""The coordination report: is over-contact a real problem for companies?

For an area and a period it gives, over the approaches that took place (planned ones do not
count) to companies whose municipality belonged to the area on the approach's date:

* how many companies were approached, and how often: companies by number of approaches
  (buckets 1, 2, 3, 4-5, 6+) and by number of distinct organisations that approached them
  (1, 2, 3, 4+);
* the share of approaches that were uncoordinated (``approach.coordinated`` is false, as the
  coordination rules left it);
* the share of approaches preceded by a prior-contact check of the company by one of the
  approach's own organisations, on the day of the approach or up to ``lookup_valid_days`` before
  it (days in Europe/Copenhagen, as the rules count them), and the median lead time in days
  from the latest such check to the approach;
* flags raised in the period (any status), in total and per organisation type (a flag counts
  for every type among its organisations);
* the same figures per municipality of the area.

Every figure is derived from a number of companies and is suppressed by
:mod:`coordination.reports.suppression` when that number is 1 or 2; the buckets, the
municipalities and the organisation types each form a line with their total. A share is
published only when both its figures are. All counting happens in the database: once the report
facts are built, the approaches are read from ``reportapproachfact`` (one row per approach and
organisation, :mod:`coordination.reports.facts`) in one pass, else from the approaches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping

from sqlalchemy import (
    Date,
    Integer,
    Select,
    and_,
    case,
    cast,
    distinct,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from coordination.config import Rules
from coordination.models import (
    Approach,
    ApproachOrganisation,
    Company,
    Flag,
    Organisation,
    PriorContactCheck,
    ReportApproachFact,
)
from coordination.needs.codelists import CodeLists, load_codelists
from coordination.reports import (
    AreaScope,
    Period,
    allow_memory_to_aggregate,
    resolve_area,
    share,
)
from coordination.reports.cache import Memo, live
from coordination.reports.competence_needs import ORGANISATION_TYPE_LABELS
from coordination.reports.facts import facts_built
from coordination.reports.suppression import MIN_COMPANIES, RULE, Line, suppress

TIMEZONE = "Europe/Copenhagen"  # the zone the coordination rules count check days in
# (label, fewest, most or None for no upper bound)
APPROACH_BUCKETS = (("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4-5", 4, 5), ("6+", 6, None))
ORGANISATION_BUCKETS = (("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4+", 4, None))


@dataclasses.dataclass(frozen=True)
class CoordinationRequest:
    area: str
    period: Period


def coordination_report(
    session: Session,
    request: CoordinationRequest,
    rules: Rules,
    codelists: CodeLists | None = None,
    memo: Memo = live,
) -> dict:
    """The report as a JSON-ready dict (see ``CoordinationReportSchema`` in the API).

    ``memo`` may return the costly parts from a cache (``coordination.reports.cache``): the
    counts of the approach facts, and the checks (keyed also by the checks as stored); flags are
    always counted live. Raises :class:`coordination.reports.ReportRequestError` for an unknown
    area.
    """
    codelists = codelists or load_codelists()
    scope = resolve_area(codelists, request.area, request.period)
    counts = _Counts.gather(session, scope, request.period, rules, memo)
    municipalities = scope.municipality_codes(request.period)
    return {
        "area": scope.as_dict(request.period),
        "period": request.period.as_dict(),
        "rules": {
            "window_days": rules.window_days,
            "lookup_valid_days": rules.lookup_valid_days,
            "flag_threshold": rules.flag_threshold,
        },
        "suppression": {"min_companies": MIN_COMPANIES, "rule": RULE},
        **_Publication(counts, municipalities, codelists).sections(),
    }


# --- counting in the database -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _MunicipalityCounts:
    companies: int = 0
    approaches: int = 0
    uncoordinated: int = 0
    uncoordinated_companies: int = 0
    flags: int = 0
    flagged_companies: int = 0


@dataclasses.dataclass(frozen=True)
class _Counts:
    by_municipality: Mapping[str, _MunicipalityCounts]
    approaches_per_company: Mapping[str, int]  # bucket -> companies
    organisations_per_company: Mapping[str, int]
    checked: tuple[int, int]  # (approaches, companies)
    median_lead_days: float | None
    flags_by_type: Mapping[str, tuple[int, int]]  # type -> (flags, companies)
    flags_total: tuple[int, int]

    @classmethod
    def gather(
        cls, session: Session, scope: AreaScope, period: Period, rules: Rules, memo: Memo
    ) -> _Counts:
        allow_memory_to_aggregate(session)
        first_days = scope.spans(period)
        if facts_built(session) and first_days is not None:
            by_municipality, approaches_per_company, organisations_per_company = _facts_counts(
                session, scope, period, {code: span[0] for code, span in first_days.items()}, memo
            )
            checks = _facts_checks(session, scope, period, rules, memo)
        else:
            by_municipality, approaches_per_company = _per_company_counts(session, scope, period)
            organisations_per_company = _histogram(
                session, _organisations_per_company(scope, period), ORGANISATION_BUCKETS
            )
            checks = _checks(session, _checked_approaches(scope, period, rules))
        approaches_checked, companies_checked, median_lead_days = checks
        return cls(
            by_municipality=_with_flags(session, scope, period, by_municipality),
            approaches_per_company=approaches_per_company,
            organisations_per_company=organisations_per_company,
            checked=(approaches_checked, companies_checked),
            median_lead_days=median_lead_days,
            flags_by_type=_flags_by_type(session, scope, period),
            flags_total=_flags_total(session, scope, period),
        )


def _approaches_in_scope(scope: AreaScope, period: Period, *columns) -> Select:
    return (
        select(*columns)
        .select_from(Approach)
        .join(Company, Company.id == Approach.company_id)
        .where(
            Approach.planned == false(),
            Approach.date.between(period.start, period.end),
            scope.condition(Company.municipality_code, Approach.date),
        )
    )


def _per_company_counts(
    session: Session, scope: AreaScope, period: Period
) -> tuple[dict[str, _MunicipalityCounts], dict[str, int]]:
    """Companies, approaches and uncoordinated approaches per municipality, and companies by
    number of approaches: one statement, so the approaches are grouped per company once."""
    uncoordinated = case((Approach.coordinated == false(), 1), else_=0)
    per_company = (
        _approaches_in_scope(
            scope,
            period,
            Company.municipality_code.label("municipality_code"),
            func.count(Approach.id).label("approaches"),
            func.sum(uncoordinated).label("uncoordinated"),
        )
        .group_by(Approach.company_id, Company.municipality_code)
        .cte("per_company")
    )
    by_municipality = select(
        literal(_MUNICIPALITY).label("kind"),
        per_company.c.municipality_code.label("key"),
        func.count().label("companies"),
        func.sum(per_company.c.approaches).label("approaches"),
        func.sum(per_company.c.uncoordinated).label("uncoordinated"),
        func.count(case((per_company.c.uncoordinated > 0, 1))).label("unco_companies"),
    ).group_by(per_company.c.municipality_code)
    bucket = _bucket(per_company.c.approaches, APPROACH_BUCKETS)
    by_bucket = select(literal(_BUCKET), bucket, func.count(), null(), null(), null()).group_by(
        bucket
    )
    found: dict[str, _MunicipalityCounts] = {}
    histogram = {label: 0 for label, _, _ in APPROACH_BUCKETS}
    for kind, key, companies, approaches, unco, unco_companies in session.execute(
        union_all(by_municipality, by_bucket)
    ):
        if kind == _BUCKET:
            histogram[key] = companies
        else:
            found[key] = _MunicipalityCounts(companies, int(approaches), int(unco), unco_companies)
    return found, histogram


_MUNICIPALITY, _BUCKET, _ORGANISATIONS = "municipality", "bucket", "organisations"


def _facts_counts(
    session: Session,
    scope: AreaScope,
    period: Period,
    first_days: dict[str, dt.date],
    memo: Memo,
) -> tuple[dict[str, _MunicipalityCounts], dict[str, int], dict[str, int]]:
    """:func:`_from_facts` through ``memo``, keyed by what it depends on: the period and the
    area's municipalities over it."""

    def compute() -> list:
        found, by_approaches, by_organisations = _from_facts(session, scope, period, first_days)
        rows = {code: dataclasses.astuple(counts) for code, counts in found.items()}
        return [rows, by_approaches, by_organisations]

    parameters = {
        "period": period.as_dict(),
        "segments": _segments_key(scope),
    }
    rows, by_approaches, by_organisations = memo("coordination-facts", parameters, compute)
    found = {code: _MunicipalityCounts(*values) for code, values in rows.items()}
    return found, by_approaches, by_organisations


def _facts_checks(
    session: Session, scope: AreaScope, period: Period, rules: Rules, memo: Memo
) -> list:
    """:func:`_checks` of the approach facts through ``memo``, keyed also by the checks as they
    are now: their number and newest id change with every check stored or deleted (and the
    number when one stored out of id order commits late); a check moved to another company (a
    merge) is followed by a refresh of both companies' facts."""
    stored = session.execute(select(func.count(), func.max(PriorContactCheck.id))).one()
    parameters = {
        "period": period.as_dict(),
        "segments": _segments_key(scope),
        "lookup_valid_days": rules.lookup_valid_days,
        "checks": list(stored),
    }
    compute = functools.partial(_checks, session, _checked_facts(scope, period, rules))
    return memo("coordination-checks", parameters, compute)


def _checks(session: Session, checked: Select) -> list:
    """[approaches, companies, median lead days] of ``checked`` (approaches with their lead
    time), in one statement: the lead times come back counted per day (at most
    ``lookup_valid_days`` + 1 of them) and the median is found among those."""
    c = checked.cte("checked").c
    query = union_all(
        select(c.lead_days, func.count(), null()).group_by(c.lead_days),
        select(null(), null(), func.count(distinct(c.company_id))),
    )
    leads, companies = [], 0
    for lead_days, approaches, distinct_companies in session.execute(query):
        if lead_days is None:
            companies = distinct_companies
        else:
            leads.append((lead_days, approaches))
    return [sum(n for _, n in leads), companies, _median(leads)]


def _median(counted: list[tuple[int, int]]) -> float | None:
    """The median of the values counted in ``counted`` (value, how often): the middle one, or
    the mean of the two middle ones."""
    total = sum(n for _, n in counted)
    if total == 0:
        return None
    ordered = sorted(counted)

    def at(position: int) -> float:
        seen = 0
        for value, n in ordered:
            seen += n
            if position < seen:
                return float(value)
        raise IndexError(position)

    middle = [at(total // 2)] if total % 2 else [at(total // 2 - 1), at(total // 2)]
    return sum(middle) / len(middle)


def _segments_key(scope: AreaScope) -> list:
    return [[s.start, s.end, sorted(s.municipality_codes)] for s in scope.segments]


def _from_facts(
    session: Session, scope: AreaScope, period: Period, first_days: dict[str, dt.date]
) -> tuple[dict[str, _MunicipalityCounts], dict[str, int], dict[str, int]]:
    """What :func:`_per_company_counts` and the organisations per company give, from the
    approach facts in one pass: a company's organisations are its rows whose organisation it
    had no row of since the first day its municipality counts in the period."""
    f = ReportApproachFact.__table__.c
    start = literal(period.start, Date)
    if set(first_days.values()) - {period.start}:
        start = case(first_days, value=f.municipality_code, else_=start)
    counted = f.approach_first == true()
    per_company = (
        select(
            # A company's facts all carry its municipality.
            func.min(f.municipality_code).label("municipality_code"),
            func.count().filter(counted).label("approaches"),
            func.count().filter(and_(counted, f.coordinated == false())).label("uncoordinated"),
            func.count()
            .filter(
                and_(
                    f.organisation_id.is_not(None),
                    or_(f.organisation_before.is_(None), f.organisation_before < start),
                )
            )
            .label("organisations"),
        )
        .where(
            f.day.between(period.start, period.end),
            scope.condition(f.municipality_code, f.day),
        )
        .group_by(f.company_id)
        .cte("per_company")
    )
    c = per_company.c
    by_municipality = select(
        literal(_MUNICIPALITY).label("kind"),
        c.municipality_code.label("key"),
        func.count().label("companies"),
        func.sum(c.approaches).label("approaches"),
        func.sum(c.uncoordinated).label("uncoordinated"),
        func.count(case((c.uncoordinated > 0, 1))).label("unco_companies"),
    ).group_by(c.municipality_code)
    by_approaches = _bucket(c.approaches, APPROACH_BUCKETS)
    by_organisations = _bucket(c.organisations, ORGANISATION_BUCKETS)
    found: dict[str, _MunicipalityCounts] = {}
    histograms = {
        _BUCKET: {label: 0 for label, _, _ in APPROACH_BUCKETS},
        _ORGANISATIONS: {label: 0 for label, _, _ in ORGANISATION_BUCKETS},
    }
    query = union_all(
        by_municipality,
        select(literal(_BUCKET), by_approaches, func.count(), null(), null(), null()).group_by(
            by_approaches
        ),
        select(literal(_ORGANISATIONS), by_organisations, func.count(), null(), null(), null())
        .where(c.organisations > 0)
        .group_by(by_organisations),
    )
    for kind, key, companies, approaches, unco, unco_companies in session.execute(query):
        if kind == _MUNICIPALITY:
            found[key] = _MunicipalityCounts(companies, int(approaches), int(unco), unco_companies)
        else:
            histograms[kind][key] = companies
    return found, histograms[_BUCKET], histograms[_ORGANISATIONS]


def _checked_facts(scope: AreaScope, period: Period, rules: Rules) -> Select:
    """:func:`_checked_approaches` from the approach facts."""
    f = ReportApproachFact.__table__.c
    check = PriorContactCheck.__table__.c
    lead = _DaysBetween(f.day, _LocalDate(check.checked_at))
    return (
        select(
            f.approach_id.label("approach_id"),
            f.company_id.label("company_id"),
            func.min(lead).label("lead_days"),
        )
        .select_from(ReportApproachFact.__table__)
        .join(
            PriorContactCheck.__table__,
            and_(check.company_id == f.company_id, check.organisation_id == f.organisation_id),
        )
        .where(
            f.day.between(period.start, period.end),
            scope.condition(f.municipality_code, f.day),
            lead.between(0, rules.lookup_valid_days),
        )
        .group_by(f.approach_id, f.company_id)
    )


def _with_flags(
    session: Session, scope: AreaScope, period: Period, found: dict[str, _MunicipalityCounts]
) -> dict[str, _MunicipalityCounts]:
    flag_query = _flags_in_scope(
        scope,
        period,
        Company.municipality_code,
        func.count(),
        func.count(distinct(Flag.company_id)),
    ).group_by(Company.municipality_code)
    for code, flags, companies in session.execute(flag_query):
        found[code] = dataclasses.replace(
            found.get(code, _MunicipalityCounts()), flags=flags, flagged_companies=companies
        )
    return found


def _organisations_per_company(scope: AreaScope, period: Period) -> Select:
    return (
        _approaches_in_scope(
            scope, period, func.count(distinct(ApproachOrganisation.organisation_id)).label("n")
        )
        .join(ApproachOrganisation, ApproachOrganisation.approach_id == Approach.id)
        .group_by(Approach.company_id)
    )


def _bucket(n, buckets):
    *bounded, (open_ended, _, _) = buckets
    return case(*((n <= most, label) for label, _, most in bounded), else_=open_ended).label(
        "bucket"
    )


def _histogram(session: Session, per_company: Select, buckets) -> dict[str, int]:
    counts = per_company.subquery("per_company")
    bucket = _bucket(counts.c.n, buckets)
    rows = session.execute(select(bucket, func.count()).group_by(bucket)).all()
    found = {label: companies for label, companies in rows}
    return {label: found.get(label, 0) for label, _, _ in buckets}


def _checked_approaches(scope: AreaScope, period: Period, rules: Rules) -> Select:
    """Approaches preceded by a check of one of their organisations, with the lead time in days
    from the latest such check."""
    lead = _DaysBetween(Approach.date, _LocalDate(PriorContactCheck.checked_at))
    return (
        _approaches_in_scope(
            scope,
            period,
            Approach.id.label("approach_id"),
            Approach.company_id.label("company_id"),
            func.min(lead).label("lead_days"),
        )
        .join(ApproachOrganisation, ApproachOrganisation.approach_id == Approach.id)
        .join(
            PriorContactCheck,
            and_(
                PriorContactCheck.company_id == Approach.company_id,
                PriorContactCheck.organisation_id == ApproachOrganisation.organisation_id,
            ),
        )
        .where(lead.between(0, rules.lookup_valid_days))
        .group_by(Approach.id, Approach.company_id)
    )


def _flags_in_scope(scope: AreaScope, period: Period, *columns) -> Select:
    return (
        select(*columns)
        .select_from(Flag)
        .join(Company, Company.id == Flag.company_id)
        .where(
            Flag.raised_on.between(period.start, period.end),
            scope.condition(Company.municipality_code, Flag.raised_on),
        )
    )


def _flags_total(session: Session, scope: AreaScope, period: Period) -> tuple[int, int]:
    query = _flags_in_scope(scope, period, func.count(), func.count(distinct(Flag.company_id)))
    flags, companies = session.execute(query).one()
    return flags, companies


def _flags_by_type(
    session: Session, scope: AreaScope, period: Period
) -> dict[str, tuple[int, int]]:
    # A flag stores its organisations' names as a JSON list; each becomes a row to join on.
    if session.get_bind().dialect.name == "sqlite":
        names = func.json_each(Flag.organisations).table_valued("value")
    else:
        names = func.json_array_elements_text(Flag.organisations).table_valued("value")
    query = (
        _flags_in_scope(
            scope,
            period,
            Organisation.type,
            func.count(distinct(Flag.id)),
            func.count(distinct(Flag.company_id)),
        )
        .join(names, true())
        .join(Organisation, Organisation.name == names.c.value)
        .group_by(Organisation.type)
    )
    return {kind: (flags, companies) for kind, flags, companies in session.execute(query)}


# --- dialect-specific date arithmetic ----------------------------------------------------------


class _LocalDate(FunctionElement):
    """The calendar date in Europe/Copenhagen of a UTC timestamp column."""

    type = Date()
    inherit_cache = True
    name = "copenhagen_date"


@compiles(_LocalDate)
def _local_date_postgresql(element, compiler, **kw):
    (moment,) = element.clauses
    return compiler.process(cast(func.timezone(TIMEZONE, moment), Date), **kw)


@compiles(_LocalDate, "sqlite")
def _local_date_sqlite(element, compiler, **kw):
    # SQLite stores the UTC time as text and knows no time zones: apply the EU summer-time rule
    # (from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of October).
    (moment,) = element.clauses
    year = func.strftime("%Y", moment)

    def last_sunday_0100(month_end: str):
        last_sunday = func.date(year.concat(month_end), "-6 days", "weekday 0")
        return func.datetime(last_sunday, "+1 hours")

    summer = and_(moment >= last_sunday_0100("-03-31"), moment < last_sunday_0100("-10-31"))
    offset = case((summer, "+2 hours"), else_="+1 hours")
    return compiler.process(func.date(moment, offset), **kw)


class _DaysBetween(FunctionElement):
    """Whole days from the date ``earlier`` to the date ``later`` (negative if reversed)."""

    type = Integer()
    inherit_cache = True
    name = "days_between"


@compiles(_DaysBetween)
def _days_between_postgresql(element, compiler, **kw):
    later, earlier = element.clauses
    return compiler.process(later - earlier, **kw)


@compiles(_DaysBetween, "sqlite")
def _days_between_sqlite(element, compiler, **kw):
    later, earlier = element.clauses
    return compiler.process(cast(func.julianday(later) - func.julianday(earlier), Integer), **kw)


# --- publication with suppression --------------------------------------------------------------

# Figures that are suppressed together, by the companies they derive from; the key of a figure
# is (name, municipality code or "total") or (name, bucket or organisation type).
_COMPANIES = "companies"  # companies approached, and their approaches
_UNCOORDINATED = "uncoordinated"  # uncoordinated approaches, and the companies they went to
_FLAGS = "flags"  # flags raised, and the companies flagged
_CHECKED = "checked"  # approaches preceded by a check, and their companies
_BY_APPROACHES = "approaches-per-company"
_BY_ORGANISATIONS = "organisations-per-company"
_FLAGS_BY_TYPE = "flags-by-type"
_TOTAL = "total"


class _Publication:
    """Applies suppression to the counts and lays them out as the report's sections."""

    def __init__(self, counts: _Counts, municipalities: list[str], codelists: CodeLists) -> None:
        self.counts = counts
        self.codelists = codelists
        # Every municipality of the area is listed, also those with nothing to count.
        self.municipalities = sorted(set(municipalities) | set(counts.by_municipality))
        self.rows = {
            m: counts.by_municipality.get(m, _MunicipalityCounts()) for m in self.municipalities
        }
        self.total = _MunicipalityCounts(
            *(sum(getattr(r, f.name) for r in self.rows.values()) for f in _FIELDS)
        )
        others = sorted(set(counts.flags_by_type) - set(ORGANISATION_TYPE_LABELS))
        self.types = [*ORGANISATION_TYPE_LABELS, *others]
        self.hidden = suppress(self._companies(), self._lines())

    def _companies(self) -> dict[tuple[str, str], int]:
        """For every published figure, the number of companies it derives from."""
        c = self.counts
        companies = {(_CHECKED, _TOTAL): c.checked[1]}
        for m, row in [*self.rows.items(), (_TOTAL, self.total)]:
            companies[(_COMPANIES, m)] = row.companies
            companies[(_UNCOORDINATED, m)] = row.uncoordinated_companies
            companies[(_FLAGS, m)] = row.flagged_companies
        companies.update({(_BY_APPROACHES, b): n for b, n in c.approaches_per_company.items()})
        companies.update(
            {(_BY_ORGANISATIONS, b): n for b, n in c.organisations_per_company.items()}
        )
        companies.update(
            {(_FLAGS_BY_TYPE, t): c.flags_by_type.get(t, (0, 0))[1] for t in self.types}
        )
        return companies

    def _lines(self) -> list[Line]:
        c = self.counts
        lines = [
            Line(
                tuple((_BY_APPROACHES, b) for b in c.approaches_per_company), (_COMPANIES, _TOTAL)
            ),
            Line(
                tuple((_BY_ORGANISATIONS, b) for b in c.organisations_per_company),
                (_COMPANIES, _TOTAL),
            ),
            Line(tuple((_FLAGS_BY_TYPE, t) for t in self.types), (_FLAGS, _TOTAL)),
        ]
        for figure in (_COMPANIES, _UNCOORDINATED, _FLAGS):
            lines.append(Line(tuple((figure, m) for m in self.municipalities), (figure, _TOTAL)))
        return lines

    def _shown(self, figure: str, key: str, value: int) -> int | None:
        return None if (figure, key) in self.hidden else value

    def _is_hidden(self, figure: str, key: str) -> bool:
        return (figure, key) in self.hidden

    def sections(self) -> dict:
        return {
            "companies": self._shown(_COMPANIES, _TOTAL, self.total.companies),
            "approaches": self._shown(_COMPANIES, _TOTAL, self.total.approaches),
            "suppressed": self._is_hidden(_COMPANIES, _TOTAL),
            "approaches_per_company": self._buckets(
                _BY_APPROACHES, self.counts.approaches_per_company
            ),
            "organisations_per_company": self._buckets(
                _BY_ORGANISATIONS, self.counts.organisations_per_company
            ),
            "uncoordinated": self._uncoordinated(),
            "prior_contact_checks": self._checks(),
            "flags": self._flags(),
            "by_municipality": [self._municipality(m) for m in self.municipalities],
        }

    def _buckets(self, figure: str, buckets: Mapping[str, int]) -> list[dict]:
        return [
            {
                "bucket": bucket,
                "companies": self._shown(figure, bucket, n),
                "suppressed": self._is_hidden(figure, bucket),
            }
            for bucket, n in buckets.items()
        ]

    def _uncoordinated(self) -> dict:
        approaches = self._shown(_UNCOORDINATED, _TOTAL, self.total.uncoordinated)
        return {
            "approaches": approaches,
            "companies": self._shown(_UNCOORDINATED, _TOTAL, self.total.uncoordinated_companies),
            "share": share(approaches, self._shown(_COMPANIES, _TOTAL, self.total.approaches)),
            "suppressed": self._is_hidden(_UNCOORDINATED, _TOTAL),
        }

    def _checks(self) -> dict:
        approaches, companies = self.counts.checked
        shown = self._shown(_CHECKED, _TOTAL, approaches)
        return {
            "approaches": shown,
            "companies": self._shown(_CHECKED, _TOTAL, companies),
            "share": share(shown, self._shown(_COMPANIES, _TOTAL, self.total.approaches)),
            "median_lead_days": None if shown is None else self.counts.median_lead_days,
            "suppressed": self._is_hidden(_CHECKED, _TOTAL),
        }

    def _flags(self) -> dict:
        flags, companies = self.counts.flags_total
        return {
            "flags": self._shown(_FLAGS, _TOTAL, flags),
            "companies": self._shown(_FLAGS, _TOTAL, companies),
            "suppressed": self._is_hidden(_FLAGS, _TOTAL),
            "by_organisation_type": [self._flag_type(kind) for kind in self.types],
        }

    def _flag_type(self, kind: str) -> dict:
        flags, companies = self.counts.flags_by_type.get(kind, (0, 0))
        return {
            "organisation_type": kind,
            "label": ORGANISATION_TYPE_LABELS.get(kind, kind),
            "flags": self._shown(_FLAGS_BY_TYPE, kind, flags),
            "companies": self._shown(_FLAGS_BY_TYPE, kind, companies),
            "suppressed": self._is_hidden(_FLAGS_BY_TYPE, kind),
        }

    def _municipality(self, code: str) -> dict:
        row = self.rows[code]
        known = self.codelists.municipalities.get(code)
        approaches = self._shown(_COMPANIES, code, row.approaches)
        uncoordinated = self._shown(_UNCOORDINATED, code, row.uncoordinated)
        return {
            "municipality_code": code,
            "name": known.name if known else code,
            "companies": self._shown(_COMPANIES, code, row.companies),
            "approaches": approaches,
            "suppressed": self._is_hidden(_COMPANIES, code),
            "uncoordinated_approaches": uncoordinated,
            "share_uncoordinated": share(uncoordinated, approaches),
            "uncoordinated_suppressed": self._is_hidden(_UNCOORDINATED, code),
            "flags": self._shown(_FLAGS, code, row.flags),
            "flags_suppressed": self._is_hidden(_FLAGS, code),
        }


_FIELDS = dataclasses.fields(_MunicipalityCounts)
