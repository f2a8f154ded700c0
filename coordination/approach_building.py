"""The approach stage of the sync pipeline: group a company's source records into approaches.

Only the companies a sync touched are rebuilt. An approach keeps its id across rebuilds as long
as the smallest source record id of its group stays the same (``group_key``), also when that
record moves to another company. Only what differs from the stored state is written: changed
approaches with one ``executemany``, and the ``approachrecord``/``approachorganisation`` rows
that changed, so a rebuild of an unchanged company writes nothing.

Grouping never joins records further apart than ``tolerance_days`` (a group spans at most that),
so a company's records fall apart into stretches separated by gaps longer than the tolerance,
grouped independently of each other. :func:`plan_rebuild` uses that to re-derive only what a
sync's changes can affect: for each company with stored approaches, the dates of its changed
records (``changed_records``, and records linked to no approach of the company: new, moved in,
counting again) and the span ``[date, date + tolerance]`` of every stored approach that held a
changed record or lost one (moved out, cancelled, deleted) since that approach covers the
records' earlier dates; that window is widened until the company's records on either side are
more than the tolerance away, so it holds whole stretches. :func:`rebuild_approaches` with those
windows regroups the records dated in them and replaces the stored approaches dated in them;
the approaches outside were derived from unchanged stretches and stay as they are, so the result
equals a full rebuild (``tests/integration/test_incremental_rebuild.py`` compares the two over
random histories). It relies on the stored approaches being the rebuild of the records as they
were, which holds for every writer of records and approaches except retention's anonymising of
records past the retention period (it changes consultant e-mails without rebuilding).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Set

from sqlalchemy import Text, bindparam, cast, delete, func, select, update
from sqlmodel import Session

from coordination.approaches.grouping import GroupableRecord, group_records, is_joint
from coordination.copy_rows import insert_rows
from coordination.db import int_list
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Organisation,
    Source,
    SourceRecord,
)
from coordination.planner_stats import analyse_grown_tables

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
        # as its JSON text: most records name no partner ("[]"), and need no decoding
        cast(_RECORD.c.joint_with, Text).label("joint_with"),
        Organisation.id.label("organisation_id"),
        Organisation.name.label("organisation"),
    )
    .join(Source, Source.id == _RECORD.c.source_id)
    .join(Organisation, Organisation.id == Source.organisation_id)
    .where(_RECORD.c.status.in_(COUNTING_STATUSES))
)
_RECORDS_BY_IDS = _RECORDS_OF.where(_RECORD.c.id.in_(int_list("record_ids")))
_RECORDS_OF = _RECORDS_OF.where(_RECORD.c.company_id.in_(int_list()))
_STORED_COLUMNS = (_APPROACH.c.id, _APPROACH.c.group_key, *(_APPROACH.c[n] for n in _DERIVED))
_STORED_OF_COMPANIES = select(*_STORED_COLUMNS).where(_APPROACH.c.company_id.in_(int_list()))
_STORED_BY_IDS = select(*_STORED_COLUMNS).where(_APPROACH.c.id.in_(int_list()))
_STORED_BY_KEYS = select(*_STORED_COLUMNS).where(_APPROACH.c.group_key.in_(int_list("keys")))
_LINKS_OF = select(_LINKS.c.source_record_id, _LINKS.c.approach_id).where(
    _LINKS.c.approach_id.in_(int_list())
)
_ORGS_OF = select(_ORGS.c.approach_id, _ORGS.c.organisation_id).where(
    _ORGS.c.approach_id.in_(int_list())
)
_DELETE_LINKS_OF_RECORDS = delete(_LINKS).where(_LINKS.c.source_record_id.in_(int_list()))
_DELETE_LINKS_OF_APPROACHES = delete(_LINKS).where(_LINKS.c.approach_id.in_(int_list()))
_DELETE_ORGS_OF = delete(_ORGS).where(_ORGS.c.approach_id.in_(int_list()))
_DELETE_APPROACHES = delete(_APPROACH).where(_APPROACH.c.id.in_(int_list()))
_UPDATE_APPROACH = (
    update(_APPROACH)
    .where(_APPROACH.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _DERIVED})
)


# for the plan: light rows only (no JSON, no strings); each approach with its number of records
_APPROACH_DATES = (
    select(
        _APPROACH.c.id,
        _APPROACH.c.company_id,
        _APPROACH.c.date,
        func.count(_LINKS.c.source_record_id),
    )
    .select_from(_APPROACH.outerjoin(_LINKS, _LINKS.c.approach_id == _APPROACH.c.id))
    .where(_APPROACH.c.company_id.in_(int_list()))
    .group_by(_APPROACH.c.id, _APPROACH.c.company_id, _APPROACH.c.date)
)
_RECORD_DATES = (
    select(_RECORD.c.id, _RECORD.c.company_id, _RECORD.c.approach_date, _LINKS.c.approach_id)
    .select_from(_RECORD.outerjoin(_LINKS, _LINKS.c.source_record_id == _RECORD.c.id))
    .where(_RECORD.c.company_id.in_(int_list()), _RECORD.c.status.in_(COUNTING_STATUSES))
)


@dataclasses.dataclass(frozen=True)
class Window:
    """What to re-derive of one company: its counting records dated in the window and its
    stored approaches dated in it (both empty: nothing)."""

    record_ids: tuple[int, ...]
    approach_ids: tuple[int, ...]


def plan_rebuild(
    session: Session, company_ids: Iterable[int], changed_records: Set[int], tolerance_days: int
) -> dict[int, Window]:
    """The window to re-derive of each of ``company_ids`` that has stored approaches (see the
    module's docstring), given every record changed since the companies' last rebuild
    (``changed_records``; more is harmless). Companies left out are rebuilt whole. Plan all the
    companies a sync rebuilds before rebuilding any: a rebuild relinks records that moved."""
    ids = sorted(set(company_ids))
    session.flush()
    connection = session.connection()
    analyse_grown_tables(connection)  # the run's batches have grown the tables read here
    tolerance = dt.timedelta(days=tolerance_days)
    windows: dict[int, Window] = {}
    for start in range(0, len(ids), CHUNK):
        approaches: dict[int, dict[int, dt.date]] = defaultdict(dict)
        linked: dict[int, int] = {}  # approach -> its records
        for approach_id, company_id, date, records_linked in connection.execute(
            _APPROACH_DATES, {"ids": ids[start : start + CHUNK]}
        ):
            approaches[company_id][approach_id] = date
            linked[approach_id] = records_linked
        known = sorted(approaches)
        if not known:
            continue
        seeds: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
        records: dict[int, list[tuple[dt.date, int]]] = defaultdict(list)
        counting: Counter[int] = Counter()  # approach -> its records counting for its company
        for record_id, company_id, date, approach_id in connection.execute(
            _RECORD_DATES, {"ids": known}
        ):
            records[company_id].append((date, record_id))
            own = approaches[company_id]
            if approach_id not in own:  # new, moved in, counting again
                seeds[company_id].append((date, date))
                continue
            counting[approach_id] += 1
            if record_id in changed_records:  # its earlier date lies in its approach's span
                seeds[company_id].append((date, date))
                first = own[approach_id]
                seeds[company_id].append((first, first + tolerance))
        for company_id in known:
            # approaches holding a record that no longer counts for their company (moved out,
            # cancelled, deleted): their span covers the record's earlier date
            seeds[company_id].extend(
                (date, date + tolerance)
                for approach_id, date in approaches[company_id].items()
                if linked[approach_id] > counting[approach_id]
            )
            windows[company_id] = _window(
                records[company_id], approaches[company_id], seeds[company_id], tolerance
            )
    return windows


def _window(
    records: list[tuple[dt.date, int]],
    approaches: Mapping[int, dt.date],
    seeds: list[tuple[dt.date, dt.date]],
    tolerance: dt.timedelta,
) -> Window:
    """The seeds' spans, each widened until no record lies within ``tolerance`` outside it."""
    if not seeds:
        return Window((), ())
    records.sort()
    dates = [date for date, _ in records]
    spans: list[list[dt.date]] = []
    for low, high in sorted(seeds):
        while True:
            i = bisect_left(dates, low - tolerance)
            if i < len(dates) and dates[i] < low:
                low = dates[i]
                continue
            j = bisect_right(dates, high + tolerance) - 1
            if j >= 0 and dates[j] > high:
                high = dates[j]
                continue
            break
        if spans and low <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], high)
        else:
            spans.append([low, high])

    def inside(date: dt.date) -> bool:
        k = bisect_right(spans, date, key=lambda span: span[0]) - 1
        return k >= 0 and date <= spans[k][1]

    return Window(
        tuple(record_id for date, record_id in records if inside(date)),
        tuple(approach_id for approach_id, date in approaches.items() if inside(date)),
    )


