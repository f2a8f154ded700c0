"""Storing one connector batch: source records, their needs, and quarantine, in bulk.

Idempotent by content hash: a record delivered again unchanged changes nothing but its
``last_seen_at``. The caller owns the transaction (the batch and the cursor commit together).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import operator
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlmodel import Session
from stdnum.dk import cpr

from connectors.base import (
    Batch,
    CompanyRef,
    NeedRef,
    PersonRef,
    Rejected,
    SourceRecordData,
    record_problems,
)
from coordination.copy_rows import bulk_insert
from coordination.db import among
from coordination.identity.normalise import clean_p_number, valid_cvr
from coordination.models import Need, QuarantinedRecord, SourceRecord, utcnow
from coordination.planner_stats import analyse_grown_tables
from coordination.redaction import (
    LABEL_WINDOW,
    cpr_candidates,
    might_hold_cpr,
    redact_cpr,
    redact_field,
    redact_mapping,
)

# IN-lists are chunked: SQLite allows 32,766 bound parameters, PostgreSQL 65,535.
CHUNK = 5_000


@dataclasses.dataclass
class BatchCounts:
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    removed: int = 0

    def add(self, other: BatchCounts) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class StoredBatch:
    counts: BatchCounts
    changed_record_ids: list[int]  # new or updated (including cancelled and deleted)
    previous_company_ids: set[int]  # companies the changed records were linked to before
    deleted_record_ids: set[int] = dataclasses.field(default_factory=set)
    ids_by_external: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass
class PreparedBatch:
    """A batch between the two halves of storing it (:func:`prepare_batch`,
    :func:`finish_batch`): the rows of its new and changed records, in the stored form (the
    ``SourceRecord`` columns; ``id`` and ``company_id`` as stored for a changed one)."""

    source_id: int
    counts: BatchCounts
    fresh: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    needs_for: dict[str, tuple]  # external id -> the delivered needs, of fresh and changed
    previous_company_ids: set[int]

    @property
    def rows_to_link(self) -> list[dict[str, Any]]:
        """The rows the identity stage links, in the order of their ids (the changed ones
        first, the new ones as they will be inserted). A deletion carries no company data
        (often only its id), so it keeps its earlier link rather than founding an unknown
        company."""
        changed = sorted(
            (row for row in self.changed if row["status"] != "deleted"), key=lambda r: r["id"]
        )
        return changed + self.fresh


class NeedClassifier:
    """Maps a delivered need onto the taxonomy; the default leaves every need unclassified."""

    def classify(self, need, source_kind: str, source_name: str) -> tuple[str | None, str]:
        return None, "none"


@dataclasses.dataclass
class ReadBatch:
    """A connector batch in its stored form, made without the database (:func:`read_batch`;
    the sync may make it in a reader process while it stores the batch before): the rows of
    its valid records (one per external id, the later delivery winning; their sighting times
    are set by :func:`prepare_read`), the delivered needs of each, what is quarantined, and the
    connector state to commit with the batch."""

    fetched: int
    rows: list[dict[str, Any]]
    needs: dict[str, tuple]  # external id -> the delivered needs
    rejected: list[Rejected]
    state: dict[str, Any]


def read_batch(source_id: int, batch: Batch) -> ReadBatch:
    """The part of storing a batch that needs no database: the connector-edge validation, the
    redaction, the stored payload's JSON and the content hash of each record."""
    records, late_rejects = _checked(batch.records)
    latest = {r.source_id: r for r in records}  # a later row for the same id wins
    rows = [_row(source_id, r) for r in latest.values()]
    needs = {external_id: r.needs for external_id, r in latest.items()}
    return ReadBatch(
        batch.fetched or len(batch.records) + len(batch.rejected),
        rows,
        needs,
        list(batch.rejected) + late_rejects,
        batch.state,
    )


def prepare_batch(session: Session, source_id: int, batch: Batch) -> PreparedBatch:
    """:func:`prepare_read` of :func:`read_batch`."""
    return prepare_read(session, source_id, read_batch(source_id, batch))


