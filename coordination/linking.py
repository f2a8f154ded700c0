"""The identity stage of the sync pipeline: link changed source records to companies.

Records are linked, never rewritten: a ``CompanyLink`` row says which company, by which rule,
with what score. What a coordinator decided (``coordination/identity_review.py``) survives every
sync:

- a link a person made (``decided_by`` set: a merge or a split) is never re-resolved; the record
  stays where the person put it;
- a merged company (``merged_into_id`` set) never receives a new link: it stays in the index
  under its own name, so records spelled like it are still recognised, but the link goes to the
  company it was merged into (unless that would put two different valid CVRs together, or a
  coordinator rejected that pair, in which case the merged company is passed over);
- a record that is updated but now matches no company stays with the company it is linked to
  (rule ``kept``), so a merge that changed a company's display name does not push its records
  out;
- a rejected pair (``record_key`` of a record, company) is never linked nor proposed. Rejections
  come from decisions that are not undone: ``reject`` and ``split`` decisions (``record_key`` and
  ``details["record_keys"]`` against ``other_company_id``) and any decision's
  ``details["rejected_pairs"]`` (written by an undo). A later merge of the same spelling into the
  same company overrides an older rejection: the newest decision wins.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import NamedTuple

from sqlalchemy import (
    Integer,
    Text,
    bindparam,
    case,
    column,
    delete,
    exists,
    false,
    func,
    insert,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session

from connectors.base import CompanyRef, PersonRef
from coordination.copy_rows import bulk_insert, insert_rows
from coordination.db import among, int_list, local_settings
from coordination.identity.contacts import contact_key
from coordination.identity.normalise import (
    normalise_company_name,
    normalise_email,
    normalise_phone,
    normalise_postcode,
    valid_cvr,
)
from coordination.identity.resolver import CompanyIndex, KnownCompany, Resolution, record_key
from coordination.identity.survivorship import display_fields
from coordination.models import (
    Company,
    CompanyLink,
    ContactPerson,
    Flag,
    IdentityDecision,
    MatchProposal,
    PlannedVisit,
    PriorContactCheck,
    ProductionUnit,
    SourceRecord,
)
from coordination.needs.codelists import load_codelists

_RECORD = SourceRecord.__table__
_COMPANY = Company.__table__
_LINK = CompanyLink.__table__
_UNIT = ProductionUnit.__table__
_CHECK = PriorContactCheck.__table__
_PLANNED = PlannedVisit.__table__
_FLAG = Flag.__table__
_PERSON = ContactPerson.__table__

# Decisions whose ``record_key`` (and ``details["record_keys"]``) reject ``other_company_id``.
REJECTING_ACTIONS = ("reject", "split")
# Decisions that put the records of ``company_id`` (spelled as ``details["record_keys"]``) into
# ``other_company_id``.
MERGING_ACTIONS = ("merge", "accept")


def company_ref_of(row) -> CompanyRef:
    """The company block of a stored source record (a row with the ``SourceRecord`` columns
    ``company_name``, ``cvr_raw``, ``p_number``, ``address``, ``postcode``, ``city``)."""
    return CompanyRef(
        name=row.company_name,
        cvr=row.cvr_raw,
        p_number=row.p_number,
        address=row.address,
        postcode=row.postcode,
        city=row.city,
    )


def record_key_of(row) -> str:
    """The key under which rejections of this stored record's company are kept."""
    return record_key(company_ref_of(row))


# Statements built once (the compiled-statement cache then skips building them per call).
_IDS = int_list()
_MANUAL_LINKS_OF = select(_LINK.c.source_record_id, _LINK.c.company_id).where(
    _LINK.c.source_record_id.in_(_IDS), _LINK.c.decided_by.is_not(None)
)


class RecordToLink(NamedTuple):
    """What linking reads of a record: its stored company fields (the ``SourceRecord``
    columns), its id (None for a record not inserted yet: ``key`` names it) and the company it
    is linked to now."""

    key: str
    id: int | None
    cvr: str | None
    cvr_raw: str | None
    p_number: str | None
    company_name: str | None
    address: str | None
    postcode: str | None
    city: str | None
    company_id: int | None


_LINKED_FIELDS = operator.itemgetter(*RecordToLink._fields[2:])


def record_to_link(row: Mapping) -> RecordToLink:
    """A record in the stored form (``ingest``'s rows: the columns by name, an ``id`` only
    when it is stored)."""
    return RecordToLink(row["external_id"], row.get("id"), *_LINKED_FIELDS(row))


@dataclasses.dataclass
class BatchLinks:
    """A batch's records resolved to companies (:meth:`IdentityStage.resolve`), until their
    links are written (:meth:`IdentityStage.write_links`)."""

    company_of: dict[str, int]  # record key -> company id (manual links included)
    links: list[dict]  # the link rows; ``source_record_id`` holds the record key until written
    affected: set[int]  # the companies whose records changed
    relinked_ids: list[int]  # the stored records among the links (their old links go)


_INDEX_COMPANIES = "SELECT id, cvr, name_key, postcode, merged_into_id FROM company"
_INDEX_UNITS = "SELECT p_number, company_id FROM productionunit"
_FIRST, _SECOND, _THIRD, _FOURTH, _FIFTH = (operator.itemgetter(i) for i in range(5))


