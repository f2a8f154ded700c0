"""Database tables (SQLModel). The schema serves the whole product; see README "Data model".

Source records are stored as delivered (CPR-redacted) and never rewritten by later processing:
company links, approaches and flags are separate tables that point at them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- organisations and sources ----------------------------------------------------------------


class Organisation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=300)
    name_key: str = Field(index=True, max_length=300)  # normalised, for joint-with matching
    type: str = Field(max_length=20)  # vaeksthus | jobcenter | veu
    municipality_code: str | None = Field(default=None, max_length=3)


class Source(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    kind: str = Field(max_length=50)
    organisation_id: int = Field(foreign_key="organisation.id")
    state: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # the cursor
    last_success_at: dt.datetime | None = None
    last_status: str | None = Field(default=None, max_length=20)  # succeeded | failed


class SourceRecord(SQLModel, table=True):
    """One record as a source delivered it, with canonical fields extracted for querying."""

    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_sourcerecord_company_date", "company_id", "approach_date"),
        # The report facts look up each record's source by its id: from the index alone.
        Index("ix_sourcerecord_id_source", "id", postgresql_include=["source_id"]).ddl_if(
            dialect="postgresql"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id")
    external_id: str = Field(max_length=200)  # the source system's id
    content_hash: str = Field(max_length=64)
    status: str = Field(max_length=20)  # completed | planned | cancelled | deleted
    approach_date: dt.date
    channel: str | None = Field(default=None, max_length=20)
    purpose: str | None = None
    cvr_raw: str | None = Field(default=None, max_length=40)
    cvr: str | None = Field(default=None, max_length=8, index=True)  # only when valid
    p_number: str | None = Field(default=None, max_length=10)
    company_name: str | None = Field(default=None, max_length=500)
    address: str | None = Field(default=None, max_length=500)
    postcode: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=200)
    consultant_name: str | None = Field(default=None, max_length=300)
    consultant_email: str | None = Field(default=None, max_length=300)
    joint_with: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notes: str | None = None  # CPR-redacted; shown only to the writing organisation
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # redacted raw
    modified_at: dt.datetime | None = None
    first_seen_at: dt.datetime = Field(default_factory=utcnow)
    last_seen_at: dt.datetime = Field(default_factory=utcnow)
    # Denormalised from CompanyLink for fast per-company queries; CompanyLink is the truth.
    company_id: int | None = Field(default=None, foreign_key="company.id")


class QuarantinedRecord(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("source_id", "record_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id")
    record_key: str = Field(max_length=200)  # source id, or a content hash when it has none
    external_id: str | None = Field(default=None, max_length=200)
    reason: str
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    first_seen_at: dt.datetime = Field(default_factory=utcnow)
    last_seen_at: dt.datetime = Field(default_factory=utcnow)
    resolved_at: dt.datetime | None = None  # a later delivery corrected it


# --- companies --------------------------------------------------------------------------------


class Company(SQLModel, table=True):
    __table_args__ = (Index("ix_company_namekey_postcode", "name_key", "postcode"),)

    id: int | None = Field(default=None, primary_key=True)
    cvr: str | None = Field(default=None, unique=True, max_length=8)
    name: str = Field(max_length=500)
    name_key: str = Field(max_length=500)
    address: str | None = Field(default=None, max_length=500)
    postcode: str | None = Field(default=None, max_length=20, index=True)
    city: str | None = Field(default=None, max_length=200)
    municipality_code: str | None = Field(default=None, max_length=3, index=True)
    industry_section: str | None = Field(default=None, max_length=1)
    size_band: str | None = Field(default=None, max_length=20)
    merged_into_id: int | None = Field(default=None, foreign_key="company.id")
    created_at: dt.datetime = Field(default_factory=utcnow)

    @property
    def resolved(self) -> bool:
        return self.cvr is not None


class ProductionUnit(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    p_number: str = Field(unique=True, max_length=10)
    company_id: int = Field(foreign_key="company.id", index=True)
    address: str | None = Field(default=None, max_length=500)
    postcode: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=200)


class CompanyLink(SQLModel, table=True):
    """Which company a source record belongs to, by which rule, with what score."""

    source_record_id: int = Field(foreign_key="sourcerecord.id", primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    rule: str = Field(max_length=20)  # cvr | new_cvr | p_number | name_postcode | fuzzy | ...
    score: float = 100.0
    reason: str | None = None
    decided_by: str | None = Field(default=None, max_length=300)  # a person, for manual links
    linked_at: dt.datetime = Field(default_factory=utcnow)


class MatchProposal(SQLModel, table=True):
    """A fuzzy match below certainty, waiting for a coordinator's decision."""

    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)  # the unresolved company
    candidate_company_id: int = Field(foreign_key="company.id")
    score: float
    reason: str
    status: str = Field(default="proposed", max_length=20)  # proposed | accepted | rejected
    created_at: dt.datetime = Field(default_factory=utcnow)