def prepare_read(session: Session, source_id: int, read: ReadBatch) -> PreparedBatch:
    """The first half of storing a batch: sorts its records into new, changed and unchanged
    by what is stored, and writes what the identity stage does not decide: the changed
    records' new content (their ``company_id`` stays until their links are written), the
    unchanged ones' sighting, and quarantine. New records wait for :func:`finish_batch`, so
    that they are inserted once, with their companies.

    On SQLite the quarantine statement is always run (when the batch holds a record): it
    takes the database's write lock for the batch's transaction, which the identity stage's
    company ids rely on (``linking._CompanyIds``)."""
    counts = BatchCounts(fetched=read.fetched)
    analyse_grown_tables(session.connection())  # a full sync grows the tables fast
    now = utcnow()
    rows = read.rows
    for row in rows:
        row["first_seen_at"] = row["last_seen_at"] = now
    existing = _existing(session, source_id, [row["external_id"] for row in rows])
    fresh, changed, same = [], [], []
    for row in rows:
        known = existing.get(row["external_id"])
        if known is None:
            if row["status"] != "deleted":  # a deletion of something never seen: nothing to do
                fresh.append(row)
        elif known[1] == row["content_hash"]:
            same.append(known[0])
        else:
            row["id"], row["company_id"] = known[0], known[2]
            if "payload" not in row:  # left out by a reader process: read from its JSON
                row["payload"] = json.loads(row["payload_json"])
            changed.append(row)
    previous = {r["company_id"] for r in changed} - {None}
    _update_records(session, changed)
    _touch(session, same, now)
    _resolve_quarantine(session, source_id, [r["external_id"] for r in rows], now)
    counts.quarantined = _quarantine(session, source_id, read.rejected, now)
    counts.new = len(fresh)
    counts.updated = sum(1 for r in changed if r["status"] not in ("cancelled", "deleted"))
    counts.removed = len(changed) - counts.updated
    counts.unchanged = len(same)
    needs_for = {r["external_id"]: read.needs[r["external_id"]] for r in fresh + changed}
    return PreparedBatch(source_id, counts, fresh, changed, needs_for, previous)


def finish_batch(
    session: Session,
    prepared: PreparedBatch,
    classifier: NeedClassifier,
    source_kind: str,
    source_name: str,
    company_of: dict[str, int] | None = None,
) -> StoredBatch:
    """The second half: inserts the new records, each with its company from ``company_of``
    (external id -> company id, the identity stage's answer; none when left out), and the
    needs of the new and changed records."""
    fresh, changed = prepared.fresh, prepared.changed
    if company_of:
        for row in fresh:
            row["company_id"] = company_of.get(row["external_id"])
    new_ids = _insert_records(session, fresh)
    ids_by_external = dict(zip([r["external_id"] for r in fresh], new_ids, strict=True))
    ids_by_external.update({r["external_id"]: r["id"] for r in changed})
    # New records have no needs stored yet: only the changed ones' needs are deleted first.
    replaced = [r["id"] for r in changed]
    _replace_needs(
        session,
        ids_by_external,
        prepared.needs_for,
        replaced,
        classifier,
        source_kind,
        source_name,
    )
    changed_ids = new_ids + replaced
    deleted = {r["id"] for r in changed if r["status"] == "deleted"}
    return StoredBatch(
        prepared.counts, changed_ids, prepared.previous_company_ids, deleted, ids_by_external
    )


def _checked(records: Sequence[SourceRecordData]) -> tuple[list[SourceRecordData], list[Rejected]]:
    """The connector edge: every record is validated again before it may be stored."""
    good, bad = [], []
    for record in records:
        problem = record_problems(record)
        if problem:
            bad.append(Rejected(raw=record.raw or {}, reason=problem, source_id=record.source_id))
        else:
            good.append(record)
    return good, bad


def content_hash(record: SourceRecordData) -> str:
    """SHA-256 of the canonical record without its raw item and its change time. Built field by
    field (``asdict`` would deep-copy the raw item only to drop it, and deep-copies every nested
    value); the JSON is the one of ``connectors.base.plain`` per field, so stored hashes hold."""
    data = _hashed_canonical(record)
    if data is None:
        data = {name: _plain(getattr(record, name)) for name in _hashed_fields(type(record))}
    encoded = _HASH_JSON(data)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _hashed_canonical(r: SourceRecordData) -> dict[str, Any] | None:
    """The dict content_hash encodes, for a record of the exact canonical types (every record
    the connectors build); None for anything else, which takes the general path."""
    if type(r) is not SourceRecordData or type(r.company) is not CompanyRef:
        return None
    person, consultant, needs = r.contact_person, r.consultant, r.needs
    if (
        (person is not None and type(person) is not PersonRef)
        or (consultant is not None and type(consultant) is not PersonRef)
        or type(needs) is not tuple
        or type(r.joint_with) is not tuple
        or any(type(n) is not NeedRef for n in needs)
    ):
        return None
    date = r.approach_date
    return {
        "source_id": r.source_id,
        # as ``default=str`` would write it, without a call back from the encoder
        "approach_date": str(date) if type(date) is dt.date else date,
        "status": r.status,
        "company": dict(zip(_COMPANY_FIELDS, _company_values(r.company), strict=True)),
        "channel": r.channel,
        "purpose": r.purpose,
        "contact_person": None
        if person is None
        else dict(zip(_PERSON_FIELDS, _person_values(person), strict=True)),
        "consultant": None
        if consultant is None
        else dict(zip(_PERSON_FIELDS, _person_values(consultant), strict=True)),
        "needs": [dict(zip(_NEED_FIELDS, _need_values(n), strict=True)) for n in needs],
        "joint_with": list(r.joint_with),
        "notes": r.notes,
    }


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