def _packed_units(rows, survivor: Mapping[int, int]) -> dict[int, str | frozenset[str]]:
    """Company id -> its P-numbers as the index keeps them (one as a string, several as a
    frozenset), a merged company's counted to the company it is part of."""
    packed: dict[int, str | frozenset[str]] = {}
    several: dict[int, set[str]] = {}
    for p_number, company_id in rows:
        if survivor:
            company_id = survivor.get(company_id, company_id)
        held = packed.setdefault(company_id, p_number)
        if held != p_number:
            several.setdefault(company_id, {held}).add(p_number)  # type: ignore[arg-type]
    for company_id, p_numbers in several.items():
        packed[company_id] = frozenset(p_numbers)
    return packed


class IdentityStage:
    """Holds the in-memory company index for one sync run; each batch calls :meth:`resolve`
    before its new records are inserted and :meth:`write_links` after.

    The index, the merged companies and the rejected pairs are read once, when the stage is
    made: decisions taken while a run is going apply from the next run.
    """

    def __init__(self, session: Session) -> None:
        self.index = CompanyIndex()
        self.rejected: set[tuple[str, int]] = set()
        self.survivor: dict[int, int] = {}  # merged company -> the live company it is part of
        # Companies absorbed while linking the current batch -> the link values of their records.
        self._absorbed: dict[int, dict] = {}
        self._stale: AbstractSet[int] = frozenset()
        # Companies created in the current batch, by id, until they are inserted in bulk, and
        # the CVR numbers known companies learned, until they are written in one statement.
        self._new: dict[int, dict] = {}
        self._learned: dict[int, str] = {}
        # Records of the last batch moved to another company without being relinked
        # themselves (an absorbed company's): a rebuild plan must know them as changed.
        self.moved: set[int] = set()
        self._ids = _CompanyIds()
        self._load(session)

    def _load(self, session: Session) -> None:
        # Read with the driver's own cursor: 300,000 companies at scale, and SQLAlchemy's rows
        # cost several times the driver's tuples (the columns are plain ints and strings).
        cursor = session.connection().connection.cursor()
        try:
            cursor.execute(_INDEX_COMPANIES)
            rows = cursor.fetchall()
            merged = [row for row in rows if row[4] is not None]
            self.survivor = {}
            if merged:
                into = dict(zip(map(_FIRST, rows), map(_FIFTH, rows), strict=True))
                self.survivor = surviving_companies(into)
            cursor.execute(_INDEX_UNITS)
            units = _packed_units(cursor.fetchall(), self.survivor)
        finally:
            cursor.close()
        postcode_of = {raw: normalise_postcode(raw) for raw in set(map(_FOURTH, rows))}
        live = [row for row in rows if row[4] is None] if merged else rows
        ids = list(map(_FIRST, live))
        self.index.load(
            ids,
            list(map(_SECOND, live)),
            list(map(_THIRD, live)),
            list(map(postcode_of.__getitem__, map(_FOURTH, live))),
            list(map(units.get, ids)),
        )
        # Merged companies stay findable by their own spelling; _decide redirects them.
        for cid, _, key, postcode, _ in merged:
            if self.survivor.get(cid) in self.index:
                self.index.add(KnownCompany(cid, None, key, postcode_of[postcode]))
        self.rejected = rejected_pairs(session, self.survivor)

    def forget(self, company_id: int) -> None:
        if company_id in self.index:
            self.index.remove(company_id)

    def resolve(
        self, session: Session, rows: Iterable[Mapping], stale: AbstractSet[int]
    ) -> BatchLinks:
        """Resolve the records ``rows`` (``ingest``'s stored form, in the order of their ids)
        to companies before the new ones among them are inserted: the companies they found,
        their proposals and production units are written here; their links, once the records
        are stored, by :meth:`write_links`.

        ``stale``: the companies whose display fields wait for a later
        :func:`refresh_companies` (the caller refreshes the affected companies, later)."""
        records = [record_to_link(row) for row in rows]
        self.moved = set()
        self._stale = stale
        self._ids.start_batch()
        stored_ids = [r.id for r in records if r.id is not None]
        manual = self._manual_links(session, stored_ids) if stored_ids else {}
        links, proposals, affected = [], [], set(manual.values())
        company_of = {r.key: manual[r.id] for r in records if r.id in manual}
        self._absorbed = {}
        linked_at = dt.datetime.now(dt.UTC)
        for record in records:
            if record.id in manual:
                continue
            company_id, resolution = self._resolve(session, record)
            links.append(
                {
                    "source_record_id": record.key,
                    "company_id": company_id,
                    "rule": resolution.rule,
                    "score": resolution.score,
                    "reason": resolution.reason or None,
                    "decided_by": None,
                    "linked_at": linked_at,
                }
            )
            company_of[record.key] = company_id
            if resolution.proposal_company_id:
                proposals.append((company_id, resolution))
            affected.add(company_id)
            if record.company_id is not None:
                affected.add(record.company_id)
        self._insert_new_companies(session)
        if self._absorbed:  # links of this batch still name the companies absorbed in it
            links, proposals, company_of = self._redirect_pending(links, proposals, company_of)
            affected |= set(self._absorbed) | {v["company_id"] for v in self._absorbed.values()}
        self._write_proposals(session, proposals)
        self._production_units(session, records, company_of)
        relinked = [r.id for r in records if r.id is not None and r.id not in manual]
        return BatchLinks(company_of, links, affected, relinked)

    def write_links(self, session: Session, linked: BatchLinks, ids: Mapping[str, int]) -> None:
        """Write the links of :meth:`resolve` for the records now stored, ``ids`` (record key
        -> id): a stored record's link replaces its old one, and the record follows it when
        its company changed (a new record was inserted with its company)."""
        if not linked.links:
            return
        rows = [(ids[link["source_record_id"]], *_LINK_VALUES(link)) for link in linked.links]
        connection = session.connection()
        if linked.relinked_ids:
            connection.execute(_DELETE_LINKS_OF_RECORDS, {"ids": linked.relinked_ids})
        bulk_insert(connection, _LINK, _LINK_COLUMNS, rows)
        if linked.relinked_ids:
            # The records follow their new links in one statement, not one per record.
            connection.execute(_RECORDS_FOLLOW_LINKS, {"ids": linked.relinked_ids})

    def _redirect_pending(self, links, proposals, company_of):
        for link in links:
            link.update(self._absorbed.get(link["company_id"], {}))
        company_of = {key: self.survivor.get(cid, cid) for key, cid in company_of.items()}
        proposals = [
            (company_id, resolution)
            for company_id, resolution in proposals
            if company_id not in self._absorbed
            and resolution.proposal_company_id not in self._absorbed
        ]
        return links, proposals, company_of

    # -- steps ----------------------------------------------------------------------------------

    def _manual_links(self, session: Session, ids: list[int]) -> dict[int, int]:
        return dict(session.connection().execute(_MANUAL_LINKS_OF, {"ids": ids}).all())

    def _resolve(self, session: Session, row):
        ref = company_ref_of(row)
        resolution = self._decide(ref)
        if resolution.company_id is None:
            kept = self._kept(ref, row.company_id, resolution)
            if kept is not None:
                return kept.company_id, kept
            company_id = self._create_company(session, row, ref, resolution.rule == "new_cvr")
            if self._absorb(session, resolution, company_id):
                resolution = dataclasses.replace(resolution, proposal_company_id=None)
            return company_id, resolution
        if row.cvr:
            self._learn_cvr(session, resolution.company_id, row.cvr)
        return resolution.company_id, resolution

    def _decide(self, ref: CompanyRef) -> Resolution:
        """The index's resolution, with merged companies redirected to their survivors."""
        passed_over: set[tuple[str, int]] = set()
        while True:  # each round passes over one more merged company, so this ends
            pairs = _Union(self.rejected, passed_over) if passed_over else self.rejected
            resolution = self.index.resolve(ref, rejected_pairs=pairs)
            merged = resolution.company_id
            if merged is None or merged not in self.survivor:
                return self._redirect_proposal(resolution, ref)
            survivor = self.survivor[merged]
            key = record_key(ref)
            if self._may_join(key, valid_cvr(ref.cvr), survivor):
                reason = f"{resolution.reason}; company {merged} was merged into {survivor}"
                return dataclasses.replace(resolution, company_id=survivor, reason=reason)
            passed_over.add((key, merged))

    def _kept(self, ref: CompanyRef, current: int | None, resolution: Resolution):
        """An updated record that now matches no company stays with the one it is linked to
        (a company's other spellings are not in the index, and a merge may have changed the
        display name), unless a rejection or a CVR now forbids it."""
        if resolution.rule != "unresolved" or current is None:
            return None
        company_id = self.survivor.get(current, current)
        if company_id in self.survivor or company_id not in self.index:
            return None
        if not self._may_join(record_key(ref), valid_cvr(ref.cvr), company_id):
            return None
        reason = f"no company matches the updated record; it stays with company {company_id}"
        return Resolution("kept", company_id, resolution.score, reason=reason)

    def _absorb(self, session: Session, resolution: Resolution, company_id: int) -> bool:
        """Make resolution independent of delivery order: a company just created for a new
        valid CVR takes in the unresolved company it resembles, when that company's own name
        would now be linked to it by the resolver (fuzzy or exact, unambiguous, not rejected).

        Had the CVR record come first, the unresolved company's records would have been linked
        to it that way; the resolver never links a valid-CVR record fuzzily to a company
        without CVR, so without this the two stay apart. Companies a person decided about
        (manual links) are left alone. Returns whether the candidate was absorbed.
        """
        candidate_id = resolution.proposal_company_id
        if resolution.rule != "new_cvr" or candidate_id is None:
            return False
        candidate = self.index.get(candidate_id)
        if candidate is None or candidate.cvr is not None or candidate_id in self.survivor:
            return False
        if (f"cvr:{self.index.get(company_id).cvr}", candidate_id) in self.rejected:
            return False
        self._insert_new_companies(session)  # what follows reads and moves company rows
        if candidate_id in self._stale:  # its name must be the one its records give it now
            refresh_companies(session, [candidate_id])
        name, postcode = session.execute(
            select(_COMPANY.c.name, _COMPANY.c.postcode).where(_COMPANY.c.id == candidate_id)
        ).one()
        ref = CompanyRef(name=name, postcode=postcode)
        itself = {(record_key(ref), candidate_id)}
        again = self.index.resolve(ref, rejected_pairs=_Union(self.rejected, itself))
        if again.company_id != company_id or again.rule not in ("fuzzy", "name_postcode"):
            return False
        moved = _record_ids_of(session, candidate_id)
        if self._manual_links(session, moved):
            return False
        self.moved.update(moved)
        values = {
            "company_id": company_id,
            "rule": again.rule,
            "score": again.score,
            "reason": f"company {candidate_id} joined it on arrival of its CVR: {again.reason}",
        }
        session.execute(update(_LINK).where(_LINK.c.company_id == candidate_id).values(values))
        move_company(session, candidate_id, company_id)
        session.execute(
            update(_COMPANY).where(_COMPANY.c.id == candidate_id).values(merged_into_id=company_id)
        )
        self.index.update(dataclasses.replace(candidate, p_numbers=frozenset()))
        self.index.update(
            dataclasses.replace(
                self.index.get(company_id),
                p_numbers=self.index.get(company_id).p_numbers | candidate.p_numbers,
            )
        )
        for merged, survivor in self.survivor.items():
            if survivor == candidate_id:
                self.survivor[merged] = company_id
        self.survivor[candidate_id] = company_id
        self._absorbed[candidate_id] = values
        return True

    def _may_join(self, key: str, cvr: str | None, company_id: int) -> bool:
        if (key, company_id) in self.rejected:
            return False
        company = self.index.get(company_id)
        return company is not None and (cvr is None or company.cvr in (None, cvr))

    def _redirect_proposal(self, resolution: Resolution, ref: CompanyRef) -> Resolution:
        proposed = resolution.proposal_company_id
        if proposed is None or proposed not in self.survivor:
            return resolution
        survivor = self.survivor[proposed]
        if (record_key(ref), survivor) in self.rejected or survivor == resolution.company_id:
            return dataclasses.replace(resolution, proposal_company_id=None)
        return dataclasses.replace(resolution, proposal_company_id=survivor)

    def _learn_cvr(self, session: Session, company_id: int, cvr: str) -> None:
        """A record with a valid CVR joined a company without one (by P-number or exact name):
        the company now has that CVR, so no second CVR can reach it."""
        known = self.index.get(company_id)
        if known is None or known.cvr is not None:
            return
        if company_id in self._new:
            self._new[company_id]["cvr"] = cvr
        else:  # written with the new companies (_insert_new_companies)
            self._learned[company_id] = cvr
        self.index.update(dataclasses.replace(known, cvr=cvr))

    def _create_company(self, session: Session, row, ref: CompanyRef, with_cvr: bool) -> int:
        name = row.company_name or (f"CVR {row.cvr}" if row.cvr else "(ukendt)")
        key = normalise_company_name(name)
        cvr = row.cvr if with_cvr else None
        company_id = self._ids.take(session)
        self._new[company_id] = {
            "id": company_id,
            "cvr": cvr,
            "name": name,
            "name_key": key,
            "address": row.address,
            "postcode": row.postcode,
            "city": row.city,
            "municipality_code": municipality_code(row.postcode),
            "created_at": dt.datetime.now(dt.UTC),
        }
        known = KnownCompany.from_ref(company_id, ref)
        self.index.add(known if with_cvr else dataclasses.replace(known, cvr=None))
        return company_id

    def _insert_new_companies(self, session: Session) -> None:
        """The batch's new companies and learned CVR numbers into the database."""
        if self._new:
            insert_rows(session.connection(), _COMPANY, list(self._new.values()))
            self._new = {}
        if self._learned:
            rows = [{"b_id": cid, "b_cvr": cvr} for cid, cvr in self._learned.items()]
            session.connection().execute(_LEARN_CVR, rows)
            self._learned = {}

    def _write_proposals(self, session: Session, proposals) -> None:
        """One proposal per pair of companies, whatever its status: the first one stays."""
        if not proposals:
            return
        table = MatchProposal.__table__
        wanted: dict[tuple[int, int], dict] = {}
        for company_id, resolution in proposals:
            wanted.setdefault(
                (company_id, resolution.proposal_company_id),
                {
                    "company_id": company_id,
                    "candidate_company_id": resolution.proposal_company_id,
                    "score": resolution.score,
                    "reason": resolution.reason,
                    "status": "proposed",
                    "created_at": dt.datetime.now(dt.UTC),
                },
            )
        query = select(table.c.company_id, table.c.candidate_company_id).where(
            table.c.company_id.in_(
                bindparam("ids", sorted({cid for cid, _ in wanted}), literal_execute=True)
            )
        )
        known = {tuple(row) for row in session.execute(query)}
        fresh = [row for pair, row in wanted.items() if pair not in known]
        if fresh:
            session.execute(insert(table), fresh)

    def _production_units(self, session: Session, rows, company_of: dict[str, int]) -> None:
        table = ProductionUnit.__table__
        wanted = {
            row.p_number: (company_of[row.key], row)
            for row in rows
            if row.p_number and row.key in company_of
        }
        if not wanted:
            return
        query = select(table.c.p_number).where(among(session, table.c.p_number, list(wanted)))
        known = set(session.connection().execute(query).scalars())
        fresh = [
            {
                "p_number": p,
                "company_id": cid,
                "address": row.address,
                "postcode": row.postcode,
                "city": row.city,
            }
            for p, (cid, row) in wanted.items()
            if p not in known
        ]
        insert_rows(session.connection(), table, fresh)