def rebuild_approaches(
    session: Session,
    company_ids: Iterable[int],
    tolerance_days: int,
    windows: Mapping[int, Window] | None = None,
) -> None:
    """Regroup the records of ``company_ids``: whole, or only in their ``windows``
    (:func:`plan_rebuild`) for the companies that have one."""
    ids = sorted(set(company_ids))
    session.flush()  # the statements below bypass the session: it must not hold back changes
    # A full sync's rebuild grows the approach tables from nothing, chunk by chunk.
    analyse_grown_tables(session.connection())
    for start in range(0, len(ids), CHUNK):
        _rebuild_chunk(session, ids[start : start + CHUNK], tolerance_days, windows or {})


def _rebuild_chunk(
    session: Session, ids: list[int], tolerance_days: int, windows: Mapping[int, Window]
) -> None:
    if not ids:
        return
    connection = session.connection()
    whole = [cid for cid in ids if cid not in windows]
    parts = {cid: windows[cid] for cid in ids if cid in windows}
    wanted: dict[int, tuple[dict, list]] = {}
    for company_id, rows in _records_by_company(connection, whole, parts).items():
        groupable = {row.id: _groupable(row) for row in rows}
        for group in _groups(rows, groupable, tolerance_days):
            values = _approach_values(company_id, group, groupable)
            wanted[min(r.id for r in group)] = (values, group)
    stored = _stored(connection, whole, parts, list(wanted))
    stale = [row.id for key, row in stored.items() if key not in wanted]
    approach_of = _write_approaches(connection, wanted, stored)
    _write_links(connection, wanted, approach_of, [row.id for row in stored.values()])
    if stale:
        connection.execute(_DELETE_LINKS_OF_APPROACHES, {"ids": stale})
        connection.execute(_DELETE_ORGS_OF, {"ids": stale})
        connection.execute(_DELETE_APPROACHES, {"ids": stale})


