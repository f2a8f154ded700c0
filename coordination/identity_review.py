"""Identity review: a coordinator's corrections of company resolution, and their undo.

The operations, callable from the API, the CLI and tests (each takes the caller's Session and
leaves the commit to it):

- :func:`list_proposals`: uncertain matches the sync proposed, both companies side by side;
- :func:`accept_proposal`: merge the proposal's unresolved company into its candidate;
- :func:`reject_proposal`: the pair is not the same company, now or for records spelled the same
  way (the rejection is keyed by :func:`coordination.identity.resolver.record_key`);
- :func:`merge_companies`: any company into any other, refused when both hold (different) CVRs;
- :func:`split_record`: move one source record out of its company, into a new unresolved
  company or a named one;
- :func:`undo_decision`: undo any of the above.

Every operation writes one ``IdentityDecision`` (who, organisation, when, what, why), then
refreshes the display fields of the companies it touched, rebuilds their approaches and
re-evaluates their flags. Links a person made carry ``decided_by`` and are never re-resolved by
a sync (``coordination/linking.py``).

Undo of a merge restores the data exactly as before the merge: the moved links with their
original rule, score, reason and time; both company rows (CVR, display fields,
``merged_into_id``); production units, contact persons, prior-contact checks and planned visits;
approaches with their ids; flags; proposal statuses. The merge keeps what it needs for that in
``details["snapshot"]``. So that the next sync does not merge again, the undo decision holds
``details["rejected_pairs"]``: every spelling of either company against the other.

Decisions are undone last-first: a decision cannot be undone while a later merge, accept or
split that involves one of its companies stands (undo that one first).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from coordination.approach_building import rebuild_approaches
from coordination.config import Rules
from coordination.flagging import evaluate_companies
from coordination.identity.normalise import normalise_company_name
from coordination.linking import (
    move_company,
    municipality_code,
    record_key_of,
    refresh_companies,
)
from coordination.models import (
    Approach,
    Company,
    CompanyLink,
    ContactPerson,
    Flag,
    FlagEvent,
    IdentityDecision,
    MatchProposal,
    Organisation,
    PlannedVisit,
    PriorContactCheck,
    ProductionUnit,
    Source,
    SourceRecord,
)
from coordination.reports.facts import refresh_report_facts

__all__ = [
    "ACTIONS",
    "PROPOSAL_STATUSES",
    "CompanySide",
    "Conflict",
    "IdentityReviewError",
    "InvalidRequest",
    "NotFound",
    "Page",
    "ProposalView",
    "Reviewer",
    "accept_proposal",
    "list_decisions",
    "list_proposals",
    "merge_companies",
    "public_details",
    "reject_proposal",
    "split_record",
    "undo_decision",
]

ACTIONS = ("accept", "reject", "merge", "split", "undo")
PROPOSAL_STATUSES = ("proposed", "accepted", "rejected")
# Decisions that move records between companies; a later one blocks undoing an earlier one.
MOVING_ACTIONS = ("accept", "merge", "split")
# What a flag evaluation writes as actor; events by anyone else are a person's work.
RULES_ACTOR = "coordination-rules"

_COMPANY: Table = Company.__table__
_LINK: Table = CompanyLink.__table__
_RECORD: Table = SourceRecord.__table__
_APPROACH: Table = Approach.__table__
_FLAG: Table = Flag.__table__
_EVENT: Table = FlagEvent.__table__
_PERSON: Table = ContactPerson.__table__
_UNIT: Table = ProductionUnit.__table__
_CHECK: Table = PriorContactCheck.__table__
_PLANNED: Table = PlannedVisit.__table__
_PROPOSAL: Table = MatchProposal.__table__


# --- errors and value objects ------------------------------------------------------------------


class IdentityReviewError(Exception):
    """A decision could not be taken; the message says why in the coordinator's words."""


class NotFound(IdentityReviewError):
    """The proposal, company, record or decision does not exist."""


class Conflict(IdentityReviewError):
    """The decision contradicts the current state (e.g. two different CVRs, already undone)."""


