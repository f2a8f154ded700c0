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
records that count (``changed_records``: stored new or changed, or moved to another company)
and the span ``[date, date + tolerance]`` of every stored approach linked to a changed record
(it covers the record's earlier date, wherever the record is now); that window is widened
until the company's records on either side are more than the tolerance away, so it holds
whole stretches. Only the changed records and each company's history around them are read
(a month or more either side, more where a stretch reaches past that): the companies a
nightly sync touches have years of history. :func:`rebuild_approaches` with those windows
regroups the records dated in them and replaces the stored approaches dated in them; the
approaches outside were derived from unchanged stretches and stay as they are, so the result
equals a full rebuild (``tests/integration/test_incremental_rebuild.py`` compares the two over
random histories). It relies on the stored approaches being the rebuild of the records as they
were, and on every record that moved since being among the changed ones, which holds for every
writer of records and approaches (a coordinator's identity decisions rebuild their companies
whole) except retention's anonymising of records past the retention period (it changes
consultant e-mails without rebuilding).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Set

from sqlalchemy import Date, Integer, Text, bindparam, cast, column, delete, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
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


# for the plan: light rows only (no JSON, no strings). Each changed record with the approach
# it is linked to (if any) and that approach's company and date.
_CHANGED = (
    select(
        _RECORD.c.company_id,
        _RECORD.c.approach_date,
        _RECORD.c.status,
        _APPROACH.c.company_id.label("approach_company_id"),
        _APPROACH.c.date.label("approach_date_stored"),
    )
    .select_from(
        _RECORD.outerjoin(_LINKS, _LINKS.c.source_record_id == _RECORD.c.id).outerjoin(
            _APPROACH, _APPROACH.c.id == _LINKS.c.approach_id
        )
    )
    .where(_RECORD.c.id.in_(int_list()))
)
_WITH_APPROACHES = (
    select(_APPROACH.c.company_id).where(_APPROACH.c.company_id.in_(int_list())).distinct()
)
# A company's counting records and its approaches dated in a range (SQLite: one company a
# statement; PostgreSQL: every company's range in one statement, below).
_RECORDS_IN_RANGE = select(_RECORD.c.id, _RECORD.c.company_id, _RECORD.c.approach_date).where(
    _RECORD.c.company_id == bindparam("company_id"),
    _RECORD.c.approach_date.between(bindparam("low"), bindparam("high")),
    _RECORD.c.status.in_(COUNTING_STATUSES),
)
_APPROACHES_IN_RANGE = select(_APPROACH.c.id, _APPROACH.c.company_id, _APPROACH.c.date).where(
    _APPROACH.c.company_id == bindparam("company_id"),
    _APPROACH.c.date.between(bindparam("low"), bindparam("high")),
)
_RANGES = (
    func.unnest(
        bindparam("company_ids", type_=ARRAY(Integer)),
        bindparam("lows", type_=ARRAY(Date)),
        bindparam("highs", type_=ARRAY(Date)),
    )
    .table_valued(column("company_id", Integer), column("low", Date), column("high", Date))
    .render_derived(name="range")
)


def _in_ranges(table, date):
    """The rows of ``table`` (id, company id, ``date``) dated within their company's range."""
    return (
        select(table.c.id, table.c.company_id, date)
        .select_from(_RANGES)
        .join(
            table,
            (table.c.company_id == _RANGES.c.company_id)
            & date.between(_RANGES.c.low, _RANGES.c.high),
        )
    )


_RECORDS_IN_RANGES = _in_ranges(_RECORD, _RECORD.c.approach_date).where(
    _RECORD.c.status.in_(COUNTING_STATUSES)
)
_APPROACHES_IN_RANGES = _in_ranges(_APPROACH, _APPROACH.c.date)
# How far around its changes a company's history is read first, in tolerances (and at least
# a month); a window that reaches the edge of what was read is planned again from more.
_MARGINS = (8, 64)
_MIN_MARGIN = dt.timedelta(days=31)


@dataclasses.dataclass(frozen=True)
class Window:
    """What to re-derive of one company: its counting records dated in the window and its
    stored approaches dated in it (both empty: nothing). ``since``: the window's first day
    (None when it is empty): nothing of the company's approaches before it changes, nor did
    anything of the records changed since its last rebuild (the report facts' refresh derives
    the company from that day on)."""

    record_ids: tuple[int, ...]
    approach_ids: tuple[int, ...]
    since: dt.date | None = None


