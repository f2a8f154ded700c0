"""The prior-contact check in one round trip on PostgreSQL: one statement that reads everything
the answer and the coordination rules need and records the check with its audit entry.

:func:`read_snapshot` sends one SELECT of scalar subqueries, each aggregating one kind of row
of the company into a JSON array (``json_agg`` on PostgreSQL, ``json_group_array`` on SQLite):
production units, contact persons, all approaches, the sources, notes and needs of the
period's approaches, flags, earlier checks, registered planned visits, the sources' freshness,
the caller's organisation and the number of organisations of the last 90 days. Each
statement is built once per dialect and reused with bound parameters, so SQLAlchemy's compiled
cache (and psycopg's prepared statements) hit on every check.

:func:`read_and_record` is that read with the check: on PostgreSQL the SELECT becomes a CTE
from which two data-modifying CTEs insert the check and the audit entry (when the company was
not merged and the caller's organisation is stored), all seeing the database as it was before
the statement; elsewhere (and without an audit entry) the read and :func:`insert_check`.
:func:`insert_check` stores the check and the audit entry in one statement on PostgreSQL (two
data-modifying CTEs) and in two inserts on SQLite, where a statement costs no round trip. With
``durable=False`` (the configuration's ``[database] durable_checks = false``) the PostgreSQL
statement that records also sets ``synchronous_commit`` to off for its own transaction only
(``set_config(..., true)``), so its commit does not wait for the WAL flush; nothing else on the
connection changes.

The functions take an ORM ``Session`` or a Core ``Connection`` (the API's fast path uses a
Connection, which costs less per statement). On a PostgreSQL connection in autocommit mode (the
fast path's) the statements run on psycopg's own connection (:class:`coordination.db.
DriverStatement`: compiled once, prepared, without SQLAlchemy's execution context and result).

The answer built from the snapshot is the one :func:`coordination.companies.prior_contact`
builds with its separate queries; ``tests/api/test_prior_contact_read.py`` holds the two
against each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import namedtuple

from sqlalchemy import (
    JSON,
    Connection,
    Date,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    not_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlmodel import Session

from coordination.approach_queries import approach_view, needs_by_approach, sources_and_notes
from coordination.db import DriverStatement
from coordination.identity.normalise import normalise_organisation_name
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    AuditEntry,
    Company,
    ContactPerson,
    Flag,
    Need,
    Organisation,
    PlannedVisit,
    PriorContactCheck,
    ProductionUnit,
    Source,
    SourceRecord,
)
from coordination.rules import LIVE_STATUSES, ApproachFacts, CheckFacts, ExistingFlag
from coordination.timeutil import local_date

SUMMARY_SHORT_DAYS = 30
SUMMARY_LONG_DAYS = 90

_APPROACH = Approach.__table__
_RECORD = SourceRecord.__table__
_ORGANISATION = Organisation.__table__
_SOURCE = Source.__table__
_CHECK = PriorContactCheck.__table__
_COMPANY = Company.__table__
_AUDIT = AuditEntry.__table__

# The company's columns the answer shows, and whether it was merged into another.
CompanyRow = namedtuple(
    "CompanyRow",
    "id cvr name address postcode city municipality_code industry_section size_band merged_into_id",
)

# The columns ``approach_view`` reads, in the order of ``approach_rows``.
ApproachRow = namedtuple(
    "ApproachRow",
    "id company_id date channel purpose organisations consultants coordinated joint planned "
    "company_cvr company_name",
)


# --- the read ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One company's rows as read by :func:`read_snapshot`; values as plain Python."""

    company: CompanyRow
    units: list[dict]
    contacts: list[dict]
    approaches: list[dict]
    records: list[dict]
    needs: list[dict]
    flags: list[dict]
    checks: list[dict]
    visits: list[dict]
    sources: dict[str, dict]
    organisation: tuple[int, str] | None  # the caller's stored organisation: id, name
    organisations_90d: int
    since: dt.date
    today: dt.date

    @property
    def recordable(self) -> bool:
        """Whether a check can be recorded from this snapshot alone: the company was not
        merged into another and the caller's organisation is stored."""
        return self.company.merged_into_id is None and self.organisation is not None

    def approach_facts(self, today: dt.date) -> list[ApproachFacts]:
        """The approaches as ``flagging.evaluate_companies`` gives them to the rules."""
        return [
            ApproachFacts.stored(a["id"], a["date"], a["organisations"], a["joint"])
            for a in self.approaches
            if a["date"] <= today
        ]

    def check_facts(self) -> list[CheckFacts]:
        return [CheckFacts(c["o"], local_date(c["at"])) for c in self.checks]

    def existing_flags(self) -> list[ExistingFlag]:
        return [
            ExistingFlag(
                f["id"], f["status"], f["raised_on"], frozenset(f["approach_ids"]), f["resolved_on"]
            )
            for f in self.flags
        ]

    def answer(self, company, config, viewer: str, with_contacts: bool, now: dt.datetime) -> dict:
        """The answer of :func:`coordination.companies.prior_contact`, without the check."""
        from coordination.companies import freshness, hit

        detail = {
            **hit(company, None),
            "industry_section": company.industry_section,
            "size_band": company.size_band,
            "production_units": self.units,
        }
        detail.pop("score")
        if with_contacts:
            detail["contact_persons"] = [
                {k: p[k] for k in ("name", "email", "phone", "last_seen_on")} for p in self.contacts
            ]
        return {
            "company": detail,
            "days": (self.today - self.since).days,
            "approaches": self._shown_approaches(company, viewer),
            "planned": self._planned(),
            "open_flags": self._live_flags(company),
            "summary": self._summary(),
            "sources": freshness(config.sources, self.sources, now),
        }

    def _upcoming(self, approach: dict) -> bool:
        return bool(approach["planned"]) and approach["date"] >= self.today

    def _shown_approaches(self, company, viewer: str) -> list[dict]:
        shown = sorted(
            (a for a in self.approaches if a["date"] >= self.since and not self._upcoming(a)),
            key=lambda a: (a["date"], a["id"]),
            reverse=True,
        )
        if not shown:
            return []
        sources, notes = sources_and_notes(
            ((r["a"], r["s"], r["x"], r["n"], r["k"]) for r in self.records),
            normalise_organisation_name(viewer),
        )
        needs = needs_by_approach(
            (n["a"], n["t"], n["c"], n["l"], n["tx"])
            for n in sorted(self.needs, key=lambda n: (n["a"], n["id"]))
        )
        return [
            approach_view(
                ApproachRow(
                    a["id"],
                    company.id,
                    a["date"],
                    a["channel"],
                    a["purpose"],
                    a["organisations"],
                    a["consultants"],
                    a["coordinated"],
                    a["joint"],
                    a["planned"],
                    company.cvr,
                    company.name,
                ),
                needs,
                sources,
                notes,
            )
            for a in shown
        ]

    def _planned(self) -> list[dict]:
        items = [
            {
                "id": v["id"],
                "approach_id": None,
                "date": v["date"],
                "organisations": [v["o"]],
                "purpose": v["purpose"],
                "registered_by": v["by"],
            }
            for v in self.visits
        ]
        items.extend(
            {
                "id": None,
                "approach_id": a["id"],
                "date": a["date"],
                "organisations": list(a["organisations"] or ()),
                "purpose": a["purpose"],
                "registered_by": None,
            }
            for a in self.approaches
            if self._upcoming(a)
        )
        return sorted(items, key=lambda i: (i["date"], i["id"] or 0, i["approach_id"] or 0))

    def _live_flags(self, company) -> list[dict]:
        live = [f for f in self.flags if f["status"] in LIVE_STATUSES]
        live.sort(key=lambda f: (f["raised_on"], f["id"]), reverse=True)
        return [
            {
                "id": f["id"],
                "company_id": company.id,
                "cvr": company.cvr,
                "company_name": company.name,
                "raised_on": f["raised_on"],
                "status": f["status"],
                "resolved_on": f["resolved_on"],
                "organisations": list(f["organisations"] or ()),
                "approach_ids": list(f["approach_ids"] or ()),
            }
            for f in live
        ]

    def _summary(self) -> dict:
        short = self.today - dt.timedelta(days=SUMMARY_SHORT_DAYS)
        long = self.today - dt.timedelta(days=SUMMARY_LONG_DAYS)
        happened = [
            a["date"] for a in self.approaches if a["date"] <= self.today and not self._upcoming(a)
        ]
        return {
            "approaches_30d": sum(1 for d in happened if d >= short),
            "approaches_90d": sum(1 for d in happened if d >= long),
            "organisations_90d": self.organisations_90d,
            "last_approach": max(happened, default=None),
        }