_LEARN_CVR = (
    update(_COMPANY).where(_COMPANY.c.id == bindparam("b_id")).values(cvr=bindparam("b_cvr"))
)
_LINK_COLUMNS = (
    "source_record_id",
    "company_id",
    "rule",
    "score",
    "reason",
    "decided_by",
    "linked_at",
)
_LINK_VALUES = operator.itemgetter(*_LINK_COLUMNS[1:])
_DELETE_LINKS_OF_RECORDS = delete(_LINK).where(_LINK.c.source_record_id.in_(_IDS))
_LINKED_COMPANY = (
    select(_LINK.c.company_id).where(_LINK.c.source_record_id == _RECORD.c.id).scalar_subquery()
)
_RECORDS_FOLLOW_LINKS = (
    update(_RECORD)
    .where(_RECORD.c.id.in_(_IDS), _RECORD.c.company_id.is_distinct_from(_LINKED_COMPANY))
    .values(company_id=_LINKED_COMPANY)
)


class _CompanyIds:
    """Ids for the companies a batch creates, taken before their rows are written so that the
    batch's later records resolve to them, and the rows go in with one statement.

    PostgreSQL: values of the table's sequence, taken in growing blocks (unused ones are gaps,
    as after any rollback). SQLite: the next ids after the largest one, counted afresh in every
    batch: the batch's transaction has already written (``ingest.prepare_batch``), so it holds
    the database's only write lock and no other connection can add a company meanwhile."""

    def __init__(self) -> None:
        self._free: collections.deque[int] = collections.deque()
        self._block = 16
        self._next_sqlite: int | None = None

    def start_batch(self) -> None:
        self._next_sqlite = None

    def take(self, session: Session) -> int:
        if session.get_bind().dialect.name != "postgresql":
            if self._next_sqlite is None:
                query = select(func.coalesce(func.max(_COMPANY.c.id), 0))
                self._next_sqlite = session.execute(query).scalar_one() + 1
            self._next_sqlite += 1
            return self._next_sqlite - 1
        if not self._free:
            self._free.extend(session.execute(_NEXT_COMPANY_IDS, {"n": self._block}).scalars())
            self._block = min(self._block * 2, 1024)
        return self._free.popleft()