class InvalidRequest(IdentityReviewError):
    """The request makes no sense whatever the state (e.g. merging a company into itself)."""


@dataclasses.dataclass(frozen=True)
class Reviewer:
    """Who decides: a person (or token) and the organisation they act for."""

    name: str
    organisation: str | None = None


@dataclasses.dataclass(frozen=True)
class CompanySide:
    """One company of a proposal as a coordinator compares it."""

    id: int
    name: str
    cvr: str | None
    address: str | None
    postcode: str | None
    city: str | None
    records: int
    organisations: list[str]
    merged_into_id: int | None


@dataclasses.dataclass(frozen=True)
class ProposalView:
    id: int
    status: str
    score: float
    reason: str
    created_at: dt.datetime
    company: CompanySide  # the unresolved company the sync created
    candidate: CompanySide  # the known company it may be


@dataclasses.dataclass(frozen=True)
class Page:
    items: list
    total: int


# --- reading -----------------------------------------------------------------------------------


def list_proposals(
    session: Session, status: str = "proposed", page: int = 1, page_size: int = 100
) -> Page:
    """Proposals with ``status``, best score first, as :class:`ProposalView` items.

    Open proposals that involve a merged company are left out: the merge settled them (an undo
    of the merge brings them back).
    """
    if status not in PROPOSAL_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(PROPOSAL_STATUSES)}")
    own, candidate = aliased(Company), aliased(Company)
    query = (
        select(MatchProposal)
        .join(own, own.id == MatchProposal.company_id)
        .join(candidate, candidate.id == MatchProposal.candidate_company_id)
        .where(MatchProposal.status == status)
    )
    if status == "proposed":
        query = query.where(own.merged_into_id.is_(None), candidate.merged_into_id.is_(None))
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    proposals = (
        session.execute(
            query.order_by(MatchProposal.score.desc(), MatchProposal.id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        .scalars()
        .all()
    )
    ids = {p.company_id for p in proposals} | {p.candidate_company_id for p in proposals}
    sides = _company_sides(session, ids)
    items = [
        ProposalView(
            id=p.id,
            status=p.status,
            score=p.score,
            reason=p.reason,
            created_at=_aware(p.created_at),
            company=sides[p.company_id],
            candidate=sides[p.candidate_company_id],
        )
        for p in proposals
    ]
    return Page(items, total)


def list_decisions(
    session: Session,
    page: int = 1,
    page_size: int = 100,
    company_id: int | None = None,
    action: str | None = None,
) -> Page:
    """Decisions, newest first, optionally those involving ``company_id`` or of one ``action``."""
    query = select(IdentityDecision)
    if company_id is not None:
        query = query.where(
            or_(
                IdentityDecision.company_id == company_id,
                IdentityDecision.other_company_id == company_id,
            )
        )
    if action is not None:
        query = query.where(IdentityDecision.action == action)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(IdentityDecision.id.desc()).offset((page - 1) * page_size).limit(page_size)
    ).scalars()
    return Page(list(rows), total)


def public_details(decision: IdentityDecision) -> dict[str, Any]:
    """What a decision's ``details`` tell a reader; the undo snapshot stays internal."""
    return {k: v for k, v in (decision.details or {}).items() if k != "snapshot"}


def _company_sides(session: Session, ids: set[int]) -> dict[int, CompanySide]:
    if not ids:
        return {}
    counts = dict(
        session.execute(
            select(_RECORD.c.company_id, func.count())
            .where(_RECORD.c.company_id.in_(ids), _RECORD.c.status != "deleted")
            .group_by(_RECORD.c.company_id)
        ).all()
    )
    organisations: dict[int, list[str]] = {cid: [] for cid in ids}
    for cid, name in session.execute(
        select(_RECORD.c.company_id, Organisation.name)
        .join(Source, Source.id == _RECORD.c.source_id)
        .join(Organisation, Organisation.id == Source.organisation_id)
        .where(_RECORD.c.company_id.in_(ids))
        .distinct()
        .order_by(_RECORD.c.company_id, Organisation.name)
    ):
        organisations[cid].append(name)
    return {
        c.id: CompanySide(
            id=c.id,
            name=c.name,
            cvr=c.cvr,
            address=c.address,
            postcode=c.postcode,
            city=c.city,
            records=counts.get(c.id, 0),
            organisations=organisations[c.id],
            merged_into_id=c.merged_into_id,
        )
        for c in session.execute(select(_COMPANY).where(_COMPANY.c.id.in_(ids)))
    }


# --- proposals ---------------------------------------------------------------------------------


def accept_proposal(
    session: Session, proposal_id: int, reviewer: Reviewer, reason: str, rules: Rules
) -> IdentityDecision:
    """Merge the proposal's unresolved company into its candidate (see :func:`merge_companies`)."""
    proposal = _open_proposal(session, proposal_id)
    return _merge(
        session,
        proposal.company_id,
        proposal.candidate_company_id,
        reviewer,
        reason,
        rules,
        action="accept",
        extra={"proposal_id": proposal.id},
    )


def reject_proposal(
    session: Session, proposal_id: int, reviewer: Reviewer, reason: str, rules: Rules
) -> IdentityDecision:
    """The two companies are different: the proposal is closed, and no sync links or proposes
    a record spelled like one company's records to the other company again (both ways)."""
    proposal = _open_proposal(session, proposal_id)
    own, candidate = proposal.company_id, proposal.candidate_company_id
    keys = _record_keys(session, [own])
    session.execute(
        update(_PROPOSAL).where(_PROPOSAL.c.id == proposal.id).values(status="rejected")
    )
    return _decide(
        session,
        "reject",
        own,
        candidate,
        reviewer,
        reason,
        record_key=keys[0] if keys else None,
        details={
            "proposal_id": proposal.id,
            "record_keys": keys,  # against the candidate (other_company_id)
            "rejected_pairs": [[k, own] for k in _record_keys(session, [candidate])],
            "snapshot": {"proposals": [[proposal.id, proposal.status]]},
        },
    )


def _open_proposal(session: Session, proposal_id: int) -> MatchProposal:
    proposal = session.get(MatchProposal, proposal_id)
    if proposal is None:
        raise NotFound(f"no proposal {proposal_id}")
    if proposal.status != "proposed":
        raise Conflict(f"proposal {proposal_id} is already {proposal.status}")
    return proposal


# --- merge -------------------------------------------------------------------------------------


def merge_companies(
    session: Session,
    company_id: int,
    into_company_id: int,
    reviewer: Reviewer,
    reason: str,
    rules: Rules,
) -> IdentityDecision:
    """Merge company ``company_id`` into ``into_company_id``; return the decision.

    Every record, production unit, prior-contact check, planned visit and flag of the merged
    company moves to the other one; its CVR moves too when the other has none. The merged
    company keeps its row (``merged_into_id`` set) so that records spelled like it are still
    recognised by the sync, and linked to the surviving company. Open proposals between the two
    are marked accepted.

    Raises NotFound, InvalidRequest (a company into itself) and Conflict (a company already
    merged, or two different CVRs: two legal units are never one company).
    """
    return _merge(session, company_id, into_company_id, reviewer, reason, rules, action="merge")


def _merge(
    session: Session,
    merged_id: int,
    into_id: int,
    reviewer: Reviewer,
    reason: str,
    rules: Rules,
    action: str,
    extra: Mapping[str, Any] | None = None,
) -> IdentityDecision:
    if merged_id == into_id:
        raise InvalidRequest("a company cannot be merged into itself")
    merged, into = _live_company(session, merged_id), _live_company(session, into_id)
    if merged.cvr and into.cvr and merged.cvr != into.cvr:
        raise Conflict(
            f"company {merged_id} has CVR {merged.cvr} and company {into_id} has CVR {into.cvr}:"
            " two legal units are never one company"
        )
    ids = [merged_id, into_id]
    snapshot = _merge_snapshot(session, merged_id, into_id)
    keys = _record_keys(session, [merged_id])
    now = dt.datetime.now(dt.UTC)
    session.execute(
        update(_LINK)
        .where(_LINK.c.company_id == merged_id)
        .values(
            company_id=into_id,
            rule="merge",
            score=100.0,
            reason=f"company {merged_id} merged into {into_id}: {reason}",
            decided_by=reviewer.name,
            linked_at=now,
        )
    )
    move_company(session, merged_id, into_id)
    if merged.cvr and not into.cvr:  # the survivor takes the CVR; it is unique, so clear first
        _set_company(session, merged_id, cvr=None)
        _set_company(session, into_id, cvr=merged.cvr)
    _set_company(session, merged_id, merged_into_id=into_id)
    session.execute(
        update(_PROPOSAL)
        .where(_between(merged_id, into_id), _PROPOSAL.c.status == "proposed")
        .values(status="accepted")
    )
    max_event = session.execute(select(func.max(_EVENT.c.id))).scalar_one() or 0
    _after_change(session, ids, rules)
    snapshot.update(_flag_work_since(session, ids, snapshot["flag_ids"], max_event))
    details = {**(extra or {}), "record_keys": keys, "snapshot": snapshot}
    return _decide(session, action, merged_id, into_id, reviewer, reason, details=details)


def _live_company(session: Session, company_id: int):
    company = session.execute(
        select(_COMPANY).where(_COMPANY.c.id == company_id).with_for_update()
    ).first()
    if company is None:
        raise NotFound(f"no company {company_id}")
    if company.merged_into_id is not None:
        raise Conflict(f"company {company_id} was merged into company {company.merged_into_id}")
    return company


def _merge_snapshot(session: Session, merged_id: int, into_id: int) -> dict[str, Any]:
    """What an undo needs to put both companies back exactly as they are now."""
    both = [merged_id, into_id]
    proposals = session.execute(
        select(_PROPOSAL.c.id, _PROPOSAL.c.status).where(
            _between(merged_id, into_id), _PROPOSAL.c.status == "proposed"
        )
    ).all()
    flags = _dump_rows(session, _FLAG, _FLAG.c.company_id.in_(both))
    return {
        "companies": _dump_rows(session, _COMPANY, _COMPANY.c.id.in_(both)),
        "links": _dump_rows(session, _LINK, _LINK.c.company_id == merged_id),
        "contacts": _dump_rows(session, _PERSON, _PERSON.c.company_id.in_(both)),
        "approaches": _jsonable(_approach_rows(session, both)),
        "flags": flags,
        "flag_ids": sorted(f["id"] for f in flags),
        **{
            name: _ids(session, table, merged_id)
            for name, table in (("units", _UNIT), ("checks", _CHECK), ("planned", _PLANNED))
        },
        "proposals": [[pid, status] for pid, status in proposals],
    }


def _approach_rows(session: Session, company_ids: list[int]) -> list[list]:
    query = select(
        _APPROACH.c.id,
        _APPROACH.c.group_key,
        _APPROACH.c.company_id,
        _APPROACH.c.date,
        _APPROACH.c.coordinated,
    ).where(_APPROACH.c.company_id.in_(company_ids))
    return [list(row) for row in session.execute(query)]


def _flag_work_since(
    session: Session, company_ids: list[int], flag_ids: list[int], max_event: int
) -> dict[str, list[int]]:
    """What the flag evaluation after event ``max_event`` did: ``raised_flags`` (new flags of
    ``company_ids``) and ``flag_events`` (its events on the existing ``flag_ids``)."""
    flags = session.execute(select(_FLAG.c.id).where(_FLAG.c.company_id.in_(company_ids)))
    events = session.execute(
        select(_EVENT.c.id).where(
            _EVENT.c.id > max_event,
            _EVENT.c.flag_id.in_(flag_ids),
            _EVENT.c.actor == RULES_ACTOR,
        )
    )
    return {
        "raised_flags": sorted(set(flags.scalars()) - set(flag_ids)),
        "flag_events": sorted(events.scalars()),
    }


# --- split -------------------------------------------------------------------------------------


def split_record(
    session: Session,
    source: str,
    source_id: str,
    reviewer: Reviewer,
    reason: str,
    rules: Rules,
    into_company_id: int | None = None,
) -> IdentityDecision:
    """Move the record ``source_id`` of source ``source`` out of its company: into a new
    unresolved company, or into ``into_company_id``. The record stays where it is put, and no
    sync links a record spelled the same way to the old company again.

    Raises NotFound, and Conflict when the target is merged or the record's own company, the
    record has a valid CVR and the target another one, or a new company would take the old
    company's only record.
    """
    record = session.execute(
        select(_RECORD)
        .join(Source, Source.id == _RECORD.c.source_id)
        .where(Source.name == source, _RECORD.c.external_id == source_id)
    ).first()
    if record is None:
        raise NotFound(f"no record {source_id!r} from source {source!r}")
    link = session.execute(select(_LINK).where(_LINK.c.source_record_id == record.id)).first()
    if link is None:
        raise Conflict(f"record {source_id!r} of {source!r} is not linked to any company")
    old = link.company_id
    if into_company_id is None:
        if _record_count(session, old) <= 1:
            raise Conflict(f"the record is the only record of company {old}: nothing to split")
        target, created = _new_company_for(session, record), True
    else:
        target, created = _split_target(session, record, old, into_company_id), False
    session.execute(
        update(_LINK)
        .where(_LINK.c.source_record_id == record.id)
        .values(
            company_id=target,
            rule="split",
            score=100.0,
            reason=f"split from company {old}: {reason}",
            decided_by=reviewer.name,
            linked_at=dt.datetime.now(dt.UTC),
        )
    )
    session.execute(update(_RECORD).where(_RECORD.c.id == record.id).values(company_id=target))
    _after_change(session, [old, target], rules)
    details = {
        "source": source,
        "source_id": source_id,
        "source_record_id": record.id,
        "created_company": created,
        "snapshot": {"link": _jsonable(dict(link._mapping))},
    }
    key = record_key_of(record)
    return _decide(session, "split", target, old, reviewer, reason, record_key=key, details=details)


def _split_target(session: Session, record, old: int, into_id: int) -> int:
    target = _live_company(session, into_id)
    if into_id == old:
        raise Conflict(f"the record already belongs to company {into_id}")
    if record.cvr and target.cvr and record.cvr != target.cvr:
        raise Conflict(
            f"the record has CVR {record.cvr} and company {into_id} has CVR {target.cvr}"
        )
    return into_id


def _new_company_for(session: Session, record) -> int:
    """An unresolved company named as the record names it (its CVR stays with the old one)."""
    name = record.company_name or "(ukendt)"
    values = {
        "cvr": None,
        "name": name,
        "name_key": normalise_company_name(name),
        "address": record.address,
        "postcode": record.postcode,
        "city": record.city,
        "municipality_code": municipality_code(record.postcode),
        "created_at": dt.datetime.now(dt.UTC),
    }
    return session.execute(insert(_COMPANY).returning(_COMPANY.c.id), values).scalar_one()


def _record_count(session: Session, company_id: int) -> int:
    query = select(func.count()).where(_RECORD.c.company_id == company_id)
    return session.execute(query).scalar_one()


# --- undo --------------------------------------------------------------------------------------


def undo_decision(
    session: Session, decision_id: int, reviewer: Reviewer, reason: str, rules: Rules
) -> IdentityDecision:
    """Undo decision ``decision_id``; return the new ``undo`` decision.

    A merge or accept: both companies exactly as before (see the module doc), and the next sync
    keeps them apart. A split: the record back in its old company with its old link. A reject:
    the proposal is open again and the pair may be linked again.

    Raises NotFound, and Conflict for an undo, an already undone decision, or one that a later
    decision on the same companies depends on.
    """
    decision = session.get(IdentityDecision, decision_id)
    if decision is None:
        raise NotFound(f"no decision {decision_id}")
    if decision.action == "undo":
        raise Conflict("an undo cannot be undone; take a new decision instead")
    if decision.undone_by_id is not None:
        raise Conflict(f"decision {decision_id} was already undone by {decision.undone_by_id}")
    _check_nothing_later(session, decision)
    undo = {"accept": _undo_merge, "merge": _undo_merge, "split": _undo_split}
    details = undo.get(decision.action, _undo_reject)(session, decision, rules)
    made = _decide(
        session,
        "undo",
        decision.company_id,
        decision.other_company_id,
        reviewer,
        reason,
        details={"undoes": decision.id, "undone_action": decision.action, **details},
    )
    decision.undone_by_id = made.id
    session.flush()
    return made


def _check_nothing_later(session: Session, decision: IdentityDecision) -> None:
    involved = {decision.company_id, decision.other_company_id} - {None}
    later = session.execute(
        select(IdentityDecision.id, IdentityDecision.action)
        .where(
            IdentityDecision.id > decision.id,
            IdentityDecision.undone_by_id.is_(None),
            IdentityDecision.action.in_(MOVING_ACTIONS),
            or_(
                IdentityDecision.company_id.in_(involved),
                IdentityDecision.other_company_id.in_(involved),
            ),
        )
        .order_by(IdentityDecision.id.desc())
    ).first()
    if later is not None:
        raise Conflict(
            f"decision {later.id} ({later.action}) came later and involves the same companies:"
            " undo it first"
        )


def _undo_reject(session: Session, decision: IdentityDecision, rules: Rules) -> dict[str, Any]:
    _restore_proposals(session, decision.details.get("snapshot", {}).get("proposals", []))
    return {}


def _undo_merge(session: Session, decision: IdentityDecision, rules: Rules) -> dict[str, Any]:
    merged_id, into_id = decision.company_id, decision.other_company_id
    snapshot = decision.details["snapshot"]
    both = [merged_id, into_id]
    _restore_links(session, snapshot["links"], merged_id, into_id)
    _restore_companies(session, snapshot["companies"])
    for name, table in (("units", _UNIT), ("checks", _CHECK), ("planned", _PLANNED)):
        _move_back(session, table, snapshot[name], merged_id, into_id)
    _restore_contacts(session, snapshot["contacts"], both)
    _revive_approaches(session, snapshot["approaches"])
    _restore_flags(session, snapshot)
    _restore_proposals(session, snapshot["proposals"])
    _after_change(session, both, rules, coordinated={a[0]: a[4] for a in snapshot["approaches"]})
    pairs = [[k, into_id] for k in _record_keys(session, [merged_id])]
    pairs += [[k, merged_id] for k in _record_keys(session, [into_id])]
    return {"rejected_pairs": pairs}


def _undo_split(session: Session, decision: IdentityDecision, rules: Rules) -> dict[str, Any]:
    details = decision.details
    record_id, target, old = (
        details["source_record_id"],
        decision.company_id,
        decision.other_company_id,
    )
    link = _restore_value(_LINK, details["snapshot"]["link"])
    session.execute(
        update(_LINK)
        .where(_LINK.c.source_record_id == record_id)
        .values({k: v for k, v in link.items() if k != "source_record_id"})
    )
    session.execute(update(_RECORD).where(_RECORD.c.id == record_id).values(company_id=old))
    result: dict[str, Any] = {}
    if details["created_company"] and _record_count(session, target) == 0:
        # The company existed only for this record: retire it into the old one, so records
        # spelled like it go where the record went back to.
        _set_company(session, target, merged_into_id=old)
    elif not details["created_company"]:
        result["rejected_pairs"] = [[decision.record_key, target]]
    _after_change(session, [old, target], rules)
    return result


def _restore_links(session: Session, links: list[dict], merged_id: int, into_id: int) -> None:
    """Put back the merged company's links that are still where the merge put them."""
    for values in links:
        values = _restore_value(_LINK, values)
        record_id = values["source_record_id"]
        session.execute(
            update(_LINK)
            .where(_LINK.c.source_record_id == record_id, _LINK.c.company_id == into_id)
            .values({k: v for k, v in values.items() if k != "source_record_id"})
        )
        session.execute(
            update(_RECORD)
            .where(_RECORD.c.id == record_id, _RECORD.c.company_id == into_id)
            .values(company_id=merged_id)
        )


def _restore_companies(session: Session, companies: list[dict]) -> None:
    rows = [_restore_value(_COMPANY, row) for row in companies]
    for row in rows:  # CVRs are unique: free them before handing them back
        _set_company(session, row["id"], cvr=None)
    for row in rows:
        _set_company(session, row["id"], **{k: v for k, v in row.items() if k != "id"})


def _move_back(session: Session, table: Table, ids: list[int], merged_id: int, into_id: int):
    if ids:
        session.execute(
            update(table)
            .where(table.c.id.in_(ids), table.c.company_id == into_id)
            .values(company_id=merged_id)
        )


def _restore_contacts(session: Session, contacts: list[dict], company_ids: list[int]) -> None:
    session.execute(delete(_PERSON).where(_PERSON.c.company_id.in_(company_ids)))
    rows = [_restore_value(_PERSON, row) for row in contacts]
    taken = set(
        session.execute(
            select(_PERSON.c.id).where(_PERSON.c.id.in_([r["id"] for r in rows]))
        ).scalars()
    )
    for row in rows:  # an id another company's person took meanwhile cannot come back
        session.execute(
            insert(_PERSON), {k: v for k, v in row.items() if k != "id" or v not in taken}
        )


def _revive_approaches(session: Session, approaches: list[list]) -> None:
    """Re-create the approaches the merge folded away, under their old ids; the rebuild that
    follows fills them in (or drops them if their records changed meanwhile)."""
    ids = [a[0] for a in approaches]
    keys = [a[1] for a in approaches]
    taken_ids = set(
        session.execute(select(_APPROACH.c.id).where(_APPROACH.c.id.in_(ids))).scalars()
    )
    taken_keys = set(
        session.execute(
            select(_APPROACH.c.group_key).where(_APPROACH.c.group_key.in_(keys))
        ).scalars()
    )
    fresh = [
        {
            "id": a[0],
            "group_key": a[1],
            "company_id": a[2],
            "date": dt.date.fromisoformat(a[3]),
            "coordinated": a[4],
            "planned": False,
            "joint": False,
            "organisations": [],
            "consultants": [],
        }
        for a in approaches
        if a[0] not in taken_ids and a[1] not in taken_keys
    ]
    if fresh:
        session.execute(insert(_APPROACH), fresh)


def _restore_flags(session: Session, snapshot: Mapping[str, Any]) -> None:
    """Flags back on their companies with their content; the rule engine's events of the merge
    removed, and flags the merge raised deleted unless a person has worked on them."""
    if snapshot["flag_events"]:
        session.execute(delete(_EVENT).where(_EVENT.c.id.in_(snapshot["flag_events"])))
    for flag in snapshot["flags"]:
        values = _restore_value(_FLAG, flag)
        kept = ("company_id", "raised_on", "organisations", "approach_ids")
        session.execute(
            update(_FLAG).where(_FLAG.c.id == values["id"]).values({k: values[k] for k in kept})
        )
    for flag_id in snapshot["raised_flags"]:
        flag = session.execute(select(_FLAG.c.status).where(_FLAG.c.id == flag_id)).first()
        by_people = session.execute(
            select(func.count()).where(_EVENT.c.flag_id == flag_id, _EVENT.c.actor != RULES_ACTOR)
        ).scalar_one()
        if flag is not None and flag.status == "open" and not by_people:
            session.execute(delete(_EVENT).where(_EVENT.c.flag_id == flag_id))
            session.execute(delete(_FLAG).where(_FLAG.c.id == flag_id))


def _restore_proposals(session: Session, proposals: Iterable[list]) -> None:
    for proposal_id, status in proposals:
        session.execute(
            update(_PROPOSAL).where(_PROPOSAL.c.id == proposal_id).values(status=status)
        )


# --- shared steps ------------------------------------------------------------------------------


def _after_change(
    session: Session,
    company_ids: list[int],
    rules: Rules,
    coordinated: Mapping[int, bool] | None = None,
) -> None:
    """Display fields, approaches and flags of ``company_ids`` follow their records."""
    refresh_companies(session, company_ids)
    rebuild_approaches(session, company_ids, rules.joint_date_tolerance_days)
    for approach_id, value in (coordinated or {}).items():
        # As the flags were last evaluated; the evaluation below corrects what changed since.
        session.execute(
            update(_APPROACH)
            .where(_APPROACH.c.id == approach_id, _APPROACH.c.company_id.in_(company_ids))
            .values(coordinated=value)
        )
    refresh_report_facts(session, company_ids)  # the evaluation keeps ``coordinated`` current
    evaluate_companies(session, company_ids, rules)


def _decide(
    session: Session,
    action: str,
    company_id: int,
    other_company_id: int | None,
    reviewer: Reviewer,
    reason: str,
    record_key: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> IdentityDecision:
    decision = IdentityDecision(
        action=action,
        company_id=company_id,
        other_company_id=other_company_id,
        record_key=record_key,
        decided_by=reviewer.name,
        organisation=reviewer.organisation,
        reason=reason,
        details=_jsonable(dict(details or {})),
        decided_at=dt.datetime.now(dt.UTC),
    )
    session.add(decision)
    session.flush()
    return decision


def _record_keys(session: Session, company_ids: list[int]) -> list[str]:
    """The distinct :func:`record_key_of` of the companies' records, sorted."""
    columns = [_RECORD.c[n] for n in ("company_name", "cvr_raw", "p_number", "postcode")]
    rows = session.execute(
        select(*columns, _RECORD.c.address, _RECORD.c.city)
        .where(_RECORD.c.company_id.in_(company_ids))
        .distinct()
    )
    return sorted({record_key_of(row) for row in rows})


def _between(first: int, second: int):
    return or_(
        and_(_PROPOSAL.c.company_id == first, _PROPOSAL.c.candidate_company_id == second),
        and_(_PROPOSAL.c.company_id == second, _PROPOSAL.c.candidate_company_id == first),
    )


def _ids(session: Session, table: Table, company_id: int) -> list[int]:
    query = select(table.c.id).where(table.c.company_id == company_id).order_by(table.c.id)
    return list(session.execute(query).scalars())


def _set_company(session: Session, company_id: int, **values: Any) -> None:
    session.execute(update(_COMPANY).where(_COMPANY.c.id == company_id).values(**values))


# --- snapshots as JSON -------------------------------------------------------------------------


def _dump_rows(session: Session, table: Table, where) -> list[dict[str, Any]]:
    rows = session.execute(select(table).where(where).order_by(*table.primary_key.columns))
    return [_jsonable(dict(row._mapping)) for row in rows]


def _jsonable(value: Any) -> Any:
    """Dates and times as ISO text (times in UTC; SQLite hands them back naive)."""
    if isinstance(value, dt.datetime):
        return _aware(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _restore_value(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row dumped by :func:`_dump_rows`, with its dates and times typed again."""
    typed = {}
    for name, value in row.items():
        kind = _python_type(table.c[name].type)
        if value is not None and kind is dt.datetime:
            value = dt.datetime.fromisoformat(value)
        elif value is not None and kind is dt.date:
            value = dt.date.fromisoformat(value)
        typed[name] = value
    return typed


def _python_type(column_type) -> type | None:
    column_type = getattr(column_type, "impl", column_type)  # sqlmodel wraps DateTime
    try:
        return column_type.python_type
    except NotImplementedError:
        return None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