@functools.cache
def _hashed_fields(kind: type) -> tuple[str, ...]:
    return tuple(name for name in _field_names(kind) if name not in ("raw", "modified_at"))


_HASH_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode
_COMPANY_FIELDS = tuple(f.name for f in dataclasses.fields(CompanyRef))
_PERSON_FIELDS = tuple(f.name for f in dataclasses.fields(PersonRef))
_NEED_FIELDS = tuple(f.name for f in dataclasses.fields(NeedRef))
_company_values = operator.attrgetter(*_COMPANY_FIELDS)
_person_values = operator.attrgetter(*_PERSON_FIELDS)
_need_values = operator.attrgetter(*_NEED_FIELDS)
# The fields content_hash reads, checked at import: the fast path below spells them out.
if _hashed_fields(SourceRecordData) != (
    "source_id",
    "approach_date",
    "status",
    "company",
    "channel",
    "purpose",
    "contact_person",
    "consultant",
    "needs",
    "joint_with",
    "notes",
):
    raise RuntimeError("content_hash's fast path must follow SourceRecordData's fields")


# Values JSON takes as they are; checked by exact type first, as most field values are these.
_SCALARS = frozenset({str, int, bool, float, type(None), dt.date, dt.datetime})


def _plain(value: Any) -> Any:
    """What ``plain`` gives, as JSON sees it (a tuple and a list encode alike)."""
    if type(value) in _SCALARS:
        return value
    if hasattr(type(value), "__dataclass_fields__"):
        return _as_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _as_dict(value: Any) -> Any:
    """What ``dataclasses.asdict`` gives, as JSON sees it, without its deep copies."""
    if type(value) in _SCALARS:
        return value
    if hasattr(type(value), "__dataclass_fields__"):
        return {name: _as_dict(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, list | tuple):
        return [_as_dict(v) for v in value]
    if isinstance(value, dict):
        return {_as_dict(k): _as_dict(v) for k, v in value.items()}
    return value


def _row(source_id: int, r: SourceRecordData) -> dict[str, Any]:
    """The stored form of a record: free text CPR-redacted, every text storable (``_text``);
    its sighting times are set when it is stored (``prepare_read``)."""
    company, consultant = r.company, r.consultant
    payload, payload_json = _stored_payload_json(_payload(r))
    return {
        "source_id": source_id,
        "external_id": _text(r.source_id),
        "content_hash": content_hash(r),
        "status": _text(r.status),
        "approach_date": r.approach_date,
        "channel": _text(r.channel),
        "purpose": _text(redact_cpr(r.purpose)),
        "cvr_raw": _text(company.cvr),
        "cvr": _text(valid_cvr(company.cvr)),
        "p_number": _text(clean_p_number(company.p_number)),
        "company_name": _text(redact_cpr(company.name)),
        "address": _text(redact_cpr(company.address)),
        "postcode": _text(company.postcode),
        "city": _text(redact_cpr(company.city)),
        "consultant_name": _text(redact_cpr(consultant.name)) if consultant else None,
        "consultant_email": _text(consultant.email) if consultant else None,
        "joint_with": [_text(redact_cpr(j)) for j in r.joint_with],
        "notes": _text(redact_cpr(r.notes)),
        "payload": payload,
        "payload_json": payload_json,
        "modified_at": r.modified_at,
        "first_seen_at": None,
        "last_seen_at": None,
        "company_id": None,  # a new record's is set by linking (``finish_batch``)
    }


def _text(value: Any) -> Any:
    """``storable(value)`` for a text field: the common case (plain text without NUL) first."""
    if value is None or (type(value) is str and "\x00" not in value):
        return value
    return storable(value)


def _payload(r: SourceRecordData) -> dict[str, Any]:
    """What we keep as delivered: the native raw item plus the canonical contact person (which
    has no column of its own: contact persons are de-duplicated into their own table)."""
    person = _as_dict(r.contact_person) if r.contact_person else None
    return {"raw": r.raw, "contact_person": person}


# JSON as stored: not ASCII-escaped (so that a CPR number written with an en dash reads in the
# text as in the value); NaN and infinities refused (``storable`` keeps them as text).
_STORED_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _stored_payload_json(value: Any) -> tuple[Any, str]:
    """The stored payload (``_stored_payload(value)``) and its JSON text.

    Most payloads hold nothing to redact or clean, and the walk of :func:`_stored_payload`
    returns them unchanged. That is certain when their JSON text has no CPR-shaped number and
    no ``\\u`` escape (NUL and other control characters become one, and its hex digits could
    hide a number's edge): one encoding and one search then spare the walk over every value.
    Anything else, or a payload JSON cannot encode as it is, takes the walk."""
    try:
        text = _STORED_JSON(value)
    except (TypeError, ValueError):
        text = None
    if text is not None and "\\u" not in text and _nothing_to_redact(text):
        return value, text
    stored = _stored_payload(value)
    return stored, json.dumps(stored, ensure_ascii=False)


# A superset of the CPR labels (``redaction.CPR_LABEL``) anywhere before a number.
_CPR_WORD = re.compile(r"cpr|personn", re.IGNORECASE)


def _nothing_to_redact(text: str) -> bool:
    """Whether the redaction would leave every string in the JSON ``text`` (without escapes
    but the one-letter ones) as it is: every CPR-shaped number in it is no valid CPR number
    and has no CPR label before it. A label within ``LABEL_WINDOW`` characters of a value
    lies within twice that in its JSON, where an escaped character takes two. Numbers
    labelled as a P-number or a phone that read as a birth date take the walk, which decides."""
    for match in cpr_candidates(text):
        start = match.start()
        if _CPR_WORD.search(text, max(0, start - 2 * LABEL_WINDOW), start) or _cpr_valid(
            match.group(1) + match.group(2)
        ):
            return False
    return True


def _cpr_valid(digits: str) -> bool:
    """``cpr.is_valid``, asked only when day and month can be a date (most P-numbers and other
    10-digit numbers fail that already)."""
    if not ("01" <= digits[:2] <= "31" and "01" <= digits[2:4] <= "12"):
        return False
    return cpr.is_valid(digits)  # not cached: whether a birth date lies ahead changes daily


def _stored_payload(value: Any, key: Any = None) -> Any:
    """``storable(redact_mapping(value))`` in one walk: this runs for every value of every
    payload. ``key`` is the field the value stands in (a label for the redaction)."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:  # before the redaction, which must see a split number whole
            value = value.replace("\x00", "")
        return redact_field(key, value) if might_hold_cpr(value) else value
    if kind is dict:
        return {storable(k): _stored_payload(v, k) for k, v in value.items()}
    if kind is list:
        return [_stored_payload(v) for v in value]
    if value is None or kind is int or kind is bool:
        return value
    return storable(redact_field(key, value) if isinstance(value, str) else redact_mapping(value))


def _existing(
    session: Session, source_id: int, external_ids: list[str]
) -> dict[str, tuple[int, str, int | None]]:
    found: dict[str, tuple[int, str, int | None]] = {}
    table = SourceRecord.__table__
    for chunk in _chunks(external_ids):
        query = select(table.c.external_id, table.c.id, table.c.content_hash, table.c.company_id)
        query = query.where(
            table.c.source_id == source_id, among(session, table.c.external_id, chunk)
        )
        for external_id, rid, digest, company_id in session.execute(query):
            found[external_id] = (rid, digest, company_id)
    return found


_RECORD_COLUMNS = (
    "source_id",
    "external_id",
    "content_hash",
    "status",
    "approach_date",
    "channel",
    "purpose",
    "cvr_raw",
    "cvr",
    "p_number",
    "company_name",
    "address",
    "postcode",
    "city",
    "consultant_name",
    "consultant_email",
    "joint_with",
    "notes",
    "payload",
    "modified_at",
    "first_seen_at",
    "last_seen_at",
    "company_id",
)


# The row keys of _RECORD_COLUMNS, the JSON columns as their text.
_record_values = operator.itemgetter(
    *(f"{name}_json" if name in ("payload", "joint_with") else name for name in _RECORD_COLUMNS)
)


def _insert_records(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Inserts ``rows``; their new ids, in order. The payload goes as the JSON text made with
    it; ``joint_with`` is encoded here."""
    if not rows:
        return []
    for row in rows:
        row["joint_with_json"] = _STORED_JSON(row["joint_with"])
    values = [_record_values(row) for row in rows]
    return bulk_insert(
        session.connection(), SourceRecord.__table__, _RECORD_COLUMNS, values, returning_ids=True
    )


# What a new delivery of a known record may change: all but its identity and first sighting.
# Its company follows its link (written by the identity stage).
_UPDATABLE = [
    name
    for name in _RECORD_COLUMNS
    if name not in ("source_id", "external_id", "first_seen_at", "company_id")
]


def _update_records(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table = SourceRecord.__table__
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in _UPDATABLE})
    )
    params = [{f"b_{k}": row[k] for k in ("id", *_UPDATABLE)} for row in rows]
    session.connection().execute(statement, params)


