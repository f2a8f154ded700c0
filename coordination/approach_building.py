"""The approach stage of the sync pipeline: group a company's source records into approaches.

Only the companies a sync touched are rebuilt. An approach keeps its id across rebuilds as long
as the smallest source record id of its group stays the same (``group_key``), also when that
record moves to another company. Only what differs from the stored state is written: changed
approaches with one ``executemany``, and the ``approachrecord``/``approachorganisation`` rows
that changed, so a rebuild of an unchanged company writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlmodel import Session

from coordination.approaches.grouping import GroupableRecord, group_records, is_joint
from coordination.copy_rows import insert_rows
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Organisation,
    Source,
    SourceRecord,
)

COUNTING_STATUSES = ("completed", "planned")
# IN-lists stay far below the bound-parameter limits of SQLite (32,766) and PostgreSQL (65,535).
CHUNK = 5_000

_APPROACH = Approach.__table__
_LINKS = ApproachRecord.__table__
_ORGS = ApproachOrganisation.__table__
_RECORD = SourceRecord.__table__

# The fields a rebuild derives; ``coordinated`` belongs to flag evaluation.
_DERIVED = (
    "company_id",
    "date",
    "channel",
    "purpose",
    "planned",
    "joint",
    "organisations",
    "consultants",
)


def _ids(name: str = "ids"):
    """An IN-list of integers rendered into the SQL text: thousands of bound parameters cost
    the driver more than the statement itself (psycopg parses the query for them)."""
    return bindparam(name, expanding=True, literal_execute=True)


# Built once: the compiled-statement cache then skips building them per call.
_RECORDS_OF = (
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
    .where(
        _RECORD.c.company_id.in_(_ids()),
        _RECORD.c.status.in_(COUNTING_STATUSES),
    )
)
_STORED_COLUMNS = (_APPROACH.c.id, _APPROACH.c.group_key, *(_APPROACH.c[n] for n in _DERIVED))
_STORED_OF_COMPANIES = select(*_STORED_COLUMNS).where(_APPROACH.c.company_id.in_(_ids()))
_STORED_BY_KEYS = select(*_STORED_COLUMNS).where(_APPROACH.c.group_key.in_(_ids("keys")))
_LINKS_OF = select(_LINKS.c.source_record_id, _LINKS.c.approach_id).where(
    _LINKS.c.approach_id.in_(_ids())
)
_ORGS_OF = select(_ORGS.c.approach_id, _ORGS.c.organisation_id).where(
    _ORGS.c.approach_id.in_(_ids())
)
_DELETE_LINKS_OF_RECORDS = delete(_LINKS).where(_LINKS.c.source_record_id.in_(_ids()))
_DELETE_LINKS_OF_APPROACHES = delete(_LINKS).where(_LINKS.c.approach_id.in_(_ids()))
_DELETE_ORGS_OF = delete(_ORGS).where(_ORGS.c.approach_id.in_(_ids()))
_DELETE_APPROACHES = delete(_APPROACH).where(_APPROACH.c.id.in_(_ids()))
_IDS_BY_KEYS = select(_APPROACH.c.group_key, _APPROACH.c.id).where(
    _APPROACH.c.group_key.in_(_ids("keys"))
)
_NEXT_APPROACH_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('approach', 'id')) FROM generate_series(1, :n)"
)
_UPDATE_APPROACH = (
    update(_APPROACH)
    .where(_APPROACH.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _DERIVED})
)


def rebuild_approaches(session: Session, company_ids: Iterable[int], tolerance_days: int) -> None:
    ids = sorted(set(company_ids))
    session.flush()  # the statements below bypass the session: it must not hold back changes
    for start in range(0, len(ids), CHUNK):
        _rebuild_chunk(session, ids[start : start + CHUNK], tolerance_days)


def _rebuild_chunk(session: Session, ids: list[int], tolerance_days: int) -> None:
    if not ids:
        return
    connection = session.connection()
    wanted: dict[int, tuple[dict, list]] = {}
    for company_id, rows in _records_by_company(connection, ids).items():
        groupable = {row.id: _groupable(row) for row in rows}
        for group in _groups(rows, groupable, tolerance_days):
            values = _approach_values(company_id, group, groupable)
            wanted[min(r.id for r in group)] = (values, group)
    stored = _stored(connection, ids, list(wanted))
    stale = [row.id for key, row in stored.items() if key not in wanted]
    approach_of = _write_approaches(connection, wanted, stored)
    _write_links(connection, wanted, approach_of, [row.id for row in stored.values()])
    if stale:
        connection.execute(_DELETE_LINKS_OF_APPROACHES, {"ids": stale})
        connection.execute(_DELETE_ORGS_OF, {"ids": stale})
        connection.execute(_DELETE_APPROACHES, {"ids": stale})


def _records_by_company(connection, ids: list[int]) -> dict[int, list]:
    grouped: dict[int, list] = defaultdict(list)
    for row in connection.execute(_RECORDS_OF, {"ids": ids}):
        grouped[row.company_id].append(row)
    return grouped


def _stored(connection, ids: list[int], keys: list[int]) -> dict[int, object]:
    """The stored approaches of the companies, and those holding one of the wanted group keys
    (a record that moved to one of these companies takes its approach along)."""
    stored = {row.group_key: row for row in connection.execute(_STORED_OF_COMPANIES, {"ids": ids})}
    missing = [key for key in keys if key not in stored]
    for start in range(0, len(missing), CHUNK):
        part = missing[start : start + CHUNK]
        stored.update(
            (row.group_key, row) for row in connection.execute(_STORED_BY_KEYS, {"keys": part})
        )
    return stored


def _groups(rows: list, groupable: dict, tolerance_days: int) -> list[list]:
    if len(rows) == 1:
        return [rows]
    by_id = {row.id: row for row in rows}
    grouped = group_records(list(groupable.values()), tolerance_days)
    return [[by_id[i] for i in group] for group in grouped]


def _groupable(row) -> GroupableRecord:
    return GroupableRecord(
        id=row.id,
        organisation=row.organisation,
        date=row.approach_date,
        channel=row.channel,
        consultant_email=row.consultant_email,
        joint_with=tuple(row.joint_with or ()),
    )


def _approach_values(company_id: int, group: list, groupable: dict) -> dict:
    if len(group) == 1:  # most approaches: one record
        (first,) = group
        consultant = first.consultant_name or first.consultant_email
        organisations = [first.organisation]
        consultants = [] if consultant is None else [consultant]
    else:
        first = min(group, key=lambda r: (r.approach_date, r.id))
        organisations = sorted({r.organisation for r in group})
        consultants = sorted({r.consultant_name or r.consultant_email for r in group} - {None})
    return {
        "company_id": company_id,
        "date": first.approach_date,
        "channel": first.channel,
        "purpose": first.purpose,
        "planned": all(r.status == "planned" for r in group),
        "joint": is_joint([groupable[r.id] for r in group]),
        "organisations": organisations,
        "consultants": consultants,
    }


def _write_approaches(connection, wanted: dict, stored: dict) -> dict[int, int]:
    """Insert the new approaches and update the changed ones; the approach id by group key."""
    approach_of = {key: row.id for key, row in stored.items() if key in wanted}
    fresh = [
        {"group_key": key, "coordinated": True, **values}
        for key, (values, _) in wanted.items()
        if key not in stored
    ]
    if fresh and connection.dialect.name == "postgresql":
        # Ids from the sequence first, then the rows by COPY (no INSERT ... RETURNING of
        # thousands of rows, which costs psycopg more than the database).
        ids = connection.execute(_NEXT_APPROACH_IDS, {"n": len(fresh)}).scalars().all()
        for row, approach_id in zip(fresh, ids, strict=True):
            row["id"] = approach_id
            approach_of[row["group_key"]] = approach_id
        insert_rows(connection, _APPROACH, fresh)
    elif fresh:
        # INSERT ... RETURNING in parameter order runs one statement per row on SQLite; the
        # group keys are unique, so the ids are read back by them instead.
        connection.execute(insert(_APPROACH), fresh)
        keys = [row["group_key"] for row in fresh]
        for start in range(0, len(keys), CHUNK):
            part = {"keys": keys[start : start + CHUNK]}
            approach_of.update(connection.execute(_IDS_BY_KEYS, part).all())
    changed = [
        {"b_id": stored[key].id, **{f"b_{k}": v for k, v in values.items()}}
        for key, (values, _) in wanted.items()
        if key in stored and _differs(stored[key], values)
    ]
    if changed:
        connection.execute(_UPDATE_APPROACH, changed)
    return approach_of


def _differs(row, values: dict) -> bool:
    return any(getattr(row, name) != values[name] for name in _DERIVED)


def _write_links(connection, wanted: dict, approach_of: dict, stored_ids: list[int]) -> None:
    """Make ``approachrecord`` and ``approachorganisation`` match the groups, row by row."""
    old_links, old_orgs = {}, defaultdict(set)
    for start in range(0, len(stored_ids), CHUNK):
        part = {"ids": stored_ids[start : start + CHUNK]}
        old_links.update(connection.execute(_LINKS_OF, part).all())
        for approach_id, organisation_id in connection.execute(_ORGS_OF, part):
            old_orgs[approach_id].add(organisation_id)
    links, orgs, wanted_records = [], [], set()
    for key, (_, group) in wanted.items():
        approach_id = approach_of[key]
        for r in group:
            wanted_records.add(r.id)
            if old_links.get(r.id) != approach_id:
                links.append({"source_record_id": r.id, "approach_id": approach_id})
        organisations = {r.organisation_id for r in group}
        if organisations != old_orgs.get(approach_id, set()):
            orgs.append((approach_id, organisations))
    gone = [rid for rid in old_links if rid not in wanted_records]
    # A record may still be linked to an approach of a company rebuilt later (it moved).
    _delete_in_chunks(
        connection, _DELETE_LINKS_OF_RECORDS, gone + [lk["source_record_id"] for lk in links]
    )
    insert_rows(connection, _LINKS, links)
    _delete_in_chunks(
        connection,
        _DELETE_ORGS_OF,
        [approach_id for approach_id, _ in orgs if approach_id in old_orgs],
    )
    rows = [
        {"approach_id": approach_id, "organisation_id": oid}
        for approach_id, organisations in orgs
        for oid in sorted(organisations)
    ]
    insert_rows(connection, _ORGS, rows)


def _delete_in_chunks(connection, statement, ids: list[int]) -> None:
    for start in range(0, len(ids), CHUNK):
        connection.execute(statement, {"ids": ids[start : start + CHUNK]})
