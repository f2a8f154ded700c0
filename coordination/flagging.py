"""Applies the coordination rules to stored approaches: marks each approach coordinated or not,
and raises or updates flags. Called after every sync for the companies it touched, and nightly
for all companies (planned approaches start to count when their date arrives)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from collections.abc import Iterable, Set

from sqlalchemy import (
    Boolean,
    Integer,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session

from coordination.config import Rules
from coordination.db import int_list
from coordination.models import (
    Approach,
    Flag,
    FlagEvent,
    Organisation,
    PriorContactCheck,
    ReportApproachFact,
    utcnow,
)
from coordination.reports.facts import mark_facts_changed
from coordination.rules import (
    ApproachFacts,
    CheckFacts,
    ExistingFlag,
    evaluate_company,
    uncoordinated_ids,
)
from coordination.timeutil import local_date, local_today

_APPROACH = Approach.__table__
_FLAG = Flag.__table__
_EVENT = FlagEvent.__table__
_CHECK = PriorContactCheck.__table__


# Built once: the compiled-statement cache then skips building them per chunk. The
# organisations come as JSON text, decoded once per distinct text (:func:`_organisations`).
# PostgreSQL reads the approaches' rows straight from psycopg (:func:`_approach_rows`), with
# the companies as one array.
_IN_COMPANIES = _APPROACH.c.company_id.in_(int_list())
_IN_COMPANY_ARRAY = _APPROACH.c.company_id == any_(bindparam("ids", type_=ARRAY(Integer)))
_APPROACH_COLUMNS = (
    _APPROACH.c.id,
    _APPROACH.c.company_id,
    _APPROACH.c.date,
    cast(_APPROACH.c.organisations, Text).label("organisations"),
    _APPROACH.c.joint,
    _APPROACH.c.coordinated,
)
_COUNTED = _APPROACH.c.date <= bindparam("today")
_APPROACHES_OF = {
    False: select(*_APPROACH_COLUMNS).where(_IN_COMPANIES, _COUNTED),
    True: select(*_APPROACH_COLUMNS).where(_IN_COMPANY_ARRAY, _COUNTED),
}
_CHECKS_OF = (
    select(_CHECK.c.company_id, _CHECK.c.checked_at, Organisation.name)
    .join(Organisation, Organisation.id == _CHECK.c.organisation_id)
    .where(_CHECK.c.company_id.in_(int_list()))
)
_FLAGS_OF = select(_FLAG).where(_FLAG.c.company_id.in_(int_list()))
_SET_COORDINATED = (
    update(_APPROACH)
    .where(_APPROACH.c.id == bindparam("b_id"))
    .values(coordinated=bindparam("b_coordinated"))
)
# The coordination report's approach facts (coordination.reports.facts) follow the approaches.
_FACT = ReportApproachFact.__table__
_SET_FACTS_COORDINATED = (
    update(_FACT)
    .where(_FACT.c.approach_id == bindparam("b_id"))
    .values(coordinated=bindparam("b_coordinated"))
)
# PostgreSQL: the same changes in one statement each, the pairs as two arrays (an executemany
# runs one statement per approach: 0.4-0.5 s per 2,000 companies of a full sync).
_CHANGES = (
    func.unnest(bindparam("ids", type_=ARRAY(Integer)), bindparam("values", type_=ARRAY(Boolean)))
    .table_valued(column("id", Integer), column("coordinated", Boolean))
    .render_derived(name="change")
)
_SET_ALL_COORDINATED = (
    update(_APPROACH)
    .where(_APPROACH.c.id == _CHANGES.c.id)
    .values(coordinated=_CHANGES.c.coordinated)
)
_SET_ALL_FACTS_COORDINATED = (
    update(_FACT)
    .where(_FACT.c.approach_id == _CHANGES.c.id)
    .values(coordinated=_CHANGES.c.coordinated)
)
_INSERT_FLAGS = insert(_FLAG).returning(_FLAG.c.id, sort_by_parameter_order=True)
_UPDATE_FLAG = (
    update(_FLAG)
    .where(_FLAG.c.id == bindparam("b_id"))
    .values(
        raised_on=bindparam("b_raised_on"),
        organisations=bindparam("b_organisations"),
        approach_ids=bindparam("b_approach_ids"),
    )
)


def evaluate_companies(
    session: Session, company_ids: Iterable[int], rules: Rules, today: dt.date | None = None
) -> int:
    """Re-evaluate ``company_ids``; returns the number of flags raised."""
    ids = sorted(set(company_ids))
    today = today or local_today()
    session.flush()  # the statements below bypass the session: it must not hold back changes
    raised = 0
    for start in range(0, len(ids), 2000):
        raised += _evaluate_chunk(session, ids[start : start + 2000], rules, today)
    return raised


def all_company_ids(session: Session) -> list[int]:
    return list(session.execute(select(_APPROACH.c.company_id).distinct()).scalars())


def companies_due(
    session: Session,
    today: dt.date,
    since: dt.date | None,
    rules: Rules,
    leave_out: Set[int] = frozenset(),
) -> list[int]:
    """The companies whose evaluation can differ from the one stored when the rules were last
    applied to all companies due on ``since`` (None: never, so all companies), but those in
    ``leave_out``.

    The rules look at the dates of a company's approaches relative to each other, never at
    today's date itself; today only decides which approaches count (those dated up to today).
    So between two nightly runs a company's evaluation changes through time alone when one of
    its approaches (a planned one, typically) has fallen due since ``since``; everything else
    that changes it (a sync, a check, an identity decision) evaluates the company at once.
    ``since`` itself is included, a margin of one day. (The rules' whole window before today,
    once taken as a margin too, made 130,000 of 300,000 companies due every night.)

    Of those, a company is due only when one of the approaches dated from ``since`` to today
    is uncoordinated, or is stored as uncoordinated (:func:`_changed_by_time`): an approach that
    falls due is later than every approach counted before it, so it changes no earlier
    approach's look-back window; when it is coordinated it joins no episode either, and the
    evaluation stays the one stored. A company whose flag a person acknowledged or resolved
    from the day before ``since`` on is due all the same, as it was before this narrowing
    (a resolved flag's approaches no longer count towards an episode)."""
    if since is None:
        return [
            company_id for company_id in all_company_ids(session) if company_id not in leave_out
        ]
    query = select(_APPROACH.c.company_id).where(_APPROACH.c.date.between(since, today))
    dated = set(session.execute(query.distinct()).scalars()).difference(leave_out)
    # a person acknowledged or resolved one of their flags (which evaluates nobody) since the
    # day before ``since``: evaluated as every company with an approach falling due once was
    acted = dated.intersection(_acted_on_since(session, since - dt.timedelta(days=1)))
    rest = sorted(dated - acted)
    due = set(acted)
    for start in range(0, len(rest), _WINDOW_CHUNK):
        chunk = rest[start : start + _WINDOW_CHUNK]
        due.update(_changed_by_time(session.connection(), chunk, rules, today, since))
    return sorted(due)


def _acted_on_since(session: Session, day: dt.date) -> set[int]:
    """The companies with a flag a person acknowledged or resolved from ``day`` on (UTC)."""
    acted = (
        select(_FLAG.c.company_id)
        .join(_EVENT, _EVENT.c.flag_id == _FLAG.c.id)
        .where(
            _EVENT.c.at >= dt.datetime.combine(day, dt.time(), dt.UTC),
            _EVENT.c.action.not_in(_RULES_ACTIONS),
        )
    )
    return set(session.execute(acted).scalars())


# Companies whose look-back windows are read in one statement (companies_due).
_WINDOW_CHUNK = 5000
_IN_WINDOW = _APPROACH.c.date.between(bindparam("earliest"), bindparam("today"))
_WINDOW_OF = {
    False: select(*_APPROACH_COLUMNS).where(_IN_COMPANIES, _IN_WINDOW),
    True: select(*_APPROACH_COLUMNS).where(_IN_COMPANY_ARRAY, _IN_WINDOW),
}
_RECENT_CHECKS_OF = _CHECKS_OF.where(_CHECK.c.checked_at >= bindparam("checked_from"))


def _changed_by_time(
    connection, company_ids: list[int], rules: Rules, today: dt.date, since: dt.date
) -> list[int]:
    """Of ``company_ids``, those with an approach dated from ``since`` to ``today`` that is
    uncoordinated or stored as uncoordinated. Reads only what decides those approaches: the
    approaches of their look-back windows, and the prior-contact checks that may count for
    them (a day's margin on the checks' UTC moments; a check left out could only make an
    approach look uncoordinated, and so its company due)."""
    earliest = since - dt.timedelta(days=rules.window_days)
    parameters = {"ids": company_ids, "earliest": earliest, "today": today}
    rows = _approach_rows(connection, _WINDOW_OF, parameters)
    approaches, stored_uncoordinated = _facts_by_company(rows, since)
    checked_from = dt.datetime.combine(
        since - dt.timedelta(days=rules.lookup_valid_days + 1), dt.time(), dt.UTC
    )
    checks = defaultdict(list)
    parameters = {"ids": company_ids, "checked_from": checked_from}
    for company_id, checked_at, organisation in connection.execute(_RECENT_CHECKS_OF, parameters):
        checks[company_id].append(CheckFacts(organisation, local_date(checked_at)))
    due = []
    for company_id in company_ids:
        if company_id in stored_uncoordinated:
            due.append(company_id)
            continue
        window = approaches.get(company_id, [])
        uncoordinated = uncoordinated_ids(window, checks.get(company_id, []), rules)
        if any(a.id in uncoordinated for a in window if a.date >= since):
            due.append(company_id)
    return due


def unchanged_since(
    session: Session,
    company_ids: Set[int],
    evaluated_on: dt.date,
    evaluated_at: dt.datetime,
    today: dt.date,
) -> set[int]:
    """Of ``company_ids``, all evaluated for ``evaluated_on`` from ``evaluated_at`` on (a sync's
    end), those whose evaluation for ``today`` is the one stored, so that evaluating them again
    changes nothing. A sync, a prior-contact check and an identity decision evaluate the
    companies they change at once; a person acknowledging or resolving a flag evaluates nobody,
    so a company with such an event since ``evaluated_at`` is not among them (nor is any
    company when ``today`` is another day)."""
    if evaluated_on != today:
        return set()
    acted = (
        select(_FLAG.c.company_id)
        .join(_EVENT, _EVENT.c.flag_id == _FLAG.c.id)
        .where(_EVENT.c.at >= evaluated_at, _EVENT.c.action.not_in(_RULES_ACTIONS))
    )
    return set(company_ids).difference(session.execute(acted).scalars())


def _evaluate_chunk(session: Session, ids: list[int], rules: Rules, today: dt.date) -> int:
    connection = session.connection()
    rows = _approach_rows(connection, _APPROACHES_OF, {"ids": ids, "today": today})
    approaches, stored_uncoordinated = _facts_by_company(rows)
    checks = defaultdict(list)
    for company_id, checked_at, organisation in connection.execute(_CHECKS_OF, {"ids": ids}):
        checks[company_id].append(CheckFacts(organisation, local_date(checked_at)))
    flags = defaultdict(list)
    for flag in connection.execute(_FLAGS_OF, {"ids": ids}):
        flags[flag.company_id].append(flag)
    changes, created, updated = [], [], []
    no_flags = ()
    for company_id in ids:
        existing = [
            ExistingFlag(
                f.id, f.status, f.raised_on, frozenset(f.approach_ids or ()), f.resolved_on
            )
            for f in flags.get(company_id, no_flags)
        ]
        evaluation = evaluate_company(
            approaches.get(company_id, []), checks.get(company_id, []), existing, rules
        )
        uncoordinated = evaluation.uncoordinated
        # stored one way, evaluated the other: in exactly one of the two sets
        changes.extend(
            {"b_id": approach_id, "b_coordinated": approach_id not in uncoordinated}
            for approach_id in uncoordinated.symmetric_difference(
                stored_uncoordinated.get(company_id, ())
            )
        )
        created.extend((company_id, episode) for episode in evaluation.changes.create)
        updated.extend(evaluation.changes.update)
    if changes:
        _set_coordinated(connection, changes)
        mark_facts_changed(connection)
    _apply_flags(connection, created, updated)
    return len(created)


_new_facts = tuple.__new__  # ApproachFacts is a named tuple


def _facts_by_company(rows: list[tuple], since: dt.date = dt.date.min) -> tuple[dict, dict]:
    """From ``_APPROACH_COLUMNS`` rows: each company's approaches as :class:`ApproachFacts`
    (as ``ApproachFacts.stored`` makes them, written out: this runs for every approach an
    evaluation reads), and the ids of those dated from ``since`` on stored as uncoordinated
    (few)."""
    approaches = defaultdict(list)
    stored_uncoordinated = defaultdict(set)
    decoded = _DECODED
    for approach_id, company_id, date, text, joint, coordinated in rows:
        organisations = decoded.get(text)
        if organisations is None:
            organisations = _organisations(text)
        names_other = bool(joint and len(organisations) == 1)
        approaches[company_id].append(
            _new_facts(ApproachFacts, (approach_id, date, organisations, names_other))
        )
        if not coordinated and date >= since:
            stored_uncoordinated[company_id].add(approach_id)
    return approaches, stored_uncoordinated


def _approach_rows(connection, statements: dict, parameters: dict) -> list[tuple]:
    """The rows of ``statements[on psycopg]`` (``_APPROACHES_OF``, ``_WINDOW_OF``). On
    psycopg straight from its cursor, in binary: SQLAlchemy's result makes a row object of each
    tuple, which cost the evaluation of a nightly sync's 126,000 approaches about 0.1 s of
    its 0.55 s. The statement runs in the connection's transaction, and the engine's
    ``before_cursor_execute`` and ``after_cursor_execute`` events see it; its errors are the
    driver's (as :class:`coordination.db.DriverStatement`'s)."""
    if connection.dialect.driver != "psycopg":
        return connection.execute(statements[False], parameters).all()
    text = _driver_text(statements[True], connection.dialect)
    announce = connection.dispatch
    with connection.connection.driver_connection.cursor(binary=True) as cursor:
        if announce.before_cursor_execute:
            announce.before_cursor_execute(connection, cursor, text, parameters, None, False)
        cursor.execute(text, parameters)
        rows = cursor.fetchall()
        if announce.after_cursor_execute:
            announce.after_cursor_execute(connection, cursor, text, parameters, None, False)
    return rows


@functools.lru_cache(maxsize=32)
def _driver_text(statement, dialect) -> str:
    """The SQL text of ``statement`` with psycopg's named placeholders, compiled once."""
    return str(statement.compile(dialect=dialect))


def _set_coordinated(connection, changes: list[dict]) -> None:
    """Store the approaches' new ``coordinated`` (``b_id``, ``b_coordinated``), in the
    approaches and in their report facts."""
    if connection.dialect.name == "postgresql":
        arrays = {
            "ids": [change["b_id"] for change in changes],
            "values": [change["b_coordinated"] for change in changes],
        }
        connection.execute(_SET_ALL_COORDINATED, arrays)
        connection.execute(_SET_ALL_FACTS_COORDINATED, arrays)
        return
    connection.execute(_SET_COORDINATED, changes)
    connection.execute(_SET_FACTS_COORDINATED, changes)


# An approach's organisations by their JSON text: a few hundred distinct texts (the
# organisations and their joint combinations) recur on hundreds of thousands of approaches.
_DECODED: dict[str, frozenset[str]] = {}


def _organisations(text: str) -> frozenset[str]:
    """An approach's organisations from their JSON text, decoded once per distinct text."""
    organisations = _DECODED.get(text)
    if organisations is None:
        if len(_DECODED) >= 4096:  # bounded, as the texts of a long-running process may grow
            _DECODED.clear()
        organisations = _DECODED[text] = frozenset(json.loads(text))
    return organisations


def _apply_flags(connection, created: list, updated: list) -> None:
    """Store new flags and flag updates, each with its event, in a few statements."""
    now = utcnow()
    events = []
    if created:
        rows = [
            {
                "company_id": company_id,
                "raised_on": episode.raised_on,
                "status": "open",
                "organisations": sorted(episode.organisations),
                "approach_ids": sorted(episode.approach_ids),
                "resolved_on": None,
                "created_at": now,
            }
            for company_id, episode in created
        ]
        ids = connection.execute(_INSERT_FLAGS, rows).scalars().all()
        events.extend(_event(flag_id, "raised", now) for flag_id in ids)
    if updated:
        connection.execute(
            _UPDATE_FLAG,
            [
                {
                    "b_id": flag_id,
                    "b_raised_on": episode.raised_on,
                    "b_organisations": sorted(episode.organisations),
                    "b_approach_ids": sorted(episode.approach_ids),
                }
                for flag_id, episode in updated
            ],
        )
        events.extend(_event(flag_id, "updated", now) for flag_id, _ in updated)
    if events:
        connection.execute(insert(_EVENT), events)


_RULES_ACTIONS = ("raised", "updated")  # the events the rules record (:func:`_event`)


def _event(flag_id: int, action: str, now: dt.datetime) -> dict:
    return {
        "flag_id": flag_id,
        "action": action,
        "comment": None,
        "actor": "coordination-rules",
        "organisation": None,
        "at": now,
    }


__all__ = ["all_company_ids", "companies_due", "evaluate_companies", "unchanged_since", "utcnow"]