def _touch(session: Session, ids: list[int], now: dt.datetime) -> None:
    table = SourceRecord.__table__
    for chunk in _chunks(ids):
        session.execute(
            update(table).where(among(session, table.c.id, chunk)).values(last_seen_at=now)
        )


def _replace_needs(session, ids_by_external, needs_for, replaced, classifier, kind, name) -> None:
    """Store the needs of the records ``ids_by_external``, in place of the stored needs of those
    of them ``replaced`` (ids)."""
    table = Need.__table__
    for chunk in _chunks(replaced):
        session.execute(delete(table).where(among(session, table.c.source_record_id, chunk)))
    rows = []
    classified = {}  # the same need recurs across a batch's records
    for external_id, needs in needs_for.items():
        for need in needs:
            if need not in classified:
                code, method = classifier.classify(need, kind, name)
                classified[need] = (
                    need.type,
                    storable(need.code),
                    storable(redact_cpr(need.label)),
                    code,
                    method,
                )
            rows.append((ids_by_external[external_id], *classified[need]))
    bulk_insert(session.connection(), table, _NEED_COLUMNS, rows)


_NEED_COLUMNS = ("source_record_id", "type", "code", "label", "taxonomy_code", "mapping_method")


def _resolve_quarantine(session, source_id: int, keys: list[str], now: dt.datetime) -> None:
    """A record that a later delivery corrects leaves quarantine."""
    table = QuarantinedRecord.__table__
    for chunk in _chunks(keys):
        session.execute(
            update(table)
            .where(
                table.c.source_id == source_id,
                among(session, table.c.record_key, chunk),
                table.c.resolved_at.is_(None),
            )
            .values(resolved_at=now)
        )