def read_snapshot(
    session: Session | Connection,
    organisation: str,
    days: int,
    today: dt.date,
    *,
    company_id: int | None = None,
    cvr: str | None = None,
) -> Snapshot | None:
    """Everything the check needs about the company with ``company_id`` or ``cvr``, in one
    statement; None when there is no such company."""
    by, values = _snapshot_values(organisation, days, today, company_id, cvr)
    since = values["since"]
    if DriverStatement.runs_on(session):
        row = _driver_statement(("snapshot", by), session).first_row(session, values)
    else:
        statement = _snapshot_statement(dialect_name(session), by)
        row = session.execute(statement, values).one_or_none()
    return None if row is None else _snapshot_of(row, since, today)


def _snapshot_values(
    organisation: str, days: int, today: dt.date, company_id: int | None, cvr: str | None
) -> tuple[str, dict]:
    """Which statement variant ("id" or "cvr") and its bound values."""
    by = "id" if company_id is not None else "cvr"
    return by, {
        by if by == "cvr" else "company_id": cvr if by == "cvr" else company_id,
        "since": today - dt.timedelta(days=days),
        "today": today,
        "long": today - dt.timedelta(days=SUMMARY_LONG_DAYS),
        "organisation_key": normalise_organisation_name(organisation),
    }


