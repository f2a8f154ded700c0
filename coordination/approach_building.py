"""The approach stage of the sync pipeline: group a company's source records into approaches.

Only the companies a batch touched are rebuilt. An approach keeps its id across rebuilds as long
as the smallest source record id of its group stays the same (``group_key``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import delete, insert, select, update
from sqlmodel import Session

from coordination.approaches.grouping import GroupableRecord, group_records, is_joint
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Organisation,
    Source,
    SourceRecord,
)

COUNTING_STATUSES = ("completed", "planned")

_APPROACH = Approach.__table__
_LINKS = ApproachRecord.__table__
_ORGS = ApproachOrganisation.__table__
_RECORD = SourceRecord.__table__


def rebuild_approaches(session: Session, company_ids: Iterable[int], tolerance_days: int) -> None:
    ids = sorted(set(company_ids))
    if not ids:
        return
    records = _records_by_company(session, ids)
    old_keys = dict(
        session.execute(
            select(_APPROACH.c.group_key, _APPROACH.c.id).where(_APPROACH.c.company_id.in_(ids))
        ).all()
    )
    if old_keys:
        old_ids = list(old_keys.values())
        session.execute(delete(_LINKS).where(_LINKS.c.approach_id.in_(old_ids)))
        session.execute(delete(_ORGS).where(_ORGS.c.approach_id.in_(old_ids)))
    wanted: dict[int, tuple[dict, list]] = {}
    for company_id in ids:
        rows = records.get(company_id, [])
        for group in _groups(rows, tolerance_days):
            wanted[min(r.id for r in group)] = (_approach_values(company_id, group), group)
    stale = [aid for key, aid in old_keys.items() if key not in wanted]
    if stale:
        session.execute(delete(_APPROACH).where(_APPROACH.c.id.in_(stale)))
    _upsert(session, wanted, old_keys)


def _records_by_company(session: Session, ids: list[int]) -> dict[int, list]:
    query = (
        select(
            _RECORD.c.id,
            _RECORD.c.company_id,
            _RECORD.c.approach_date,
            _RECORD.c.channel,
            _RECORD.c.purpose,
            _RECORD.c.status,
            _RECORD.c.consultant_name,
            _RECORD.c.consultant_email,
            _RECORD.c.joint_with,
            Organisation.id.label("organisation_id"),
            Organisation.name.label("organisation"),
        )
        .join(Source, Source.id == _RECORD.c.source_id)
        .join(Organisation, Organisation.id == Source.organisation_id)
        .where(_RECORD.c.company_id.in_(ids), _RECORD.c.status.in_(COUNTING_STATUSES))
    )
    grouped: dict[int, list] = defaultdict(list)
    for row in session.execute(query):
        grouped[row.company_id].append(row)
    return grouped


def _groups(rows: list, tolerance_days: int) -> list[list]:
    by_id = {row.id: row for row in rows}
    groupable = [
        GroupableRecord(
            id=row.id,
            organisation=row.organisation,
            date=row.approach_date,
            channel=row.channel,
            consultant_email=row.consultant_email,
            joint_with=tuple(row.joint_with or ()),
        )
        for row in rows
    ]
    return [[by_id[i] for i in group] for group in group_records(groupable, tolerance_days)]


def _approach_values(company_id: int, group: list) -> dict:
    first = min(group, key=lambda r: (r.approach_date, r.id))
    organisations = sorted({r.organisation for r in group})
    consultants = sorted({r.consultant_name or r.consultant_email for r in group} - {None})
    joint = is_joint(
        [
            GroupableRecord(
                r.id,
                r.organisation,
                r.approach_date,
                r.channel,
                r.consultant_email,
                tuple(r.joint_with or ()),
            )
            for r in group
        ]
    )
    return {
        "company_id": company_id,
        "date": first.approach_date,
        "channel": first.channel,
        "purpose": first.purpose,
        "planned": all(r.status == "planned" for r in group),
        "joint": joint,
        "organisations": organisations,
        "consultants": consultants,
    }


def _upsert(session: Session, wanted: dict[int, tuple[dict, list]], old: dict[int, int]) -> None:
    fresh = [
        {"group_key": key, "coordinated": True, **v}
        for key, (v, _) in wanted.items()
        if key not in old
    ]
    if fresh:
        session.execute(insert(_APPROACH), fresh)
    for key, (values, _) in wanted.items():
        if key in old:
            session.execute(update(_APPROACH).where(_APPROACH.c.id == old[key]).values(**values))
    keys = list(wanted)
    ids = {}
    for start in range(0, len(keys), 5000):
        chunk = keys[start : start + 5000]
        ids.update(
            session.execute(
                select(_APPROACH.c.group_key, _APPROACH.c.id).where(
                    _APPROACH.c.group_key.in_(chunk)
                )
            ).all()
        )
    links, orgs = [], []
    for key, (_, group) in wanted.items():
        approach_id = ids[key]
        links.extend({"source_record_id": r.id, "approach_id": approach_id} for r in group)
        orgs.extend(
            {"approach_id": approach_id, "organisation_id": oid}
            for oid in sorted({r.organisation_id for r in group})
        )
    if links:
        session.execute(insert(_LINKS), links)
    if orgs:
        session.execute(insert(_ORGS), orgs)