def _quarantine(session, source_id: int, rejected: Iterable[Rejected], now: dt.datetime) -> int:
    table = QuarantinedRecord.__table__
    by_key: dict[str, dict[str, Any]] = {}
    for item in rejected:
        payload = redact_mapping(storable(_jsonable(item.raw)))
        key = (
            item.source_id
            or "sha256:"
            + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        )
        by_key[key[:200]] = {
            "source_id": source_id,
            "record_key": key[:200],
            "external_id": item.source_id,
            "reason": item.reason,
            "payload": payload,
            "first_seen_at": now,
            "last_seen_at": now,
            "resolved_at": None,
        }
    if not by_key:
        return 0
    known = set()
    for chunk in _chunks(list(by_key)):
        query = select(table.c.record_key).where(
            table.c.source_id == source_id, among(session, table.c.record_key, chunk)
        )
        known.update(session.execute(query).scalars())
    fresh = [row for key, row in by_key.items() if key not in known]
    if fresh:
        session.execute(insert(table), fresh)
    seen = [
        {"b_key": key, "b_reason": row["reason"], "b_payload": row["payload"], "b_now": now}
        for key, row in by_key.items()
        if key in known
    ]
    if seen:
        statement = (
            update(table)
            .where(table.c.source_id == source_id, table.c.record_key == bindparam("b_key"))
            .values(
                reason=bindparam("b_reason"),
                payload=bindparam("b_payload"),
                last_seen_at=bindparam("b_now"),
                resolved_at=None,
            )
        )
        session.connection().execute(statement, seen)
    return len(by_key)


def storable(value: Any) -> Any:
    """JSON every database takes: NUL characters dropped from text, and NaN and infinities
    (which Python's JSON reader accepts but PostgreSQL's json type refuses) kept as text."""
    kind = type(value)  # exact types first: this runs for every value of every payload
    if kind is str:
        return value.replace("\x00", "") if "\x00" in value else value
    if value is None or kind is int or kind is bool:
        return value
    if kind is dict:
        return {storable(k): storable(v) for k, v in value.items()}
    if kind is list:
        return [storable(v) for v in value]
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _jsonable(raw: Any) -> Any:
    """Raw content as JSON can hold it (bytes and odd types become text)."""
    return json.loads(json.dumps(raw, default=str, ensure_ascii=False))


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]