_NEXT_COMPANY_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('company', 'id')) FROM generate_series(1, :n)"
)


def move_company(session: Session, from_id: int, to_id: int) -> None:
    """Move what belongs to company ``from_id`` to ``to_id``: its records (the caller has moved
    their links), production units, prior-contact checks, planned visits, flags and contact
    persons (see :func:`move_contact_persons`)."""
    for table in (_RECORD, _UNIT, _CHECK, _PLANNED, _FLAG):
        session.execute(update(table).where(table.c.company_id == from_id).values(company_id=to_id))
    move_contact_persons(session, from_id, to_id)


def move_contact_persons(session: Session, from_id: int, to_id: int) -> None:
    """Hand company ``from_id``'s contact persons to ``to_id``. A person both have stays one;
    an anonymisation on either side is kept, so no merge brings a forgotten person back."""
    theirs = {
        row.person_key: row
        for row in session.execute(select(_PERSON).where(_PERSON.c.company_id == to_id))
    }
    for person in session.execute(select(_PERSON).where(_PERSON.c.company_id == from_id)).all():
        known = theirs.get(person.person_key)
        if known is None:
            session.execute(
                update(_PERSON).where(_PERSON.c.id == person.id).values(company_id=to_id)
            )
            continue
        if person.anonymised_at is not None and known.anonymised_at is None:
            session.execute(
                update(_PERSON)
                .where(_PERSON.c.id == known.id)
                .values(
                    name=person.name,
                    email=person.email,
                    phone=person.phone,
                    anonymised_at=person.anonymised_at,
                )
            )
        session.execute(delete(_PERSON).where(_PERSON.c.id == person.id))