class IdentityDecision(SQLModel, table=True):
    """A person's decision on identity (accept, reject, merge, undo); survives every sync."""

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=20)
    company_id: int = Field(foreign_key="company.id")
    other_company_id: int | None = Field(default=None, foreign_key="company.id")
    record_key: str | None = Field(default=None, max_length=600)
    decided_by: str = Field(max_length=300)
    organisation: str | None = Field(default=None, max_length=300)
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    decided_at: dt.datetime = Field(default_factory=utcnow)
    undone_by_id: int | None = Field(default=None, foreign_key="identitydecision.id")


class ContactPerson(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("company_id", "person_key"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    person_key: str = Field(max_length=300)  # normalised e-mail, else phone, else name
    name: str | None = Field(default=None, max_length=300)
    email: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, max_length=60)
    last_seen_on: dt.date | None = None
    anonymised_at: dt.datetime | None = None


# --- approaches, needs, checks, flags ---------------------------------------------------------


class Approach(SQLModel, table=True):
    __table_args__ = (Index("ix_approach_company_date", "company_id", "date"),)

    id: int | None = Field(default=None, primary_key=True)
    # The smallest source record id of the group: keeps an approach's id stable across rebuilds.
    group_key: int = Field(unique=True)
    company_id: int = Field(foreign_key="company.id")
    date: dt.date = Field(index=True)
    channel: str | None = Field(default=None, max_length=20)
    purpose: str | None = None
    planned: bool = False
    joint: bool = False
    coordinated: bool = True
    organisations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    consultants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ApproachRecord(SQLModel, table=True):
    # The report facts look up an approach's records: from the index alone (SQLite's index
    # holds the record id already, as its rowid).
    __table_args__ = (
        Index(
            "ix_approachrecord_approach_id",
            "approach_id",
            postgresql_include=["source_record_id"],
        ),
    )

    source_record_id: int = Field(foreign_key="sourcerecord.id", primary_key=True)
    approach_id: int = Field(foreign_key="approach.id")


class ApproachOrganisation(SQLModel, table=True):
    approach_id: int = Field(foreign_key="approach.id", primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id", primary_key=True, index=True)


class Need(SQLModel, table=True):
    """A need as a record delivered it, with its place in the shared taxonomy (None while
    unclassified)."""

    # The report facts look up a record's needs' type and code: from the index alone.
    __table_args__ = (
        Index(
            "ix_need_source_record_id",
            "source_record_id",
            postgresql_include=["type", "taxonomy_code"],
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_record_id: int = Field(foreign_key="sourcerecord.id")
    type: str = Field(max_length=20)
    code: str | None = Field(default=None, max_length=100)
    label: str = Field(max_length=500)
    taxonomy_code: str | None = Field(default=None, max_length=100, index=True)
    mapping_method: str | None = Field(default=None, max_length=20)


class NeedMapping(SQLModel, table=True):
    """A mapping a person added for needs that mapped nowhere; applies to stored needs at once
    and to every later sync. ``source_name``/``source_kind`` empty means every source."""

    __table_args__ = (UniqueConstraint("source_name", "code", "label_key", "need_type"),)

    id: int | None = Field(default=None, primary_key=True)
    source_name: str = Field(default="", max_length=100)
    code: str = Field(default="", max_length=100)  # the delivered code, or "" to match by label
    label_key: str = Field(default="", max_length=500)  # normalised delivered label, or ""
    need_type: str = Field(default="", max_length=20)
    taxonomy_code: str = Field(max_length=100)
    created_by: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow)


class PlannedVisit(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    organisation_id: int = Field(foreign_key="organisation.id")
    date: dt.date
    purpose: str | None = None
    created_by: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow)


class PriorContactCheck(SQLModel, table=True):
    __table_args__ = (Index("ix_check_company_at", "company_id", "checked_at"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id")
    organisation_id: int = Field(foreign_key="organisation.id")
    consultant: str | None = Field(default=None, max_length=300)
    checked_at: dt.datetime = Field(default_factory=utcnow)


class Flag(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    raised_on: dt.date
    status: str = Field(default="open", max_length=20, index=True)
    organisations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    approach_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    resolved_on: dt.date | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)


class FlagEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    flag_id: int = Field(foreign_key="flag.id", index=True)
    action: str = Field(max_length=20)  # raised | updated | acknowledge | resolve
    comment: str | None = None
    actor: str | None = Field(default=None, max_length=300)
    organisation: str | None = Field(default=None, max_length=300)
    at: dt.datetime = Field(default_factory=utcnow)


# --- sync runs, jobs, access ------------------------------------------------------------------


class SyncRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    trigger: str = Field(max_length=20)  # cli | api | scheduler | demo
    status: str = Field(default="running", max_length=20)  # running | succeeded | failed
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


class DirtyCompany(SQLModel, table=True):
    """A company a sync touched whose display fields and approaches (``rebuilt`` false) or
    flags do not yet follow its records. Written in the transaction that stores a batch, marked
    rebuilt in the one that rebuilds the company, removed in the one that evaluates its flags:
    the next sync finishes what a crash left undone."""

    company_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    rebuilt: bool = False


class SyncRunSource(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("sync_run_id", "source_id"),)

    id: int | None = Field(default=None, primary_key=True)
    sync_run_id: int = Field(foreign_key="syncrun.id", index=True)
    source_id: int = Field(foreign_key="source.id")
    status: str = Field(default="running", max_length=20)  # running | succeeded | failed
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    removed: int = 0  # cancelled or deleted
    error: str | None = None
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


class JobClaim(SQLModel, table=True):
    """One scheduled occurrence of a job, claimed by one process; doubles as job history."""

    job_id: str = Field(primary_key=True, max_length=100)
    fire_time: dt.datetime = Field(primary_key=True)
    claimed_by: str = Field(max_length=200)
    claimed_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    status: str = Field(default="running", max_length=20)
    error: str | None = None


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    organisation: str = Field(max_length=300)
    role: str = Field(max_length=20)
    label: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class AuditEntry(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, index=True)
    actor: str | None = Field(default=None, max_length=300)
    organisation: str | None = Field(default=None, max_length=300)
    role: str | None = Field(default=None, max_length=20)
    action: str = Field(max_length=50)
    target: str | None = Field(default=None, max_length=300)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- derived for reports ----------------------------------------------------------------------


class ReportNeedFact(SQLModel, table=True):
    """A need noted in an approach that took place, with everything the competence-needs report
    filters and groups by, so that a year of it is read from one table. Derived from approaches,
    needs, source records and companies by ``coordination.reports.facts``; never edited
    otherwise. One row per approach, need type, taxonomy code and organisation type."""

    __table_args__ = (Index("ix_reportneedfact_day", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    # No foreign keys: approach building deletes and re-creates approaches before the facts of
    # their company are refreshed.
    approach_id: int
    company_id: int = Field(index=True)
    day: dt.date
    municipality_code: str | None = Field(default=None, max_length=3)
    industry_section: str | None = Field(default=None, max_length=1)
    organisation_type: str = Field(max_length=20)
    need_type: str = Field(max_length=20)
    taxonomy_code: str | None = Field(default=None, max_length=100)
    # The company's previous day (this one for a second row of the same day) with a row of the
    # same need; of the same organisation type and need; any row; any row of the type. A row
    # starts a company's count in a period when there is none or it lies before the period.
    need_before: dt.date | None = None
    type_need_before: dt.date | None = None
    any_before: dt.date | None = None
    type_before: dt.date | None = None
    # Whether this is the row an approach is counted by: for its need; at all; for its type.
    approach_need_first: bool = False
    approach_first: bool = False
    approach_type_first: bool = False
    # The company's next day with a row of the same key as the ``*_before`` marks (this one for
    # the earlier of two rows of one day): what lets a period that starts mid-month read the
    # monthly sums for its whole months (``ReportNeedMonth``).
    need_after: dt.date | None = None
    type_need_after: dt.date | None = None
    any_after: dt.date | None = None
    type_after: dt.date | None = None


class ReportNeedMonth(SQLModel, table=True):
    """The report facts summed per calendar month, so a report reads a year as a few hundred
    thousand sums instead of millions of rows. One row per level (1 need, 2 company, 3
    organisation type and need, 4 organisation type: the key whose ``*_before`` mark it sums),
    month, municipality, the group columns of that level ("" where the level has none) and the
    month of the mark (``NO_MONTH`` for none): ``facts`` is the number of fact rows, so the
    companies a run of whole months counts are the rows whose mark lies before its first month;
    ``approaches`` the rows an approach is counted by. Facts of companies without a municipality
    belong to no area and are left out. Kept by ``coordination.reports.facts`` only."""

    level: int = Field(primary_key=True)
    month: dt.date = Field(primary_key=True)
    municipality_code: str = Field(primary_key=True, max_length=3)
    industry_section: str = Field(primary_key=True, max_length=1)
    organisation_type: str = Field(primary_key=True, max_length=20)
    need_type: str = Field(primary_key=True, max_length=20)
    taxonomy_code: str = Field(primary_key=True, max_length=100)
    before_month: dt.date = Field(primary_key=True)
    facts: int = 0
    approaches: int = 0


class ReportApproachFact(SQLModel, table=True):
    """An approach that took place as the coordination report counts it: one row per approach
    and organisation that made it (one row with no organisation for an approach without any),
    with the company's municipality. Derived like ``ReportNeedFact``; ``coordinated`` follows
    the approach's as the flag evaluation sets it."""

    __table_args__ = (Index("ix_reportapproachfact_day", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    approach_id: int = Field(index=True)
    company_id: int = Field(index=True)
    day: dt.date
    municipality_code: str | None = Field(default=None, max_length=3)
    organisation_id: int | None = None
    coordinated: bool = True
    # Whether this is the row the approach is counted by; the company's previous day with a
    # row of this organisation (this one for a second row of the same day), so a row starts
    # the count of the company's organisations in a period when it lies before the period.
    approach_first: bool = False
    organisation_before: dt.date | None = None


class ReportFactState(SQLModel, table=True):
    """One row once the report facts have been built for every company; from then on they are
    kept current per company and the reports read them."""

    id: int = Field(default=1, primary_key=True)
    built_at: dt.datetime = Field(default_factory=utcnow)


class ReportFactChange(SQLModel, table=True):
    """One row per transaction that changed the report facts, written in that transaction: the
    number of rows and the newest id are the facts' version, which keys the cached report
    results. Appending takes no lock that another writer waits for, and a change that commits
    after a newer id still changes the number."""

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow)


class ReportCache(SQLModel, table=True):
    """A report result computed from the report facts of one ``version``, shared by every worker
    and machine: ``key`` hashes the report kind and its normalised parameters. A row of another
    version than the facts' current one is stale and is never read. Kept by
    ``coordination.reports.cache`` only."""

    key: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=40)
    version: str = Field(max_length=32)
    result: str  # JSON
    created_at: dt.datetime = Field(default_factory=utcnow)
