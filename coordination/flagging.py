"""Applies the coordination rules to stored approaches: marks each approach coordinated or not,
and raises or updates flags. Called after every sync for the companies it touched, and nightly
for all companies (planned approaches start to count when their date arrives)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import bindparam, select, update
from sqlmodel import Session

from coordination.config import Rules
from coordination.models import (
    Approach,
    Flag,
    FlagEvent,
    Organisation,
    PriorContactCheck,
    utcnow,
)
from coordination.rules import (
    ApproachFacts,
    CheckFacts,
    ExistingFlag,
    evaluate_company,
)
from coordination.timeutil import local_today

_APPROACH = Approach.__table__
_FLAG = Flag.__table__


def evaluate_companies(
    session: Session, company_ids: Iterable[int], rules: Rules, today: dt.date | None = None
) -> int:
    """Re-evaluate ``company_ids``; returns the number of flags raised."""
    ids = sorted(set(company_ids))
    today = today or local_today()
    raised = 0
    for start in range(0, len(ids), 2000):
        raised += _evaluate_chunk(session, ids[start : start + 2000], rules, today)
    return raised


def all_company_ids(session: Session) -> list[int]:
    return list(session.execute(select(_APPROACH.c.company_id).distinct()).scalars())


def _evaluate_chunk(session: Session, ids: list[int], rules: Rules, today: dt.date) -> int:
    approaches = defaultdict(list)
    query = select(
        _APPROACH.c.id,
        _APPROACH.c.company_id,
        _APPROACH.c.date,
        _APPROACH.c.organisations,
        _APPROACH.c.joint,
        _APPROACH.c.coordinated,
    ).where(_APPROACH.c.company_id.in_(ids), _APPROACH.c.date <= today)
    for row in session.execute(query):
        approaches[row.company_id].append(row)
    checks = defaultdict(list)
    check_query = (
        select(PriorContactCheck.company_id, PriorContactCheck.checked_at, Organisation.name)
        .join(Organisation, Organisation.id == PriorContactCheck.organisation_id)
        .where(PriorContactCheck.company_id.in_(ids))
    )
    for company_id, checked_at, organisation in session.execute(check_query):
        checks[company_id].append(CheckFacts(organisation, _local_date(checked_at)))
    flags = defaultdict(list)
    for flag in session.execute(select(_FLAG).where(_FLAG.c.company_id.in_(ids))):
        flags[flag.company_id].append(flag)
    changes, raised = [], 0
    for company_id in ids:
        rows = approaches.get(company_id, [])
        facts = [
            ApproachFacts(
                row.id,
                row.date,
                frozenset(row.organisations),
                names_other=bool(row.joint and len(row.organisations) == 1),
            )
            for row in rows
        ]
        existing = [
            ExistingFlag(
                f.id, f.status, f.raised_on, frozenset(f.approach_ids or ()), f.resolved_on
            )
            for f in flags.get(company_id, [])
        ]
        evaluation = evaluate_company(facts, checks.get(company_id, []), existing, rules)
        changes.extend(
            {"b_id": row.id, "b_coordinated": row.id not in evaluation.uncoordinated}
            for row in rows
            if row.coordinated == (row.id in evaluation.uncoordinated)
        )
        raised += _apply_flags(session, company_id, evaluation.changes)
    if changes:
        session.connection().execute(
            update(_APPROACH)
            .where(_APPROACH.c.id == bindparam("b_id"))
            .values(coordinated=bindparam("b_coordinated")),
            changes,
        )
    return raised


def _apply_flags(session: Session, company_id: int, changes) -> int:
    for episode in changes.create:
        flag = Flag(
            company_id=company_id,
            raised_on=episode.raised_on,
            status="open",
            organisations=sorted(episode.organisations),
            approach_ids=sorted(episode.approach_ids),
        )
        session.add(flag)
        session.flush()
        session.add(FlagEvent(flag_id=flag.id, action="raised", actor="coordination-rules"))
    for flag_id, episode in changes.update:
        session.execute(
            update(_FLAG)
            .where(_FLAG.c.id == flag_id)
            .values(
                raised_on=episode.raised_on,
                organisations=sorted(episode.organisations),
                approach_ids=sorted(episode.approach_ids),
            )
        )
        session.add(FlagEvent(flag_id=flag_id, action="updated", actor="coordination-rules"))
    return len(changes.create)


def _local_date(moment: dt.datetime) -> dt.date:
    from zoneinfo import ZoneInfo

    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(ZoneInfo("Europe/Copenhagen")).date()


__all__ = ["all_company_ids", "evaluate_companies", "utcnow"]