def _snapshot_of(row, since: dt.date, today: dt.date) -> Snapshot:
    (units, contacts, approaches, records, needs, flags, checks, visits, sources) = row[_AGGREGATES]
    organisation_id, organisation_name, organisations_90d = row[_AGGREGATES.stop : _SNAPSHOT_END]
    return Snapshot(
        company=CompanyRow(*row[: _AGGREGATES.start]),
        units=_rows(units),
        contacts=_rows(contacts, dates=("last_seen_on",)),
        approaches=_rows(approaches, dates=("date",)),
        records=_rows(records),
        needs=_rows(needs),
        flags=_rows(flags, dates=("raised_on", "resolved_on")),
        checks=_rows(checks, moments=("at",)),
        visits=_rows(visits, dates=("date",)),
        sources={s["name"]: s for s in _rows(sources, moments=("last_success_at",))},
        organisation=(organisation_id, organisation_name) if organisation_id is not None else None,
        organisations_90d=int(organisations_90d or 0),
        since=since,
        today=today,
    )


# Where the snapshot row's JSON aggregates are: after the company's columns, before the
# caller's organisation (id, name) and the number of organisations of the last 90 days.
_AGGREGATES = slice(len(CompanyRow._fields), len(CompanyRow._fields) + 9)
_SNAPSHOT_END = _AGGREGATES.stop + 3


def _rows(value, dates: tuple[str, ...] = (), moments: tuple[str, ...] = ()) -> list[dict]:
    """A JSON array of objects (already decoded by psycopg, text from SQLite) as dicts, with
    dates and moments as Python values."""
    if value is None:
        return []
    rows = json.loads(value) if isinstance(value, str) else value
    for row in rows:
        for key in dates:
            if row[key] is not None:
                row[key] = dt.date.fromisoformat(row[key][:10])
        for key in moments:
            if row[key] is not None:
                moment = dt.datetime.fromisoformat(row[key])
                row[key] = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return rows