def _record_ids_of(session: Session, company_id: int) -> list[int]:
    query = select(_RECORD.c.id).where(_RECORD.c.company_id == company_id)
    return list(session.execute(query).scalars())


def surviving_companies(merged_into: Mapping[int, int | None]) -> dict[int, int]:
    """For every merged company, the live company at the end of its ``merged_into_id`` chain.

    ``merged_into`` maps company id to ``merged_into_id`` (None for live companies). A chain
    that loops or ends in an unknown company has no survivor and is left out.
    """
    survivors: dict[int, int] = {}
    for start, into in merged_into.items():
        seen, current = {start}, into
        while current is not None and merged_into.get(current) is not None:
            if current in seen:
                break
            seen.add(current)
            current = merged_into[current]
        if into is not None and current in merged_into and merged_into[current] is None:
            survivors[start] = current
    return survivors


def rejected_pairs(session: Session, survivor: Mapping[int, int]) -> set[tuple[str, int]]:
    """The ``(record key, company id)`` pairs that no sync may link or propose (module doc).

    A pair naming a company that was merged away is kept, and its survivor is rejected too.
    """
    query = (
        select(
            IdentityDecision.id,
            IdentityDecision.action,
            IdentityDecision.record_key,
            IdentityDecision.other_company_id,
            IdentityDecision.details,
        )
        .where(IdentityDecision.undone_by_id.is_(None))
        .order_by(IdentityDecision.id)
    )
    rejections: list[tuple[int, str, int]] = []
    last_merge: dict[tuple[str, int], int] = {}  # (key, survivor) -> id of the newest merge
    for decision_id, action, key, other, details in session.execute(query):
        details = details or {}
        keys = [k for k in (key, *details.get("record_keys", ())) if k]
        if action in REJECTING_ACTIONS and other is not None:
            rejections.extend((decision_id, k, other) for k in keys)
        if action in MERGING_ACTIONS and other is not None:
            for k in details.get("record_keys", ()):
                last_merge[(k, survivor.get(other, other))] = decision_id
        rejections.extend((decision_id, k, int(c)) for k, c in details.get("rejected_pairs", ()))
    pairs: set[tuple[str, int]] = set()
    for decision_id, key, company_id in rejections:
        target = survivor.get(company_id, company_id)
        if last_merge.get((key, target), 0) > decision_id:
            continue
        pairs.add((key, company_id))
        pairs.add((key, target))
    return pairs


