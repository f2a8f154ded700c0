"""The councils' competence-needs report: which needs companies expressed, where and how often.

A need counts for an approach when one of the approach's source records noted it; the same need
noted in two records of one joint approach counts once. Needs are the pair (need type, taxonomy
code); needs that map nowhere are counted together per need type under the code
``unclassified`` (their free-text labels are for coordinators, not for council reports).

For every need the report gives the number of distinct companies and of approaches that
expressed it, in total and per group (``group_by``):

``sector``
    the 10-grouping of the company's DB07 industry section; companies whose section is not
    known form the group ``unknown``;
``municipality``
    the company's municipality;
``organisation_type``
    the type of the organisation whose record noted the need (an approach made jointly by a
    jobcentre and a VEU-centre counts under both when both noted the need).

Only approaches that took place count (planned ones do not), dated in the period, by companies
whose municipality belonged to the area on the approach's date. Companies with no known
municipality belong to no area. Every figure comes with the same figure for the previous period
of equal length and the change; figures are suppressed by :mod:`coordination.reports.suppression`
(each period on its own; a change is published only when both its figures are). Cells a table
leaves out are zero. The counting happens in the database: GROUP BY queries per cell and per
group covering both periods; need totals and the grand total are sums of those where groups
cannot overlap (sector, municipality) and queries of their own where they can (organisation
type). Once the report facts are built (:mod:`coordination.reports.facts`: the needs of
approaches in one table, with marks of each company's previous and next row per key, and their
sums per month) the queries read the sums for the whole months of a period and the rows for the
days before and after them, and count distinct companies and approaches as sums and filtered
counts; occupations rolled up to
sub-major or major groups, and areas a municipality leaves and rejoins within a period, are
counted with COUNT(DISTINCT) over the same rows instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import (
    Select,
    String,
    Subquery,
    case,
    distinct,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlmodel import Session

from coordination.models import ReportNeedFact, ReportNeedMonth
from coordination.needs.codelists import DISCO_PREFIX, CodeLists, load_codelists
from coordination.reports import (
    AreaScope,
    Period,
    ReportRequestError,
    allow_memory_to_aggregate,
    resolve_area,
)
from coordination.reports.facts import (
    COMPANY,
    NEED,
    TYPE,
    TYPE_NEED,
    UNCLASSIFIED,
    expressed_needs,
    facts_built,
    level_columns,
    spans_by_days,
    whole_months,
)
from coordination.reports.suppression import MIN_COMPANIES, RULE, suppress_table

GROUP_BY = ("sector", "municipality", "organisation_type")
OCCUPATION_LEVELS = ("unit", "sub_major", "major")
UNCLASSIFIED_LABEL = "Ikke klassificeret"
UNKNOWN_GROUP = "unknown"
UNKNOWN_SECTOR_LABEL = "Ukendt branche"
TOTAL = "total"
ORGANISATION_TYPE_LABELS = {
    "vaeksthus": "Væksthus (erhvervshus)",
    "jobcenter": "Jobcenter",
    "veu": "VEU-center",
}
_CURRENT, _PREVIOUS = "current", "previous"
# Length of "disco:" plus the digits that name a sub-major (2) or major (1) group.
_DISCO_KEY_LENGTH = {"sub_major": len(DISCO_PREFIX) + 2, "major": len(DISCO_PREFIX) + 1}


@dataclasses.dataclass(frozen=True)
class CompetenceNeedsRequest:
    """What a council analyst asks for. ``occupation_level`` rolls DISCO occupation codes up to
    their sub-major or major group (``unit`` keeps the 4-digit unit group)."""

    area: str
    period: Period
    group_by: str = "sector"
    top: int = 5
    occupation_level: str = "unit"

    def __post_init__(self) -> None:
        if self.group_by not in GROUP_BY:
            raise ReportRequestError("group_by", f"group_by must be one of {', '.join(GROUP_BY)}")
        if self.occupation_level not in OCCUPATION_LEVELS:
            raise ReportRequestError(
                "occupation_level", f"occupation_level must be one of {OCCUPATION_LEVELS}"
            )
        if self.top < 1:
            raise ReportRequestError("top", "top must be at least 1")


@dataclasses.dataclass(frozen=True)
class _Counts:
    companies: int = 0
    approaches: int = 0


NeedKey = tuple[str, str]  # (need type, need code)
_Tally = dict[str, dict[tuple, _Counts]]  # period -> grouping key -> counts


def competence_needs_report(
    session: Session, request: CompetenceNeedsRequest, codelists: CodeLists | None = None
) -> dict:
    """The report as a JSON-ready dict (see ``CompetenceNeedsReportSchema`` in the API).

    Raises :class:`ReportRequestError` for an unknown area.
    """
    codelists = codelists or load_codelists()
    current = request.period
    previous = current.previous()
    scope = resolve_area(codelists, request.area, Period(previous.start, current.end))
    allow_memory_to_aggregate(session)
    spans = _area_spans(scope, (current, previous))
    if facts_built(session) and request.occupation_level == "unit" and spans is not None:
        tallies = _marked_tallies(session, _MarkedCounts(spans), request.group_by, codelists)
        if request.group_by != "organisation_type":
            tallies.update(rows=_without_group(tallies["cells"]))
            tallies.update(grand=_without_group(tallies["columns"]))
    else:
        base = _base_query(session, scope, current, previous, request, codelists)
        tallies = _tallies(session, base.subquery("needs_expressed"), request.group_by)
    return _Assembly(request, codelists, tallies).report(scope, previous)


# --- the database part ------------------------------------------------------------------------


def _base_query(
    session: Session,
    scope: AreaScope,
    current: Period,
    previous: Period,
    request: CompetenceNeedsRequest,
    codelists: CodeLists,
) -> Select:
    """One row per (approach, need, organisation type) in both periods, with the keys to group
    by."""
    needs = expressed_needs(session, organisation_type=request.group_by == "organisation_type")
    period = case((needs.c.day >= current.start, _CURRENT), else_=_PREVIOUS)
    return select(
        needs.c.approach_id,
        needs.c.company_id,
        period.label("period"),
        needs.c.need_type,
        _need_key(needs.c.taxonomy_code, request.occupation_level).label("need_key"),
        _group_key(needs, request.group_by, codelists).label("group_key"),
    ).where(
        needs.c.day.between(previous.start, current.end),
        scope.condition(needs.c.municipality_code, needs.c.day),
    )


def _need_key(taxonomy_code, occupation_level: str):
    classified = func.coalesce(taxonomy_code, UNCLASSIFIED)
    if occupation_level == "unit":
        return classified
    length = _DISCO_KEY_LENGTH[occupation_level]
    return case(
        (taxonomy_code.like(DISCO_PREFIX + "%"), func.substr(taxonomy_code, 1, length)),
        else_=classified,
    )


def _group_key(needs, group_by: str, codelists: CodeLists):
    if group_by == "municipality":
        return needs.c.municipality_code
    if group_by == "organisation_type":
        return needs.c.organisation_type
    group_of_section = {
        section: codelists.industry_group(section).code for section in codelists.industry_sections
    }
    return case(group_of_section, value=needs.c.industry_section, else_=UNKNOWN_GROUP)


def _tallies(session: Session, base: Subquery, group_by: str) -> dict[str, _Tally]:
    """Distinct companies and approaches per cell, need, group and in all, for both periods."""
    cells = _tally(session, base, "group_key", "need_type", "need_key")
    columns = _tally(session, base, "group_key")
    if group_by == "organisation_type":  # one approach can count in several groups
        rows, grand = _tally(session, base, "need_type", "need_key"), _tally(session, base)
    else:  # every company, and so each of its approaches, is in exactly one group
        rows, grand = _without_group(cells), _without_group(columns)
    return {"cells": cells, "rows": rows, "columns": columns, "grand": grand}


def _tally(session: Session, base: Subquery, *keys: str) -> _Tally:
    columns = [base.c[key] for key in keys]
    query = select(
        base.c.period,
        *columns,
        func.count(distinct(base.c.company_id)),
        func.count(distinct(base.c.approach_id)),
    ).group_by(base.c.period, *columns)
    tally: _Tally = {_CURRENT: {}, _PREVIOUS: {}}
    for period, *values, companies, approaches in session.execute(query):
        tally[period][tuple(values)] = _Counts(companies, approaches)
    return tally


def _without_group(tally: _Tally) -> _Tally:
    """Totals over the groups (the first key) of a tally whose groups do not overlap."""
    return {
        period: {key[1:]: found for key, found in counts.items()}
        for period, counts in _regrouped(tally, lambda _: None).items()
    }


# --- counting by the marks of the report facts ----------------------------------------------


def _area_spans(scope: AreaScope, periods) -> dict[str, dict[str, tuple[dt.date, dt.date]]] | None:
    """For each period, the first and last day each municipality of the area counts in it; None
    when a municipality leaves the area and comes back within a period."""
    named = zip((_CURRENT, _PREVIOUS), periods, strict=True)
    found = {name: scope.spans(period) for name, period in named}
    return None if None in found.values() else found


def _marked_tallies(session: Session, counts, group_by: str, codelists: CodeLists):
    if group_by != "sector":
        return counts.tallies(session, group_by)
    # A company has one industry section, so its sector group's counts are the sums of its
    # sections' counts, which the facts keep.
    by_section = counts.tallies(session, group_by)
    group_of = {s: codelists.industry_group(s).code for s in codelists.industry_sections}
    return {
        level: _regrouped(tally, lambda section: group_of.get(section, UNKNOWN_GROUP))
        for level, tally in by_section.items()
    }


def _regrouped(tally: _Tally, group_of) -> _Tally:
    """``tally`` with the group (the first key) mapped by ``group_of`` and the counts of groups
    that map together added up (their companies must not overlap)."""
    regrouped: _Tally = {}
    for period, counts in tally.items():
        totals: dict[tuple, _Counts] = {}
        for (group, *rest), found in counts.items():
            key = (group_of(group), *rest)
            before = totals.get(key, _Counts())
            totals[key] = _Counts(
                before.companies + found.companies, before.approaches + found.approaches
            )
        regrouped[period] = totals
    return regrouped


class _MarkedCounts:
    """Distinct companies and approaches as sums and filtered counts over the report facts.

    A fact row counts a company when the company has no earlier row of the same key in the
    period (its ``*_before`` day lies before the first day its municipality counts), and an
    approach when it is the approach's first row of that key. The whole months of a period are
    read from their monthly sums (``reportneedmonth``: rows whose mark lies before the first
    whole month), the days before and after them from the rows; a row of the days before whose
    next row of its key (``*_after``) falls in the whole months made that row's company counted
    there too, so it is taken off once."""

    # The tallies of each grouping: (level of the facts, the columns they are grouped by).
    _LEVELS = {
        "sector": {
            "cells": (NEED, ("industry_section", "need_type", "taxonomy_code")),
            "columns": (COMPANY, ("industry_section",)),
        },
        "municipality": {
            "cells": (NEED, ("municipality_code", "need_type", "taxonomy_code")),
            "columns": (COMPANY, ("municipality_code",)),
        },
        "organisation_type": {
            "cells": (TYPE_NEED, ("organisation_type", "need_type", "taxonomy_code")),
            "columns": (TYPE, ("organisation_type",)),
            "rows": (NEED, ("need_type", "taxonomy_code")),
            "grand": (COMPANY, ()),
        },
    }

    def __init__(self, spans: dict[str, dict[str, tuple[dt.date, dt.date]]]) -> None:
        self.spans = spans
        self.facts = ReportNeedFact.__table__
        self.levels = level_columns(self.facts)

    def tallies(self, session: Session, group_by: str) -> dict[str, _Tally]:
        return {
            name: self._tally(session, level, keys)
            for name, (level, keys) in self._LEVELS[group_by].items()
        }

    def _tally(self, session: Session, level: int, keys: tuple[str, ...]) -> _Tally:
        parts = []
        for period, spans in self.spans.items():
            for (first, last), codes in spans_by_days(spans).items():
                parts += self._pieces(period, level, keys, first, last, codes)
        totals: dict[tuple, list[int]] = {}
        found_rows = session.execute(union_all(*parts)) if parts else []
        for period, *values, companies, approaches in found_rows:
            found = totals.setdefault((period, *values), [0, 0])
            found[0] += int(companies or 0)
            found[1] += int(approaches or 0)
        tally: _Tally = {_CURRENT: {}, _PREVIOUS: {}}
        for (period, *values), (companies, approaches) in totals.items():
            if companies or approaches:  # a key with no rows left in its monthly sums
                tally[period][tuple(values)] = _Counts(companies, approaches)
        return tally

    def _pieces(self, period, level, keys, first: dt.date, last: dt.date, codes) -> list:
        whole = whole_months(first, last)
        if whole is None:
            return [self._days(period, level, keys, codes, (first, last), first)]
        whole_first, whole_last = whole
        pieces = [self._months(period, level, keys, codes, whole_first, whole_last)]
        if first < whole_first:
            head = (first, whole_first - _DAY)
            pieces.append(self._days(period, level, keys, codes, head, first, whole))
        if whole_last < last:
            pieces.append(self._days(period, level, keys, codes, (whole_last + _DAY, last), first))
        return pieces

    def _days(self, period, level, keys, codes, days, start, whole=None) -> Select:
        f = self.facts.c
        _, before, after, counts_approach = self.levels[level]
        columns = [_day_key(f, key) for key in keys]
        companies = func.count().filter(or_(before.is_(None), before < start))
        if whole is not None:  # counted in the whole months by its next row already
            companies = companies - func.count().filter(after.between(*whole))
        approaches = func.count()
        if counts_approach is not None:
            approaches = approaches.filter(counts_approach == true())
        return (
            select(literal(period, String), *columns, companies, approaches)
            .where(f.day.between(*days), f.municipality_code.in_(codes))
            .group_by(*columns)
        )

    def _months(self, period, level, keys, codes, first: dt.date, last: dt.date) -> Select:
        m = ReportNeedMonth.__table__.c
        columns = [m[key] for key in keys]
        return (
            select(
                literal(period, String),
                *columns,
                func.sum(m.facts).filter(m.before_month < first),
                func.sum(m.approaches),
            )
            .where(
                m.level == level,
                m.month.between(first, last.replace(day=1)),
                m.municipality_code.in_(codes),
            )
            .group_by(*columns)
        )


_DAY = dt.timedelta(days=1)


def _day_key(facts, key: str):
    if key == "industry_section":
        return func.coalesce(facts.industry_section, "")
    if key == "taxonomy_code":
        return func.coalesce(facts.taxonomy_code, UNCLASSIFIED)
    return facts[key]


# --- the report -------------------------------------------------------------------------------


class _Assembly:
    """Turns the four tallies into the published report: order, labels, suppression, change."""

    def __init__(
        self, request: CompetenceNeedsRequest, codelists: CodeLists, tallies: dict[str, _Tally]
    ) -> None:
        self.request = request
        self.codelists = codelists
        self.tallies = tallies
        both = [*tallies["rows"][_CURRENT], *tallies["rows"][_PREVIOUS]]
        self.needs: list[NeedKey] = sorted(set(both), key=self._need_order)
        groups = {g for (g,) in [*tallies["columns"][_CURRENT], *tallies["columns"][_PREVIOUS]]}
        self.groups: list[str] = sorted(groups, key=self._group_order)
        self.hidden = {period: self._suppression(period) for period in (_CURRENT, _PREVIOUS)}

    def report(self, scope: AreaScope, previous: Period) -> dict:
        period = self.request.period
        rows = [self._need_row(need) for need in self.needs]
        groups = [
            {**self._group(group), **self._figure("columns", (group,), ("column", group))}
            for group in self.groups
        ]
        return {
            "area": scope.as_dict(period),
            "period": period.as_dict(),
            "previous_period": previous.as_dict(),
            "group_by": self.request.group_by,
            "occupation_level": self.request.occupation_level,
            "suppression": {"min_companies": MIN_COMPANIES, "rule": RULE},
            "total": self._figure("grand", (), ("grand",)),
            "groups": groups,
            "needs": rows,
            "top_needs_overall": self._top(
                (need, self._published("rows", need, ("row", need))) for need in self.needs
            ),
            "top_needs": [
                {
                    **self._group(group),
                    "needs": self._top(
                        (need, self._published("cells", (group, *need), ("cell", need, group)))
                        for need in self.needs
                    ),
                }
                for group in self.groups
            ],
        }

    # figures

    def _suppression(self, period: str):
        companies = {key: counts.companies for key, counts in self.tallies["cells"][period].items()}
        rows = self.tallies["rows"][period]
        columns = self.tallies["columns"][period]
        suppression = suppress_table(
            cells={((t, c), g): n for (g, t, c), n in companies.items()},
            row_totals={need: rows[need].companies for need in self.needs if need in rows},
            column_totals={g: columns[(g,)].companies for g in self.groups if (g,) in columns},
            grand_total=self.tallies["grand"][period].get((), _Counts()).companies,
        )
        return suppression.hidden

    def _figure(self, level: str, key: tuple, suppression_key: tuple) -> dict:
        now = self.tallies[level][_CURRENT].get(key, _Counts())
        before = self.tallies[level][_PREVIOUS].get(key, _Counts())
        hidden_now = suppression_key in self.hidden[_CURRENT]
        hidden_before = suppression_key in self.hidden[_PREVIOUS]
        either = hidden_now or hidden_before
        return {
            "companies": None if hidden_now else now.companies,
            "approaches": None if hidden_now else now.approaches,
            "previous_companies": None if hidden_before else before.companies,
            "previous_approaches": None if hidden_before else before.approaches,
            "change_companies": None if either else now.companies - before.companies,
            "change_approaches": None if either else now.approaches - before.approaches,
            "suppressed": hidden_now,
            "previous_suppressed": hidden_before,
        }

    def _published(self, level: str, key: tuple, suppression_key: tuple) -> _Counts | None:
        """The current counts when they may be shown and are not zero, else None."""
        counts = self.tallies[level][_CURRENT].get(key)
        if counts is None or suppression_key in self.hidden[_CURRENT]:
            return None
        return counts

    def _need_row(self, need: NeedKey) -> dict:
        cells = [
            {**self._group(group), **self._figure("cells", (group, *need), ("cell", need, group))}
            for group in self.groups
            if any((group, *need) in self.tallies["cells"][p] for p in (_CURRENT, _PREVIOUS))
        ]
        return {**self._need(need), **self._figure("rows", need, ("row", need)), "cells": cells}

    def _top(self, candidates) -> list[dict]:
        published = [
            (need, counts)
            for need, counts in candidates
            if counts is not None and need[1] != UNCLASSIFIED
        ]
        published.sort(key=lambda item: (-item[1].companies, -item[1].approaches, item[0]))
        return [
            {**self._need(need), "companies": counts.companies, "approaches": counts.approaches}
            for need, counts in published[: self.request.top]
        ]

    # labels and order

    def _need(self, need: NeedKey) -> dict:
        need_type, code = need
        known_type = self.codelists.need_types.get(need_type)
        return {
            "need_type": need_type,
            "need_type_label": known_type.label_da if known_type else need_type,
            "code": code,
            "label": self._need_label(code),
        }

    def _need_label(self, code: str) -> str:
        if code == UNCLASSIFIED:
            return UNCLASSIFIED_LABEL
        digits = code.removeprefix(DISCO_PREFIX)
        if code.startswith(DISCO_PREFIX) and len(digits) == 2:
            group = self.codelists.disco_sub_major_groups.get(digits)
            return group.label if group else code
        if code.startswith(DISCO_PREFIX) and len(digits) == 1:
            group = self.codelists.disco_major_groups.get(digits)
            return group.label if group else code
        try:
            return self.codelists.taxonomy_label(code)
        except KeyError:  # a code the shipped lists no longer hold: show it as it is
            return code

    def _group(self, group: str) -> dict:
        return {"group": group, "group_label": self._group_label(group)}

    def _group_label(self, group: str) -> str:
        by = self.request.group_by
        if by == "sector":
            known = self.codelists.industry_groups.get(group)
            return known.label if known else UNKNOWN_SECTOR_LABEL
        if by == "municipality":
            known = self.codelists.municipalities.get(group)
            return known.name if known else group
        return ORGANISATION_TYPE_LABELS.get(group, group)

    def _need_order(self, need: NeedKey) -> tuple:
        types = list(self.codelists.need_types)
        need_type, code = need
        position = types.index(need_type) if need_type in types else len(types)
        return (position, need_type, code == UNCLASSIFIED, code)

    def _group_order(self, group: str) -> tuple:
        if self.request.group_by == "sector":
            return (group == UNKNOWN_GROUP, int(group) if group.isdigit() else 0, group)
        if self.request.group_by == "organisation_type":
            known = list(ORGANISATION_TYPE_LABELS)
            return (known.index(group) if group in known else len(known), group)
        return (False, 0, group)
