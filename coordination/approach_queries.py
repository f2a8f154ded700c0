"""Approaches as the service shows them: one listing with filters and one serialisation, shared
by the prior-contact answer and ``GET /api/v1/approaches``.

An approach is shown as::

    {"id", "company": {"id", "cvr" | None, "name"}, "date", "channel", "organisations",
     "purpose", "consultants", "needs": [{"type", "code", "label", "classified"}],
     "sources": [{"source", "source_id"}], "coordinated", "joint", "planned",
     "notes": [{"source", "source_id", "text"}]}

Needs come from the ``need`` rows of the approach's source records. A need classified into the
shared taxonomy is shown by its taxonomy code (``komp:svejsning``, ``disco:7212``) and the
taxonomy's Danish label, so the same need recorded by two systems reads the same; an unclassified
need is shown with the code and label its source delivered. Needs that read the same after this
are listed once.

Notes are private to the organisation that wrote them: an approach carries the notes of those of
its source records whose source belongs to the viewer's organisation, and nothing else. The
organisation is compared by its normalised name, as joint-with fields are.

Every function takes the caller's Session and issues a fixed number of queries per page, however
many approaches the page holds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, select
from sqlmodel import Session

from coordination.identity.normalise import normalise_organisation_name
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

_APPROACH = Approach.__table__


@dataclasses.dataclass(frozen=True)
class ApproachFilter:
    """Which approaches to list; every criterion that is set must hold.

    ``organisation`` is an organisation name, compared normalised (case, æøå and punctuation do
    not matter); ``date_from`` and ``date_to`` are inclusive.
    """

    cvr: str | None = None
    company_id: int | None = None
    organisation: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


def list_approaches(
    session: Session, criteria: ApproachFilter, viewer: str, page: int, page_size: int
) -> tuple[list[dict], int]:
    """One page of approaches matching ``criteria``, newest first, and the total count.

    ``viewer`` is the caller's organisation name: it decides whose notes are shown.
    """
    conditions = _conditions(criteria)
    total = session.execute(
        select(func.count())
        .select_from(_APPROACH.join(Company, Company.id == _APPROACH.c.company_id))
        .where(*conditions)
    ).scalar_one()
    rows = session.execute(
        approach_rows()
        .where(*conditions)
        .order_by(_APPROACH.c.date.desc(), _APPROACH.c.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return serialise_approaches(session, rows, viewer), total


def company_approaches(
    session: Session, company_id: int, since: dt.date, today: dt.date, viewer: str
) -> list[dict]:
    """The approaches to one company dated ``since`` or later, newest first.

    Planned approaches dated ``today`` or later are left out: they are upcoming, not contact
    that happened (see :func:`upcoming_planned_approaches`).
    """
    rows = session.execute(
        approach_rows()
        .where(
            _APPROACH.c.company_id == company_id,
            _APPROACH.c.date >= since,
            not_(is_upcoming_planned(today)),
        )
        .order_by(_APPROACH.c.date.desc(), _APPROACH.c.id.desc())
    ).all()
    return serialise_approaches(session, rows, viewer)


def upcoming_planned_approaches(session: Session, company_id: int, today: dt.date) -> list:
    """Planned approaches (e.g. CRM appointments with ``statecode`` 0) to one company dated
    ``today`` or later, soonest first: rows of ``id``, ``date``, ``purpose``, ``organisations``."""
    query = (
        select(_APPROACH.c.id, _APPROACH.c.date, _APPROACH.c.purpose, _APPROACH.c.organisations)
        .where(_APPROACH.c.company_id == company_id, is_upcoming_planned(today))
        .order_by(_APPROACH.c.date, _APPROACH.c.id)
    )
    return list(session.execute(query).all())


def is_upcoming_planned(today: dt.date) -> ColumnElement[bool]:
    """SQL condition: the approach is planned and has not yet happened."""
    return and_(_APPROACH.c.planned.is_(True), _APPROACH.c.date >= today)


def serialise_approaches(session: Session, rows: Sequence, viewer: str) -> list[dict]:
    """Approach rows from :func:`approach_rows` as the service shows them (module doc)."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    sources, notes = _sources_and_notes(session, ids, normalise_organisation_name(viewer))
    needs = _needs(session, ids)
    return [approach_view(row, needs, sources, notes) for row in rows]


def approach_view(row, needs: dict, sources: dict, notes: dict) -> dict:
    """One approach as shown, from a row with the columns of :func:`approach_rows` and the
    per-approach needs, sources and notes."""
    return {
        "id": row.id,
        "company": {"id": row.company_id, "cvr": row.company_cvr, "name": row.company_name},
        "date": row.date,
        "channel": row.channel,
        "organisations": list(row.organisations or ()),
        "purpose": row.purpose,
        "consultants": list(row.consultants or ()),
        "needs": needs.get(row.id, []),
        "sources": sources.get(row.id, []),
        "coordinated": bool(row.coordinated),
        "joint": bool(row.joint),
        "planned": bool(row.planned),
        "notes": notes.get(row.id, []),
    }