class _Union(AbstractSet):
    """Two sets read as one without copying the (large) first."""

    def __init__(self, first: AbstractSet, second: AbstractSet) -> None:
        self._first, self._second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second

    def __iter__(self) -> Iterator:
        yield from self._first
        yield from (item for item in self._second if item not in self._first)

    def __len__(self) -> int:
        return sum(1 for _ in self)


# What :func:`refresh_companies` reads of a company's records, all of which count: their
# survivorship facts and their contact persons. The database reads the history and sends only
# the records that can decide something (a few per company, not its whole history):
#
# - display fields: in survivorship order (valid CVR first, then newest: the stored ``cvr`` is
#   only ever a valid one, which the client checks), the first record with a name, the first
#   with a postcode, and for each postcode (as stored) the first record with an address and the
#   first with a city. The client runs the same survivorship over those records, which gives
#   the full history's answer unless one of them holds a value survivorship skips as blank
#   (empty, or spaces only) or a CVR that is not valid: such a company's records are read in
#   full (:func:`_display_from_candidates`; ``tests/identity/test_refresh_equivalence.py``
#   compares the refresh with the definition over random histories);
# - contact persons: the records that name someone, one group per company and spelling of the
#   person (name, e-mail, phone as stored): a group's first and last record by (date, id).
#   Every record of a group has the same fields, so the merge over the groups' last records
#   (newest last) gives every field the merge over all records gives, and their first records
#   the order in which the persons first appear (:func:`_refresh_contacts`).
#
# What the refresh reads of a record besides its contact person.
_RECORD_FACTS = (
    _RECORD.c.id.label("record_id"),
    _RECORD.c.company_id,
    _RECORD.c.cvr,
    _RECORD.c.company_name.label("name"),
    _RECORD.c.address,
    _RECORD.c.postcode,
    _RECORD.c.city,
    _RECORD.c.approach_date,
    _RECORD.c.modified_at,
)
# The contact person is taken out of each payload once, in a subquery that OFFSET 0 keeps the
# planner from merging into the outer one (merged, each of the three fields parsed the whole
# payload again: on PostgreSQL 15 µs of a record's refresh, 5 without).
_PERSON_OF = (
    select(*_RECORD_FACTS, _RECORD.c.payload["contact_person"].label("person"))
    .where(_RECORD.c.company_id.in_(_IDS))
    .offset(0)
    .subquery()
)
_FACT_COLUMNS = ("record_id", "company_id", "cvr", "name", "address", "postcode", "city")
_FACT_COLUMNS += ("approach_date", "modified_at")
_PERSON_COLUMNS = tuple(f"person_{field}" for field in ("name", "email", "phone"))
_PERSON_FIELDS_OF = [
    _PERSON_OF.c.person[field].as_string().label(f"person_{field}")
    for field in ("name", "email", "phone")
]


_DECIDING_FIELDS = ("name", "postcode", "address", "city")
# survivorship's P-number is not displayed, and not read
_NO_P_NUMBER = null().label("p_number")


def _deciding_records():
    facts = [_PERSON_OF.c[name] for name in _FACT_COLUMNS]
    # a record with neither a display field nor a person decides nothing
    some = [*(_PERSON_OF.c[field] for field in _DECIDING_FIELDS), *_PERSON_FIELDS_OF]
    records = (
        select(*facts, *_PERSON_FIELDS_OF)
        .where(or_(*(value.is_not(None) for value in some)))
        .cte("records")
    )
    c = records.c
    # display: each record's place in its company's survivorship order, from 1
    survivorship = (
        c.cvr.is_not(None).desc(),
        c.approach_date.desc(),
        c.modified_at.desc().nulls_last(),
        c.record_id.desc(),
    )
    rank = func.row_number().over(partition_by=c.company_id, order_by=survivorship)
    ranked = (
        select(*(c[name] for name in _FACT_COLUMNS), rank.label("rank"))
        # a record with none of the fields decides none (nor changes the others' order)
        .where(or_(*(c[field].is_not(None) for field in _DECIDING_FIELDS)))
        .subquery("ranked")
    )
    r = ranked.c

    def first_with(field, *within):
        """The rank of the first record (of the company, or of ``within``) with ``field``."""
        has = case((r[field].is_not(None), r["rank"]))
        return func.min(has).over(partition_by=(r.company_id, *within)).label(f"first_{field}")

    marked = select(
        *r,
        first_with("name"),
        first_with("postcode"),
        first_with("address", r.postcode),
        first_with("city", r.postcode),
    ).subquery("marked")
    m = marked.c
    no_person = [null().label(name) for name in _PERSON_COLUMNS]
    display = select(
        *(m[name] for name in _FACT_COLUMNS),
        *no_person,
        true().label("deciding"),
        false().label("first_of_group"),
        false().label("last_of_group"),
    ).where(or_(*(m["rank"] == m[f"first_{f}"] for f in _DECIDING_FIELDS)))
    # contact persons: each named record's place in its group, by date and id
    group = (c.company_id, *(c[name] for name in _PERSON_COLUMNS))
    numbered = (
        select(
            c.record_id,
            c.company_id,
            c.approach_date,
            *(c[name] for name in _PERSON_COLUMNS),
            func.row_number()
            .over(partition_by=group, order_by=(c.approach_date, c.record_id))
            .label("nth"),
            func.count().over(partition_by=group).label("in_group"),
        )
        .where(or_(*(c[name].is_not(None) for name in _PERSON_COLUMNS)))
        .subquery("numbered")
    )
    n = numbered.c
    no_fact = {name: null().label(name) for name in _FACT_COLUMNS}
    no_fact |= {name: n[name] for name in ("record_id", "company_id", "approach_date")}
    persons = select(
        *no_fact.values(),
        *(n[name] for name in _PERSON_COLUMNS),
        false().label("deciding"),
        (n.nth == 1).label("first_of_group"),
        (n.nth == n.in_group).label("last_of_group"),
    ).where(or_(n.nth == 1, n.nth == n.in_group))
    return union_all(display, persons)


