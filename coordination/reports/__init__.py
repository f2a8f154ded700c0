"""Council reports: competence needs (``competence_needs``) and coordination
(``coordination_report``), with disclosure control (``suppression``) and CSV/XLSX export
(``export``). No Flask here; every report is a function of a session and its request.

What both reports share lives in this module: the reporting period and its previous period, and
the *area scope*: which companies count, given that council areas are dated (a company counts for
an area when its municipality belonged to the area on the date of the event counted).

Council reports carry no personal data: only counts, shares and code-list labels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, false, or_, text
from sqlmodel import Session

from coordination.needs.codelists import CodeLists

# Dates outside this range are refused at the edge: the previous period must stay computable.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2199, 12, 31)
# Enough to sort and hash a year of two million approaches (and their needs) in memory.
AGGREGATION_WORK_MEM = "256MB"


class ReportRequestError(ValueError):
    """A report was asked for with an unknown area or an impossible period; ``field`` names the
    argument at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Period:
    """Whole days from ``start`` to ``end``, both included."""

    start: dt.date
    end: dt.date

    @classmethod
    def requested(cls, start: dt.date, end: dt.date) -> Period:
        """The period a caller asked for; :class:`ReportRequestError` when ``start`` is after
        ``end`` or either lies outside the supported range."""
        if start > end:
            raise ReportRequestError("from", "'from' must not be after 'to'")
        for field, day in (("from", start), ("to", end)):
            if not EARLIEST_DATE <= day <= LATEST_DATE:
                raise ReportRequestError(
                    field, f"dates must lie between {EARLIEST_DATE} and {LATEST_DATE}"
                )
        return cls(start, end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of equal length that ends the day before this one starts."""
        return Period(self.start - dt.timedelta(days=self.days), self.start - dt.timedelta(days=1))

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


@dataclasses.dataclass(frozen=True)
class AreaSegment:
    """From ``start`` to ``end`` (inclusive) the area holds ``municipality_codes``."""

    start: dt.date
    end: dt.date
    municipality_codes: frozenset[str]


@dataclasses.dataclass(frozen=True)
class AreaScope:
    """An area over a span of days, as the dated code lists define it."""

    area_id: str
    name: str
    segments: tuple[AreaSegment, ...]

    def municipality_codes(self, period: Period) -> list[str]:
        """Every municipality that belongs to the area on some day of ``period``."""
        codes: set[str] = set()
        for segment in self.segments:
            if segment.start <= period.end and segment.end >= period.start:
                codes |= segment.municipality_codes
        return sorted(codes)

    def spans(self, period: Period) -> dict[str, tuple[dt.date, dt.date]] | None:
        """The first and last day of ``period`` on which each municipality belongs to the area;
        None when one leaves the area and comes back within the period (then a company's first
        event in the area is not simply its first event since that day)."""
        days: dict[str, list[tuple[dt.date, dt.date]]] = {}
        for segment in self.segments:
            start, end = max(segment.start, period.start), min(segment.end, period.end)
            for code in segment.municipality_codes if start <= end else ():
                days.setdefault(code, []).append((start, end))
        for spans in days.values():
            spans.sort()
            if any(b[0] > a[1] + dt.timedelta(days=1) for a, b in itertools.pairwise(spans)):
                return None
        return {code: (spans[0][0], spans[-1][1]) for code, spans in days.items()}

    def condition(self, municipality_code: ColumnElement, on: ColumnElement) -> ColumnElement:
        """SQL: the company with ``municipality_code`` belongs to the area on date ``on``."""
        if not self.segments:
            return false()
        return or_(
            *(
                and_(
                    on.between(segment.start, segment.end),
                    municipality_code.in_(sorted(segment.municipality_codes)),
                )
                for segment in self.segments
            )
        )

    def as_dict(self, period: Period) -> dict:
        return {
            "id": self.area_id,
            "name": self.name,
            "municipalities": self.municipality_codes(period),
        }


def area_ids(codelists: CodeLists) -> list[str]:
    """Every area a report may be asked for: council areas, then municipality codes."""
    return sorted(codelists.areas) + sorted(codelists.municipalities)


def resolve_area(codelists: CodeLists, area: str, span: Period) -> AreaScope:
    """The scope of ``area`` (a council area id such as ``rar-oestjylland``, or a 3-digit
    municipality code of the region) over ``span``. A council area's versions are cut to the
    days they were in force; days before its first version belong to no municipality.
    Raises :class:`ReportRequestError` for an unknown area."""
    if area in codelists.municipalities:
        codes = frozenset({area})
        name = codelists.municipality(area).name
        return AreaScope(area, name, (AreaSegment(span.start, span.end, codes),))
    if area not in codelists.areas:
        raise ReportRequestError(
            "area", f"unknown area {area!r}: give a council area id or a municipality code"
        )
    versions = codelists.areas[area]
    return AreaScope(area, versions[-1].name, tuple(_segments(versions, span)))


def _segments(versions: Sequence, span: Period) -> list[AreaSegment]:
    segments = []
    for version, following in zip(versions, [*versions[1:], None], strict=True):
        last_day = following.valid_from - dt.timedelta(days=1) if following else dt.date.max
        start, end = max(version.valid_from, span.start), min(last_day, span.end)
        if start <= end:
            segments.append(AreaSegment(start, end, version.municipality_codes))
    return segments


def share(part: int | None, whole: int | None) -> float | None:
    """``part / whole`` rounded to 4 decimals; None when either is unknown or whole is 0."""
    if part is None or not whole:
        return None
    return round(part / whole, 4)


def allow_memory_to_aggregate(session: Session) -> None:
    """PostgreSQL's default work_mem (4 MB) sorts a year of approaches on disk; allow more for
    the report's transaction only."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{AGGREGATION_WORK_MEM}'"))