def need_view(need_type: str, code: str | None, label: str, taxonomy_code: str | None) -> dict:
    """One need as shown: by its taxonomy code and label when classified, else as delivered."""
    if taxonomy_code:
        try:
            taxonomy_label = load_codelists().taxonomy_label(taxonomy_code)
        except KeyError:  # a code the shipped lists no longer know: keep what was delivered
            taxonomy_label = label
        return {
            "type": need_type,
            "code": taxonomy_code,
            "label": taxonomy_label,
            "classified": True,
        }
    return {"type": need_type, "code": code, "label": label, "classified": False}


def approaches_by_id(session: Session, ids: Sequence[int], viewer: str) -> dict[int, dict]:
    """The approaches with these ids as the service shows them, by id (unknown ids left out)."""
    if not ids:
        return {}
    rows = session.execute(approach_rows().where(_APPROACH.c.id.in_(list(ids)))).all()
    return {approach["id"]: approach for approach in serialise_approaches(session, rows, viewer)}


def approach_rows() -> Select:
    """The SELECT of approach columns (with the company's cvr and name) that
    :func:`serialise_approaches` expects; add WHERE and ORDER BY as needed."""
    return select(
        _APPROACH.c.id,
        _APPROACH.c.company_id,
        _APPROACH.c.date,
        _APPROACH.c.channel,
        _APPROACH.c.purpose,
        _APPROACH.c.organisations,
        _APPROACH.c.consultants,
        _APPROACH.c.coordinated,
        _APPROACH.c.joint,
        _APPROACH.c.planned,
        Company.cvr.label("company_cvr"),
        Company.name.label("company_name"),
    ).join(Company, Company.id == _APPROACH.c.company_id)


def _conditions(criteria: ApproachFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if criteria.cvr is not None:
        conditions.append(Company.cvr == criteria.cvr)
    if criteria.company_id is not None:
        conditions.append(_APPROACH.c.company_id == criteria.company_id)
    if criteria.organisation is not None:
        conditions.append(
            exists()
            .where(ApproachOrganisation.approach_id == _APPROACH.c.id)
            .where(ApproachOrganisation.organisation_id == Organisation.id)
            .where(Organisation.name_key == normalise_organisation_name(criteria.organisation))
        )
    if criteria.date_from is not None:
        conditions.append(_APPROACH.c.date >= criteria.date_from)
    if criteria.date_to is not None:
        conditions.append(_APPROACH.c.date <= criteria.date_to)
    return conditions


def _sources_and_notes(
    session: Session, approach_ids: list[int], viewer_key: str
) -> tuple[dict[int, list[dict]], dict[int, list[dict]]]:
    query = (
        select(
            ApproachRecord.approach_id,
            Source.name,
            SourceRecord.external_id,
            SourceRecord.notes,
            Organisation.name_key,
        )
        .join(SourceRecord, SourceRecord.id == ApproachRecord.source_record_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .join(Organisation, Organisation.id == Source.organisation_id)
        .where(ApproachRecord.approach_id.in_(approach_ids))
        .order_by(ApproachRecord.approach_id, Source.name, SourceRecord.external_id)
    )
    return sources_and_notes(session.execute(query), viewer_key)


def sources_and_notes(
    rows: Iterable[tuple], viewer_key: str
) -> tuple[dict[int, list[dict]], dict[int, list[dict]]]:
    """Per approach id, its sources and the notes the viewer may read, from rows of
    ``(approach_id, source name, external id, notes, writer's organisation name_key)`` ordered
    by approach, source name and external id."""
    sources: dict[int, list[dict]] = defaultdict(list)
    notes: dict[int, list[dict]] = defaultdict(list)
    for approach_id, source, external_id, text, writer_key in rows:
        sources[approach_id].append({"source": source, "source_id": external_id})
        if text and text.strip() and viewer_key and writer_key == viewer_key:
            notes[approach_id].append({"source": source, "source_id": external_id, "text": text})
    return sources, notes


def _needs(session: Session, approach_ids: list[int]) -> dict[int, list[dict]]:
    query = (
        select(ApproachRecord.approach_id, Need.type, Need.code, Need.label, Need.taxonomy_code)
        .join(Need, Need.source_record_id == ApproachRecord.source_record_id)
        .where(ApproachRecord.approach_id.in_(approach_ids))
        .order_by(ApproachRecord.approach_id, Need.id)
    )
    return needs_by_approach(session.execute(query))


def needs_by_approach(rows: Iterable[tuple]) -> dict[int, list[dict]]:
    """Per approach id, its needs as shown (each once), from rows of ``(approach_id, type,
    code, label, taxonomy_code)`` ordered by approach and need id."""
    needs: dict[int, list[dict]] = defaultdict(list)
    seen: set[tuple] = set()
    for approach_id, need_type, code, label, taxonomy_code in rows:
        view = need_view(need_type, code, label, taxonomy_code)
        key = (approach_id, view["type"], view["code"], view["label"])
        if key not in seen:
            seen.add(key)
            needs[approach_id].append(view)
    return needs


_approach_rows = approach_rows  # the earlier name, still imported by coordination.web.queries