def _records_by_company(connection, whole: list[int], parts: Mapping[int, Window]) -> dict:
    grouped: dict[int, list] = defaultdict(list)
    if whole:
        # .all(): the driver makes the rows in one call, not one call per row
        for row in connection.execute(_RECORDS_OF, {"ids": whole}).all():
            grouped[row.company_id].append(row)
    record_ids = sorted(rid for window in parts.values() for rid in window.record_ids)
    for start in range(0, len(record_ids), CHUNK):
        part = {"record_ids": record_ids[start : start + CHUNK]}
        for row in connection.execute(_RECORDS_BY_IDS, part).all():
            grouped[row.company_id].append(row)
    return grouped


def _stored(connection, whole: list[int], parts: Mapping[int, Window], keys: list[int]) -> dict:
    """The stored approaches of the companies (in their windows), and those holding one of the
    wanted group keys (a record that moved to one of these companies takes its approach
    along)."""
    stored = {}
    if whole:
        stored = {
            row.group_key: row for row in connection.execute(_STORED_OF_COMPANIES, {"ids": whole})
        }
    approach_ids = sorted(aid for window in parts.values() for aid in window.approach_ids)
    for start in range(0, len(approach_ids), CHUNK):
        for row in connection.execute(_STORED_BY_IDS, {"ids": approach_ids[start : start + CHUNK]}):
            # planned before the rebuild began: an approach may have moved since, with a record
            if row.company_id in parts:
                stored[row.group_key] = row
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
        joint_with=_partners(row.joint_with),
    )


def _partners(joint_with: str | None) -> tuple[str, ...]:
    """A record's ``joint_with`` from its stored JSON text."""
    if joint_with is None or joint_with == "[]":
        return ()
    return tuple(json.loads(joint_with) or ())


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
    ids = insert_rows(connection, _APPROACH, fresh, returning_ids=True)
    for row, approach_id in zip(fresh, ids, strict=True):
        approach_of[row["group_key"]] = approach_id
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
