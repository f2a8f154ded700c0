"""Working the flags: list them, acknowledge and resolve them with a comment and who did it.

The life cycle is :func:`coordination.rules.transition` (``open`` → ``acknowledged`` →
``resolved``, or ``open`` → ``resolved``); every step a person takes is a ``FlagEvent`` row, next
to the ``raised`` and ``updated`` events the rules write (``coordination.flagging``).

A flag is shown as::

    {"id", "company_id", "cvr" | None, "company_name", "raised_on", "status", "resolved_on",
     "organisations", "approach_ids", "events": [{"action", "comment", "actor", "organisation",
     "at"}]}
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Select, func, select, update
from sqlmodel import Session

from coordination.models import Company, Flag, FlagEvent, utcnow
from coordination.rules import LIVE_STATUSES, RESOLVED, FlagTransitionError, transition

_FLAG = Flag.__table__
ACTIONS = ("acknowledge", "resolve")


class FlagNotFound(LookupError):
    """No flag has this id."""


def list_flags(
    session: Session, status: str | None, page: int, page_size: int
) -> tuple[list[dict], int]:
    """One page of flags (all, or those with ``status``), newest raised first, and the total."""
    conditions = [] if status is None else [_FLAG.c.status == status]
    total = session.execute(select(func.count()).select_from(_FLAG).where(*conditions)).scalar_one()
    rows = session.execute(
        _flag_rows()
        .where(*conditions)
        .order_by(_FLAG.c.raised_on.desc(), _FLAG.c.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return _with_events(session, rows), total


def live_flags_of(session: Session, company_id: int) -> list[dict]:
    """The company's flags that are not resolved (``open`` or ``acknowledged``), newest first,
    without their events (whose comments are the coordinators' working notes)."""
    rows = session.execute(
        _flag_rows()
        .where(_FLAG.c.company_id == company_id, _FLAG.c.status.in_(sorted(LIVE_STATUSES)))
        .order_by(_FLAG.c.raised_on.desc(), _FLAG.c.id.desc())
    ).all()
    return [_view(row) for row in rows]


def get_flag(session: Session, flag_id: int) -> dict:
    """One flag with its events; :class:`FlagNotFound` if there is none with ``flag_id``."""
    row = session.execute(_flag_rows().where(_FLAG.c.id == flag_id)).first()
    if row is None:
        raise FlagNotFound(flag_id)
    return _with_events(session, [row])[0]


def act_on_flag(
    session: Session,
    flag_id: int,
    action: str,
    comment: str,
    actor: str | None,
    organisation: str | None,
    today: dt.date,
) -> dict:
    """Apply ``action`` ("acknowledge" or "resolve") to a flag and record who did it and why.

    Raises :class:`FlagNotFound`, or :class:`coordination.rules.FlagTransitionError` when the
    flag's status does not allow the action (e.g. resolving a resolved flag). A resolved flag
    gets ``resolved_on = today``. The status changes only if it is still the one read, so two
    coordinators acting at once cannot both succeed.
    """
    status = session.execute(select(_FLAG.c.status).where(_FLAG.c.id == flag_id)).scalar()
    if status is None:
        raise FlagNotFound(flag_id)
    new_status = transition(status, action)
    values: dict = {"status": new_status}
    if new_status == RESOLVED:
        values["resolved_on"] = today
    changed = session.execute(
        update(_FLAG).where(_FLAG.c.id == flag_id, _FLAG.c.status == status).values(**values)
    )
    if changed.rowcount != 1:  # someone else moved it first: report the status they left
        current = session.execute(select(_FLAG.c.status).where(_FLAG.c.id == flag_id)).scalar()
        raise FlagTransitionError(current or status, action)
    session.add(
        FlagEvent(
            flag_id=flag_id,
            action=action,
            comment=comment,
            actor=actor,
            organisation=organisation,
            at=utcnow(),
        )
    )
    session.flush()
    return get_flag(session, flag_id)


def _flag_rows() -> Select:
    return select(
        _FLAG.c.id,
        _FLAG.c.company_id,
        _FLAG.c.raised_on,
        _FLAG.c.status,
        _FLAG.c.resolved_on,
        _FLAG.c.organisations,
        _FLAG.c.approach_ids,
        Company.cvr,
        Company.name.label("company_name"),
    ).join(Company, Company.id == _FLAG.c.company_id)


def _view(row) -> dict:
    return {
        "id": row.id,
        "company_id": row.company_id,
        "cvr": row.cvr,
        "company_name": row.company_name,
        "raised_on": row.raised_on,
        "status": row.status,
        "resolved_on": row.resolved_on,
        "organisations": list(row.organisations or ()),
        "approach_ids": list(row.approach_ids or ()),
    }


def _with_events(session: Session, rows: Sequence) -> list[dict]:
    events: dict[int, list[dict]] = defaultdict(list)
    ids = [row.id for row in rows]
    if ids:
        # In the order they were written: the clock may tie, the id does not.
        query = select(FlagEvent).where(FlagEvent.flag_id.in_(ids)).order_by(FlagEvent.id)
        for event in session.execute(query).scalars():
            events[event.flag_id].append(
                {
                    "action": event.action,
                    "comment": event.comment,
                    "actor": event.actor,
                    "organisation": event.organisation,
                    "at": _aware(event.at),
                }
            )
    return [{**_view(row), "events": events.get(row.id, [])} for row in rows]


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