_DECIDING_RECORDS = select(*_deciding_records().subquery().c, _NO_P_NUMBER)
# All of a company's records, for the rare company whose deciding records hold a blank value.
_FACTS_OF_COMPANIES = select(*_RECORD_FACTS, _NO_P_NUMBER).where(_RECORD.c.company_id.in_(_IDS))
_DISPLAYED = ("name", "name_key", "address", "postcode", "city", "municipality_code")
_HAS_RECORDS = exists().where(_RECORD.c.company_id == _COMPANY.c.id).label("has_records")
_DISPLAY_OF_COMPANIES = select(
    _COMPANY.c.id, *(_COMPANY.c[n] for n in _DISPLAYED), _HAS_RECORDS
).where(_COMPANY.c.id.in_(_IDS))
_UPDATE_DISPLAY = (
    update(_COMPANY)
    .where(_COMPANY.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _DISPLAYED})
)
# PostgreSQL: every company's new display fields in one statement, as arrays (an executemany
# runs one statement per company: a nightly sync changes the display of about 2,000).
_NEW_DISPLAYS = (
    func.unnest(
        bindparam("b_id", type_=ARRAY(Integer)),
        *(bindparam(f"b_{name}", type_=ARRAY(Text)) for name in _DISPLAYED),
    )
    .table_valued(column("id", Integer), *(column(name, Text) for name in _DISPLAYED))
    .render_derived(name="display")
)
_UPDATE_DISPLAYS = (
    update(_COMPANY)
    .where(_COMPANY.c.id == _NEW_DISPLAYS.c.id)
    .values({name: _NEW_DISPLAYS.c[name] for name in _DISPLAYED})
)
_PERSONS_OF_COMPANIES = select(_PERSON).where(_PERSON.c.company_id.in_(_IDS))
_PERSON_FIELDS = ("name", "email", "phone", "last_seen_on")
_UPDATE_PERSON = (
    update(_PERSON)
    .where(
        _PERSON.c.company_id == bindparam("b_company_id"),
        _PERSON.c.person_key == bindparam("b_person_key"),
    )
    .values({name: bindparam(f"b_{name}") for name in _PERSON_FIELDS})
)


# PostgreSQL settings for reading the deciding records: the statement's windows over a chunk's
# history cross JIT's plan cost threshold (compiling took 80 ms of a 500 companies' read, and
# speeds none of it up), and sort more than the default 4 MB of work_mem (on disk).
_DECIDING_SETTINGS = {"jit": "off", "work_mem": "64MB"}


class _PersonGroup(NamedTuple):
    """The records of one company that spell a person alike: their fields, and the (date, id)
    of the first and of the last of them."""

    name: str | None
    email: str | None
    phone: str | None
    first: tuple[dt.date, int]
    last: tuple[dt.date, int]


def refresh_companies(session: Session, company_ids: Iterable[int]) -> None:
    """Re-derive display fields and contact persons of ``company_ids`` from their records.
    Only what differs from the stored values is written."""
    ids = sorted(set(company_ids))
    if not ids:
        return
    session.flush()  # the statements below bypass the session: it must not hold back changes
    connection = session.connection()
    deciding: dict[int, list] = defaultdict(list)
    groups: dict[int, dict[tuple, list]] = defaultdict(dict)
    with local_settings(connection, _DECIDING_SETTINGS):
        # .all(): the driver makes the rows in one call, not one call per row
        rows = connection.execute(_DECIDING_RECORDS, {"ids": ids}).all()
    for row in rows:
        company_id = row.company_id
        if row.deciding:
            deciding[company_id].append(row)
        if row.first_of_group or row.last_of_group:
            spelled = (row.person_name, row.person_email, row.person_phone)
            ends = groups[company_id].setdefault(spelled, [None, None])
            at = (row.approach_date, row.record_id)
            if row.first_of_group:
                ends[0] = at
            if row.last_of_group:
                ends[1] = at
    displays = _displays(connection, deciding)
    stored = {}
    for row in connection.execute(_DISPLAY_OF_COMPANIES, {"ids": ids}):
        stored[row.id] = tuple(row)[1:-1]
        if row.has_records and row.id not in displays:
            # none of its records has a name, address, postcode or city
            displays[row.id] = (None, None, None, None)
    updates = []
    for company_id in ids:
        display = displays.get(company_id)
        if display is None:  # a company without records keeps what it has
            continue
        name, address, postcode, city = display
        values = (
            name or "(ukendt)",
            normalise_company_name(name or ""),
            address,
            postcode,
            city,
            municipality_code(postcode),
        )
        if stored.get(company_id) != values:
            updates.append({"b_id": company_id} | dict(zip(_B_DISPLAYED, values, strict=True)))
    if updates and connection.dialect.name == "postgresql":
        columns = {name: [row[name] for row in updates] for name in ("b_id", *_B_DISPLAYED)}
        connection.execute(_UPDATE_DISPLAYS, columns)
    elif updates:
        connection.execute(_UPDATE_DISPLAY, updates)
    persons = {
        company_id: [_PersonGroup(*spelled, *ends) for spelled, ends in spelled_as.items()]
        for company_id, spelled_as in groups.items()
    }
    _refresh_contacts(connection, ids, persons)