def dialect_name(executor: Session | Connection) -> str:
    """The database dialect's name ("postgresql", "sqlite") of a Session or a Connection."""
    if isinstance(executor, Connection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


_STATEMENTS: dict[tuple[str, str], object] = {}
_DRIVER_STATEMENTS: dict[tuple, DriverStatement] = {}


def _snapshot_statement(dialect: str, by: str):
    if (dialect, by) not in _STATEMENTS:
        _STATEMENTS[dialect, by] = _build_snapshot_statement(dialect, by)
    return _STATEMENTS[dialect, by]


def _driver_statement(key: tuple, connection: Connection) -> DriverStatement:
    """The snapshot (``("snapshot", by)``), the snapshot with the check
    (``("record", (by, durable))``) or the check's write (``("write", durable)``) on
    PostgreSQL, as a :class:`DriverStatement`."""
    if key not in _DRIVER_STATEMENTS:
        kind, variant = key
        if kind == "snapshot":
            statement = _snapshot_statement("postgresql", variant)
        elif kind == "record":
            statement = _read_and_record_statement(*variant)
        else:
            statement = _combined_write(variant)
        _DRIVER_STATEMENTS[key] = DriverStatement(statement, connection.dialect)
    return _DRIVER_STATEMENTS[key]


def _json_rows(dialect: str, fields: dict, query, order_by: tuple = ()):
    """A scalar subquery: the rows of ``query`` (a Select with FROM and WHERE) as a JSON array
    of objects with ``fields`` (name -> column), in ``order_by`` order (the database's
    collation and NULL placement, as the separate queries order them)."""
    if dialect == "postgresql":
        pairs = [part for name, column in fields.items() for part in (_key(name), column)]
        shaped = func.json_build_object(*pairs)
        ordered = aggregate_order_by(shaped, *order_by) if order_by else shaped
        return query.with_only_columns(func.json_agg(ordered)).scalar_subquery()
    # SQLite before 3.44 has no ORDER BY inside an aggregate; it aggregates a subquery's rows
    # in the subquery's order.
    inner = query.with_only_columns(*(c.label(n) for n, c in fields.items()))
    inner = inner.order_by(*order_by).subquery()
    pairs = []
    for name, column in fields.items():
        value = inner.c[name]
        if isinstance(column.type, JSON):
            value = func.json(value)  # embed as JSON, not as the text SQLite stores
        pairs += [_key(name), value]
    return select(func.json_group_array(func.json_object(*pairs))).scalar_subquery()


def _key(name: str):
    """A JSON key as an SQL string literal (not a bound parameter: the keys are fixed)."""
    return literal_column(f"'{name}'", String)


def _build_snapshot_statement(dialect: str, by: str):
    """The snapshot of the company with the id ``:company_id`` (``by="id"``) or the CVR number
    ``:cvr`` (``by="cvr"``): its columns and the aggregates; no row when there is none."""
    if by == "id":
        company_id = bindparam("company_id", type_=Integer)
        wanted = _COMPANY.c.id == company_id
    elif dialect == "postgresql":
        # The subqueries correlate with the outer company row: PostgreSQL runs each once for
        # that row, without looking the CVR number up again in each of them.
        company_id = _COMPANY.c.id
        wanted = _COMPANY.c.cvr == bindparam("cvr", type_=String)
    else:
        # An alias, so that the subqueries do not correlate with the outer company row (SQLite
        # aggregates from subqueries in FROM, which cannot see it).
        key = _COMPANY.alias("wanted")
        cvr = bindparam("cvr", type_=String)
        company_id = select(key.c.id).where(key.c.cvr == cvr).scalar_subquery()
        wanted = _COMPANY.c.cvr == cvr
    since = bindparam("since", type_=Date)
    today = bindparam("today", type_=Date)
    long = bindparam("long", type_=Date)
    key = bindparam("organisation_key", type_=String)
    a = _APPROACH.c
    in_period = and_(a.company_id == company_id, a.date >= since)
    unit, person, flag = ProductionUnit.__table__, ContactPerson.__table__, Flag.__table__
    need, visit = Need.__table__, PlannedVisit.__table__
    link = ApproachRecord.__table__
    columns = {
        "units": _json_rows(
            dialect,
            {
                "p_number": unit.c.p_number,
                "address": unit.c.address,
                "postcode": unit.c.postcode,
                "city": unit.c.city,
            },
            select(unit.c.id).where(unit.c.company_id == company_id),
            (unit.c.p_number,),
        ),
        "contacts": _json_rows(
            dialect,
            {
                "id": person.c.id,
                "name": person.c.name,
                "email": person.c.email,
                "phone": person.c.phone,
                "last_seen_on": person.c.last_seen_on,
            },
            select(person.c.id).where(
                person.c.company_id == company_id, person.c.anonymised_at.is_(None)
            ),
            (person.c.name, person.c.id),
        ),
        "approaches": _json_rows(
            dialect,
            {
                "id": a.id,
                "date": a.date,
                "channel": a.channel,
                "purpose": a.purpose,
                "organisations": a.organisations,
                "consultants": a.consultants,
                "coordinated": a.coordinated,
                "joint": a.joint,
                "planned": a.planned,
            },
            select(a.id).where(a.company_id == company_id),
        ),
        "records": _json_rows(
            dialect,
            {
                "a": link.c.approach_id,
                "s": _SOURCE.c.name,
                "x": _RECORD.c.external_id,
                "n": _RECORD.c.notes,
                "k": _ORGANISATION.c.name_key,
            },
            select(link.c.approach_id)
            .select_from(
                link.join(_APPROACH, a.id == link.c.approach_id)
                .join(_RECORD, _RECORD.c.id == link.c.source_record_id)
                .join(_SOURCE, _SOURCE.c.id == _RECORD.c.source_id)
                .join(_ORGANISATION, _ORGANISATION.c.id == _SOURCE.c.organisation_id)
            )
            .where(in_period),
            (link.c.approach_id, _SOURCE.c.name, _RECORD.c.external_id),
        ),
        "needs": _json_rows(
            dialect,
            {
                "a": link.c.approach_id,
                "id": need.c.id,
                "t": need.c.type,
                "c": need.c.code,
                "l": need.c.label,
                "tx": need.c.taxonomy_code,
            },
            select(need.c.id)
            .select_from(
                link.join(_APPROACH, a.id == link.c.approach_id).join(
                    need, need.c.source_record_id == link.c.source_record_id
                )
            )
            .where(in_period),
        ),
        "flags": _json_rows(
            dialect,
            {
                "id": flag.c.id,
                "status": flag.c.status,
                "raised_on": flag.c.raised_on,
                "resolved_on": flag.c.resolved_on,
                "organisations": flag.c.organisations,
                "approach_ids": flag.c.approach_ids,
            },
            select(flag.c.id).where(flag.c.company_id == company_id),
        ),
        "checks": _json_rows(
            dialect,
            {"o": _ORGANISATION.c.name, "at": _CHECK.c.checked_at},
            select(_CHECK.c.id)
            .select_from(_CHECK.join(_ORGANISATION, _ORGANISATION.c.id == _CHECK.c.organisation_id))
            .where(_CHECK.c.company_id == company_id),
        ),
        "visits": _json_rows(
            dialect,
            {
                "id": visit.c.id,
                "date": visit.c.date,
                "o": _ORGANISATION.c.name,
                "purpose": visit.c.purpose,
                "by": visit.c.created_by,
            },
            select(visit.c.id)
            .select_from(visit.join(_ORGANISATION, _ORGANISATION.c.id == visit.c.organisation_id))
            .where(visit.c.company_id == company_id, visit.c.date >= today),
        ),
        "sources": _json_rows(
            dialect,
            {
                "name": _SOURCE.c.name,
                "last_success_at": _SOURCE.c.last_success_at,
                "last_status": _SOURCE.c.last_status,
            },
            select(_SOURCE.c.id),
        ),
    }
    caller = (
        select(_ORGANISATION.c.id, _ORGANISATION.c.name)
        .where(_ORGANISATION.c.name_key == key)
        .order_by(_ORGANISATION.c.id)
        .limit(1)
    )
    organisations_90d = (
        select(func.count(func.distinct(ApproachOrganisation.organisation_id)))
        .join(_APPROACH, a.id == ApproachOrganisation.approach_id)
        .where(
            a.company_id == company_id,
            a.date <= today,
            a.date >= long,
            not_(and_(a.planned.is_(True), a.date >= today)),
        )
        .scalar_subquery()
    )
    return select(
        *(_COMPANY.c[name] for name in CompanyRow._fields),
        *(value.label(name) for name, value in columns.items()),
        caller.with_only_columns(_ORGANISATION.c.id).scalar_subquery().label("organisation_id"),
        caller.with_only_columns(_ORGANISATION.c.name).scalar_subquery().label("organisation_name"),
        organisations_90d.label("organisations_90d"),
    ).where(wanted)


# --- the read with the write ------------------------------------------------------------------


def read_and_record(
    session: Session | Connection,
    organisation: str,
    days: int,
    today: dt.date,
    *,
    company_id: int | None = None,
    cvr: str | None = None,
    consultant: str | None,
    at: dt.datetime,
    audit: dict | None,
    durable: bool = True,
) -> tuple[Snapshot | None, int | None]:
    """:func:`read_snapshot`, and the check by the caller's stored organisation recorded at
    ``at`` with ``audit`` (an audit entry's column values; the company's id is added to its
    details as ``company_id``) when the company was not merged into another and the
    organisation is stored: the snapshot (None when there is no such company) and the
    check's id (None when nothing was recorded). The snapshot is the database before the
    check.

    On PostgreSQL (with an audit entry) this is one statement, a round trip less than a read
    and a write; ``durable`` as for :func:`insert_check`. Elsewhere the read and the write
    are separate statements."""
    if dialect_name(session) != "postgresql" or audit is None:
        snapshot = read_snapshot(session, organisation, days, today, company_id=company_id, cvr=cvr)
        if snapshot is None or not snapshot.recordable:
            return snapshot, None
        company = snapshot.company.id
        entry = with_company(audit, company) if audit is not None else None
        check_id = insert_check(
            session, company, snapshot.organisation[0], consultant, at, entry, durable
        )
        return snapshot, check_id
    by, values = _snapshot_values(organisation, days, today, company_id, cvr)
    values |= {"consultant": consultant, "checked_at": at} | _audit_parameters(audit, at)
    if DriverStatement.runs_on(session):
        row = _driver_statement(("record", (by, durable)), session).first_row(session, values)
    else:
        row = session.execute(_read_and_record_statement(by, durable), values).one_or_none()
    if row is None:
        return None, None
    return _snapshot_of(row, values["since"], today), row[_SNAPSHOT_END]


def with_company(audit: dict, company_id: int) -> dict:
    """The audit entry's values ``audit`` with the company's id in its details."""
    return audit | {"details": {**(audit.get("details") or {}), "company_id": company_id}}


def _audit_parameters(audit: dict, at: dt.datetime) -> dict:
    values = {f"audit_{name}": audit.get(name) for name in _AUDIT_FIELDS}
    values["audit_details"] = audit.get("details") or {}
    values["audit_at"] = audit.get("at") or at
    return values


_RECORDING: dict[tuple[str, bool], object] = {}


def _read_and_record_statement(by: str, durable: bool):
    """The snapshot as a CTE, the check inserted from it (when recordable) with its audit
    entry, and the snapshot's row with the check's id (NULL when none was recorded).
    PostgreSQL runs each data-modifying CTE once, and all of them see the database as it
    was before the statement, so the snapshot does not contain the new check."""
    if (by, durable) not in _RECORDING:
        snapshot = _snapshot_statement("postgresql", by).cte("snapshot")
        recordable = select(
            snapshot.c.id,
            snapshot.c.organisation_id,
            bindparam("consultant", type_=_CHECK.c.consultant.type),
            bindparam("checked_at", type_=_CHECK.c.checked_at.type),
        ).where(snapshot.c.merged_into_id.is_(None), snapshot.c.organisation_id.is_not(None))
        check = (
            insert(_CHECK)
            .from_select(["company_id", "organisation_id", "consultant", "checked_at"], recordable)
            .returning(_CHECK.c.id, _CHECK.c.company_id)
            .cte("new_check")
        )
        # The details given, with the company's id added (jsonb orders the keys its own way).
        details = cast(
            cast(bindparam("audit_details", type_=JSONB), JSONB).op("||")(
                func.jsonb_build_object(_key("company_id"), check.c.company_id)
            ),
            JSON,
        )
        entry = select(
            bindparam("audit_at", type_=_AUDIT.c.at.type),
            *(
                bindparam(f"audit_{name}", type_=_AUDIT.c[name].type)
                for name in _AUDIT_FIELDS
                if name != "details"
            ),
            details,
        ).select_from(check)
        fields = ["at", *(name for name in _AUDIT_FIELDS if name != "details"), "details"]
        audit = insert(_AUDIT).from_select(fields, entry).cte("new_audit_entry")
        columns = [*snapshot.c, check.c.id.label("check_id")]
        if not durable:
            columns.append(func.set_config(_key("synchronous_commit"), _key("off"), True))
        _RECORDING[by, durable] = (
            select(*columns).select_from(snapshot.outerjoin(check, true())).add_cte(audit)
        )
    return _RECORDING[by, durable]


# --- the write --------------------------------------------------------------------------------

_WRITES: dict[bool, object] = {}


def insert_check(
    session: Session | Connection,
    company_id: int,
    organisation_id: int,
    consultant: str | None,
    at: dt.datetime,
    audit: dict | None,
    durable: bool = True,
) -> int:
    """Store the check (and ``audit``, an audit entry's column values); the check's id.

    ``durable=False`` lets the PostgreSQL statement of a check with its audit entry commit
    without waiting for the WAL flush (module doc); SQLite and the other cases ignore it."""
    check = {
        "company_id": company_id,
        "organisation_id": organisation_id,
        "consultant": consultant,
        "checked_at": at,
    }
    if dialect_name(session) == "postgresql" and audit is not None:
        values = {f"audit_{name}": audit.get(name) for name in _AUDIT_FIELDS}
        values["audit_at"] = audit.get("at") or at
        if DriverStatement.runs_on(session):
            return _driver_statement(("write", durable), session).first_row(
                session, check | values
            )[0]
        return session.execute(_combined_write(durable), check | values).scalar_one()
    check_id = session.execute(insert(_CHECK).values(**check).returning(_CHECK.c.id)).scalar_one()
    if audit is not None:
        session.execute(insert(_AUDIT).values(**({"at": at} | audit)))
    return check_id


_AUDIT_FIELDS = ("actor", "organisation", "role", "action", "target", "details")


def _combined_write(durable: bool):
    if durable not in _WRITES:
        check = (
            insert(_CHECK)
            .values(
                company_id=bindparam("company_id"),
                organisation_id=bindparam("organisation_id"),
                consultant=bindparam("consultant"),
                checked_at=bindparam("checked_at"),
            )
            .returning(_CHECK.c.id)
            .cte("new_check")
        )
        audit = insert(_AUDIT).values(
            at=bindparam("audit_at", type_=_AUDIT.c.at.type),
            **{
                name: bindparam(f"audit_{name}", type_=_AUDIT.c[name].type)
                for name in _AUDIT_FIELDS
            },
        )
        columns = [check.c.id]
        if not durable:
            # Local to the statement's own transaction (autocommit) or the caller's: the commit
            # reads the setting, then it reverts.
            columns.append(func.set_config(_key("synchronous_commit"), _key("off"), True))
        _WRITES[durable] = select(*columns).add_cte(audit.cte("new_audit_entry"))
    return _WRITES[durable]