def plan_rebuild(
    session: Session, company_ids: Iterable[int], changed_records: Set[int], tolerance_days: int
) -> dict[int, Window]:
    """The window to re-derive of each of ``company_ids`` that has stored approaches (see the
    module's docstring), given every record changed or moved to another company since the
    companies' last rebuild (``changed_records``; more is harmless). Companies left out are
    rebuilt whole. Plan all the companies a sync rebuilds before rebuilding any: a rebuild
    relinks records that moved.

    Only the changed records and the companies' history around them are read: the stored
    approaches are the rebuild of the records as they were, so a record that is neither
    changed nor moved is where its approach says it is."""
    ids = sorted(set(company_ids))
    session.flush()
    connection = session.connection()
    analyse_grown_tables(connection)  # the run's batches have grown the tables read here
    tolerance = dt.timedelta(days=tolerance_days)
    windows: dict[int, Window] = {}
    for start in range(0, len(ids), CHUNK):
        part = {"ids": ids[start : start + CHUNK]}
        for company_id in connection.execute(_WITH_APPROACHES, part).scalars():
            windows[company_id] = Window((), ())  # nothing of it changed: nothing to do
    # Seeds only of companies with approaches (the others are rebuilt whole): in a full sync
    # most changed records belong to companies new in the run.
    seeds: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
    changed = sorted(changed_records)
    for start in range(0, len(changed), CHUNK):
        rows = connection.execute(_CHANGED, {"ids": changed[start : start + CHUNK]})
        for company_id, date, status, approach_company_id, first in rows:
            if company_id in windows and status in COUNTING_STATUSES:  # new, moved in, changed
                seeds[company_id].append((date, date))
            if approach_company_id in windows:  # its approach's span covers its earlier date
                seeds[approach_company_id].append((first, first + tolerance))
    # Planned a chunk of companies at a time: only one chunk's history is held at once.
    planned = sorted(seeds)
    for start in range(0, len(planned), CHUNK):
        todo = {cid: seeds.pop(cid) for cid in planned[start : start + CHUNK]}
        for factor in (*_MARGINS, None):  # None: the whole history
            if not todo:
                break
            margin = None if factor is None else max(tolerance * factor, _MIN_MARGIN)
            todo = _plan_around(connection, todo, tolerance, margin, windows)
    return windows


def _plan_around(
    connection,
    seeds: Mapping[int, list[tuple[dt.date, dt.date]]],
    tolerance: dt.timedelta,
    margin: dt.timedelta | None,
    windows: dict[int, Window],
) -> dict[int, list[tuple[dt.date, dt.date]]]:
    """Plan the companies of ``seeds`` from their records and approaches dated within
    ``margin`` of their seeds (None: all of them) into ``windows``; returns the seeds of those
    whose window reached the edge of what was read (to be planned from more)."""
    ranges = {cid: _range(spans, margin) for cid, spans in seeds.items()}
    records, approaches = _history_in_ranges(connection, ranges)
    again = {}
    for company_id, spans in seeds.items():
        low, high = ranges[company_id]
        window, (first, last) = _window(
            records[company_id], approaches[company_id], spans, tolerance
        )
        if margin is not None and (first - tolerance < low or last + tolerance > high):
            again[company_id] = spans  # records just outside may widen it
        else:
            windows[company_id] = window
    return again


def _range(spans: list[tuple[dt.date, dt.date]], margin: dt.timedelta | None):
    if margin is None:
        return dt.date.min, dt.date.max
    low, high = min(s[0] for s in spans), max(s[1] for s in spans)
    return _add(low, -margin), _add(high, margin)


def _add(date: dt.date, days: dt.timedelta) -> dt.date:
    try:
        return date + days
    except OverflowError:
        return dt.date.min if days < dt.timedelta(0) else dt.date.max


def _history_in_ranges(connection, ranges: Mapping[int, tuple[dt.date, dt.date]]):
    """Per company: its counting records ``(date, id)`` and its approaches ``{id: date}``
    dated in its range."""
    records: dict[int, list[tuple[dt.date, int]]] = defaultdict(list)
    approaches: dict[int, dict[int, dt.date]] = defaultdict(dict)
    if connection.dialect.name == "postgresql":
        companies = sorted(ranges)
        for start in range(0, len(companies), CHUNK):
            part = companies[start : start + CHUNK]
            arrays = {
                "company_ids": part,
                "lows": [ranges[cid][0] for cid in part],
                "highs": [ranges[cid][1] for cid in part],
            }
            for record_id, company_id, date in connection.execute(_RECORDS_IN_RANGES, arrays):
                records[company_id].append((date, record_id))
            for approach_id, company_id, date in connection.execute(_APPROACHES_IN_RANGES, arrays):
                approaches[company_id][approach_id] = date
        return records, approaches
    for company_id, (low, high) in sorted(ranges.items()):  # in-process: no round trips
        bounds = {"company_id": company_id, "low": low, "high": high}
        for record_id, _, date in connection.execute(_RECORDS_IN_RANGE, bounds):
            records[company_id].append((date, record_id))
        for approach_id, _, date in connection.execute(_APPROACHES_IN_RANGE, bounds):
            approaches[company_id][approach_id] = date
    return records, approaches


def _window(
    records: list[tuple[dt.date, int]],
    approaches: Mapping[int, dt.date],
    seeds: list[tuple[dt.date, dt.date]],
    tolerance: dt.timedelta,
) -> tuple[Window, tuple[dt.date, dt.date]]:
    """The seeds' spans, each widened until no record lies within ``tolerance`` outside it,
    and the first and last day the spans cover (``seeds`` must not be empty)."""
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

    window = Window(
        tuple(record_id for date, record_id in records if inside(date)),
        tuple(approach_id for approach_id, date in approaches.items() if inside(date)),
        spans[0][0],
    )
    return window, (spans[0][0], spans[-1][1])


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