_B_DISPLAYED = tuple(f"b_{name}" for name in _DISPLAYED)


def _displays(connection, deciding: Mapping[int, list]) -> dict[int, tuple]:
    """Each company's display name, address, postcode and city from its deciding records;
    a company whose deciding records cannot decide (see below) from all its records."""
    displays, undecided = {}, []
    for company_id, rows in deciding.items():
        display = _display_from_candidates(rows)
        if display is None:
            undecided.append(company_id)
        else:
            displays[company_id] = display
    if undecided:
        everything: dict[int, list] = defaultdict(list)
        for row in connection.execute(_FACTS_OF_COMPANIES, {"ids": undecided}).all():
            everything[row.company_id].append(row)
        for company_id, rows in everything.items():
            displays[company_id] = _display_of(rows)
    return displays


def _display_from_candidates(rows: list) -> tuple | None:
    """The display fields of a company from its deciding records (see ``_DECIDING_RECORDS``),
    or None when they may differ from the full history's: one of them has a CVR the database
    ordered as valid that is not, or a field survivorship skips as blank although it is not
    empty (the database took it for a value and looked no further)."""
    for row in rows:
        if row.cvr is not None and valid_cvr(row.cvr) is None:
            return None
        for field in _DECIDING_FIELDS:
            value = getattr(row, field)
            if value is not None and not str(value).strip():
                return None
    return _display_of(rows)


def _display_of(rows: list) -> tuple:
    _, display = display_fields(rows)
    return display["name"], display["address"], display["postcode"], display["city"]


@functools.lru_cache(maxsize=4096)
def municipality_code(postcode: str | None) -> str | None:
    """The municipality of a postcode by the shipped code lists (cached: they never change
    while the service runs)."""
    municipality = load_codelists().municipality_for_postcode(postcode) if postcode else None
    return municipality.code if municipality else None


def _refresh_contacts(
    connection, ids: list[int], persons: Mapping[int, list[_PersonGroup]]
) -> None:
    """Each company's contact persons: its records' persons merged by key in the order of
    their dates (and ids), a later record's fields winning, an anonymised person left alone.
    Merged from the groups of alike records, which gives the same as merging the records
    (see ``_DECIDING_RECORDS``); new persons are inserted in the order they first appear."""
    existing = {
        (row.company_id, row.person_key): row
        for row in connection.execute(_PERSONS_OF_COMPANIES, {"ids": ids})
    }
    merged: dict[tuple[int, str], dict] = {}
    for company_id in sorted(persons):
        keyed = []
        for group in persons[company_id]:
            key, email, phone = _person_keys(group.name, group.email, group.phone)
            if key is None:
                continue
            anonymised = (company_id, key) in existing and existing[(company_id, key)].anonymised_at
            if not anonymised:
                keyed.append((key, email, phone, group))
        # in the order each person first appears, then each group's fields, newest last
        first_seen: dict[str, tuple] = {}
        for key, _, _, group in keyed:
            if key not in first_seen or group.first < first_seen[key]:
                first_seen[key] = group.first
        for key in sorted(first_seen, key=first_seen.__getitem__):
            merged[(company_id, key)] = {"company_id": company_id, "person_key": key}
        for key, email, phone, group in sorted(keyed, key=lambda k: k[3].last):
            entry = merged[(company_id, key)]
            entry["name"] = group.name or entry.get("name")
            entry["email"] = email or entry.get("email")
            entry["phone"] = phone or entry.get("phone")
            entry["last_seen_on"] = group.last[0]
    fresh = [dict(v) for k, v in merged.items() if k not in existing]
    if fresh:
        insert_rows(connection, _PERSON, fresh)
    changed = [
        {f"b_{k}": v for k, v in entry.items()}
        for k, entry in merged.items()
        if k in existing and _person_differs(existing[k], entry)
    ]
    if changed:
        connection.execute(_UPDATE_PERSON, changed)


def _person_differs(row, entry: dict) -> bool:
    return any(getattr(row, name) != entry[name] for name in _PERSON_FIELDS)


@functools.lru_cache(maxsize=8192)  # one person recurs on many records (about 5 MB when full)
def _person_keys(
    name: str | None, email: str | None, phone: str | None
) -> tuple[str | None, str | None, str | None]:
    key = contact_key(PersonRef(name, email, phone))
    return key, normalise_email(email), normalise_phone(phone)
