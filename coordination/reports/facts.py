"""Report facts: the needs noted in approaches, flattened into one table for the reports.

Counting a year of needs straight from approaches joins five tables of millions of rows before
anything is counted. ``reportneedfact`` holds the result of that join (one row per approach that
took place, need type, taxonomy code and organisation type that noted it, with the company's
municipality and industry section), so a report reads one table.

``reportneedmonth`` sums the facts per calendar month (:func:`month_sums`), so that a report
reads whole months as sums and only the days of partial months at the ends of a period as rows.

The facts are derived data: :func:`refresh_report_facts` rebuilds the rows of the companies it
is given from the approaches, needs and companies as they are stored. Whatever changes a
company's approaches, the needs of its records or its municipality or industry must call it for
that company afterwards, in the same transaction. A caller that knows the earliest day from
which a company's approaches or their needs changed (the sync: the first day of the company's
rebuild window) passes it as ``since``, and only the company's facts from that day on are
derived again (a night's changes lie in the last days of histories of years); the others are
derived whole, and so is a company whose municipality or industry changed (it is not dated:
the refresh finds it in the stored facts). Until the facts have been built once
(``reportfactstate`` has its row) the reports count from the approaches directly
(:func:`expressed_needs`), so a database whose facts were never built still reports correctly.
Every change of the facts (also the flag evaluation's of ``coordinated``) is noted in
``reportfactchange`` (:func:`mark_facts_changed`): the version that keys cached report results.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping

from sqlalchemy import (
    Column,
    Date,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    false,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from coordination.db import int_list, local_settings
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Company,
    Need,
    Organisation,
    ReportApproachFact,
    ReportFactChange,
    ReportFactState,
    ReportNeedFact,
    ReportNeedMonth,
    Source,
    SourceRecord,
    utcnow,
)
from coordination.planner_stats import analyse_tables

# Replaced whole by the first build (and by a build of every company).
_FACT_TABLES = (
    ReportNeedFact.__table__.name,
    ReportNeedMonth.__table__.name,
    ReportApproachFact.__table__.name,
)
_CHUNK = 5_000  # company ids per statement: well below every driver's parameter limit
_COLUMNS = (
    "approach_id",
    "company_id",
    "day",
    "municipality_code",
    "industry_section",
    "organisation_type",
    "need_type",
    "taxonomy_code",
)


def refresh_report_facts(
    session: Session,
    company_ids: Iterable[int] | None = None,
    since: Mapping[int, dt.date] | None = None,
) -> None:
    """Rebuild the report facts of ``company_ids`` (every company when None) from the stored
    approaches. The first call on a database builds the facts of every company, whatever it is
    given: from then on the reports read them.

    ``since`` may give, for some of the companies, the earliest day from which anything of
    theirs that the facts derive from may have changed since their facts were last refreshed
    (an approach's old and new day, those of approaches deleted or whose needs changed): only
    their facts from that day on are derived again, with the stored row before it of each key
    of the marks (its ``*_after`` mark follows). A company's municipality or industry is not
    dated: a company whose stored facts before its day show others than its own is derived
    whole, as are the companies ``since`` leaves out."""
    if company_ids is None or not facts_built(session):
        _rebuild_all(session)
        return
    ids = sorted(set(company_ids))
    since = since or {}
    session.flush()  # the statements below bypass the session: it must not hold back changes
    with local_settings(session.connection(), _REFRESH_SETTINGS):
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            _refresh_chunk(session, {cid: since.get(cid, _WHOLE) for cid in part})
    if ids:
        mark_facts_changed(session)


def facts_built(session: Session) -> bool:
    return session.get(ReportFactState, 1) is not None


def facts_version(session: Session) -> str | None:
    """The version of the report facts as this statement sees them (the changes committed so
    far); None until they are built (the reports then count from the approaches, which change
    without a version)."""
    change = ReportFactChange.__table__.c
    query = select(
        select(ReportFactState.id).where(ReportFactState.id == 1).scalar_subquery(),
        select(func.count()).select_from(ReportFactChange).scalar_subquery(),
        select(func.max(change.id)).scalar_subquery(),
    )
    built, changes, newest = session.execute(query).one()
    return None if built is None else f"{changes}.{newest}"


def mark_facts_changed(session) -> None:
    """Note a change of the facts, in the transaction that changes them: once it commits, every
    result cached from the facts before goes stale. ``session`` may be a Core ``Connection``."""
    session.execute(insert(ReportFactChange).values(at=utcnow()))


def forget_fact_changes(session: Session) -> None:
    """Keep only the newest change: the log need not grow (the version changes once more)."""
    newest = select(func.max(ReportFactChange.id)).scalar_subquery()
    session.execute(delete(ReportFactChange).where(ReportFactChange.id < newest))


def expressed_needs(session: Session, organisation_type: bool = True):
    """What the competence-needs report counts, with the columns of ``reportneedfact``: the
    facts once built, else the same rows computed from the approaches (without the organisation
    type, and its joins, unless ``organisation_type``; with repeats, which the report's
    COUNT(DISTINCT) absorbs)."""
    if facts_built(session):
        return ReportNeedFact.__table__
    return live_needs(organisation_type, distinct=False).subquery("live_needs")


def live_needs(organisation_type: bool = True, distinct: bool = True) -> Select:
    """The facts as the stored approaches, needs and companies give them."""
    noted_by = Organisation.type if organisation_type else literal("", String)
    query = (
        select(
            Approach.id.label("approach_id"),
            Approach.company_id.label("company_id"),
            Approach.date.label("day"),
            Company.municipality_code.label("municipality_code"),
            Company.industry_section.label("industry_section"),
            noted_by.label("organisation_type"),
            Need.type.label("need_type"),
            Need.taxonomy_code.label("taxonomy_code"),
        )
        .join(Company, Company.id == Approach.company_id)
        .join(ApproachRecord, ApproachRecord.approach_id == Approach.id)
        .join(Need, Need.source_record_id == ApproachRecord.source_record_id)
        .where(Approach.planned == false())
    )
    if organisation_type:
        query = (
            query.join(SourceRecord, SourceRecord.id == Need.source_record_id)
            .join(Source, Source.id == SourceRecord.source_id)
            .join(Organisation, Organisation.id == Source.organisation_id)
        )
    return query.distinct() if distinct else query


def _rebuild_all(session: Session) -> None:
    # Stored in the order reports read them, so that what a report reads lies together on disk
    # (refreshes append the few rows they change): the need facts by day (a report reads the
    # days of its partial months), the sums by level and month, the approach facts by company
    # (the coordination report groups a period's facts per company).
    session.execute(delete(ReportNeedMonth))
    session.execute(delete(ReportNeedFact))
    session.execute(_insert(live_needs(), by_day=True))
    sums = month_sums()
    sums = sums.order_by(*(sums.selected_columns[key] for key in _MONTH_KEYS[:2]))
    session.execute(insert(ReportNeedMonth).from_select(list(sums.selected_columns.keys()), sums))
    session.execute(delete(ReportApproachFact))
    session.execute(_insert_approaches(live_approaches(), by_company=True))
    # The tables were replaced whole: the refreshes and reports that follow must not be planned
    # for their old size (an empty table's hash join scans all the facts per statement), and
    # autovacuum's analysis comes a minute or more later.
    analyse_tables(session.connection(), _FACT_TABLES)
    state = session.get(ReportFactState, 1)
    if state is None:
        session.add(ReportFactState(id=1, built_at=utcnow()))
    else:
        state.built_at = utcnow()
    mark_facts_changed(session)
    session.flush()


def _insert(rows: Select, by_day: bool = False):
    marked = derived_facts(rows)
    if by_day:
        marked = marked.order_by(marked.selected_columns.day)
    return insert(ReportNeedFact).from_select([c.name for c in marked.selected_columns], marked)


def derived_facts(rows: Select | None = None) -> Select:
    """The facts of ``rows`` (default: every company's :func:`live_needs`) with the marks that let
    a report count distinct companies and approaches in any period by plain filtered counts. Each
    mark is computed within one company (or one approach), so refreshing a company's rows keeps
    every mark right."""
    needs = (live_needs() if rows is None else rows).subquery("needs")
    c = needs.c
    before, after, first = _need_marks(c)
    return select(
        *(c[name] for name in _COLUMNS),
        *(before(key).label(f"{key}_before") for key in _KEYS),
        *(first(key).label(name) for key, name in _FIRSTS.items()),
        *(after(key).label(f"{key}_after") for key in _KEYS),
    )


_KEYS = ("need", "type_need", "any", "type")  # of the ``*_before`` and ``*_after`` marks
_FIRSTS = {"need": "approach_need_first", "any": "approach_first", "type": "approach_type_first"}


def _need_marks(c):
    """The window functions of the marks over the rows ``c``: ``before``, ``after`` and
    ``first``, each of a key of ``_KEYS``."""
    order = (c.day, c.approach_id, c.organisation_type, c.need_type, c.taxonomy_code)
    # A window per key of the marks, each over a company's rows of the key in ``order``: the
    # database sorts the rows once per distinct window, so the marks share these four. An
    # approach's rows of a key lie next to each other in ``order`` (one day, one approach id):
    # the row an approach is counted by is the one whose previous row of the key is another
    # approach's (the first of the approach's rows in ``order``).
    keys = {
        "need": (c.company_id, c.need_type, c.taxonomy_code),
        "type_need": (c.company_id, c.organisation_type, c.need_type, c.taxonomy_code),
        "any": (c.company_id,),
        "type": (c.company_id, c.organisation_type),
    }

    def before(key):
        return func.lag(c.day, type_=Date).over(partition_by=keys[key], order_by=order)

    def after(key):
        return func.lead(c.day, type_=Date).over(partition_by=keys[key], order_by=order)

    def first(key):
        previous = func.lag(c.approach_id, 1, 0, type_=Integer)  # 0: no approach has that id
        return previous.over(partition_by=keys[key], order_by=order) != c.approach_id

    return before, after, first


# --- approach facts ----------------------------------------------------------------------------


def live_approaches() -> Select:
    """The approach facts as the stored approaches and companies give them, without marks."""
    return (
        select(
            Approach.id.label("approach_id"),
            Approach.company_id.label("company_id"),
            Approach.date.label("day"),
            Company.municipality_code.label("municipality_code"),
            ApproachOrganisation.organisation_id.label("organisation_id"),
            Approach.coordinated.label("coordinated"),
        )
        .join(Company, Company.id == Approach.company_id)
        .outerjoin(ApproachOrganisation, ApproachOrganisation.approach_id == Approach.id)
        .where(Approach.planned == false())
    )


def derived_approach_facts(rows: Select | None = None) -> Select:
    """The approach facts of ``rows`` (default: every company's) with their marks, each computed
    within one company or approach."""
    approaches = (live_approaches() if rows is None else rows).subquery("approaches")
    c = approaches.c
    approach_first, organisation_before = _approach_marks(c)
    return select(
        *c,
        approach_first.label("approach_first"),
        organisation_before.label("organisation_before"),
    )


def _approach_marks(c):
    # Both marks over a company's rows, so that the database sorts all rows once and then each
    # company's: an approach's rows lie together in order of day and approach, the one it is
    # counted by (its first organisation) first.
    previous = func.lag(c.approach_id, 1, 0, type_=Integer)  # 0: no approach has that id
    in_company = previous.over(
        partition_by=c.company_id, order_by=(c.day, c.approach_id, c.organisation_id)
    )
    organisation_before = func.lag(c.day, type_=Date).over(
        partition_by=(c.company_id, c.organisation_id), order_by=(c.day, c.approach_id)
    )
    return in_company != c.approach_id, organisation_before


def _insert_approaches(rows: Select, by_company: bool = False):
    marked = derived_approach_facts(rows)
    if by_company:
        marked = marked.order_by(marked.selected_columns.company_id, marked.selected_columns.day)
    columns = [c.name for c in marked.selected_columns]
    return insert(ReportApproachFact).from_select(columns, marked)


# --- refreshing: derive, compare with the stored rows, write only the rows that differ --------
#
# Most facts of a refreshed company stay as they were (a night adds a few approaches to long
# histories): deleting and inserting them all, and summing them twice for the monthly sums, cost
# several times the derivation itself.

_NEED_FACT = ReportNeedFact.__table__
_APPROACH_FACT = ReportApproachFact.__table__


def _changes_table(table: Table) -> Table:
    """A temporary table with the columns of ``table`` for the rows a refresh changes: a stored
    row not derived any more (with its ``id``) or a derived row not stored yet (``id`` NULL)."""
    columns = (Column(c.name, c.type, nullable=c.nullable) for c in table.c if c.name != "id")
    return Table(
        f"changed_{table.name}",
        MetaData(),
        Column("id", Integer, nullable=True),
        *columns,
        prefixes=["TEMPORARY"],
    )


def _changes(stored: Table, derived: Select) -> Select:
    """The rows of :func:`_changes_table`: the rows of ``stored`` (a chunk's stored rows that
    the refresh may change, with their ``id``) and those ``derived`` for them, grouped by every
    column, each group with one row only. (A company's derived rows are distinct, and so are
    its stored ones, derived before; grouping takes NULLs as equal, as comparing would not.)
    No join: the comparison needs no planner statistics of the derived rows."""
    names = list(derived.selected_columns.keys())
    kept = select(stored.c.id, *(stored.c[name] for name in names))
    fresh = derived.subquery("derived")
    fresh = select(cast(null(), Integer).label("id"), *(fresh.c[name] for name in names))
    both = union_all(kept, fresh).subquery("both_sides")
    groups = [both.c[name] for name in names]
    return (
        select(func.max(both.c.id).label("id"), *groups).group_by(*groups).having(func.count() == 1)
    )


def _temporary(name: str, *columns: Column) -> Table:
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def _copy_of(table: Table, name: str) -> Table:
    return _temporary(name, *(Column(c.name, c.type) for c in table.c))


_WHOLE = dt.date(1, 1, 1)  # the ``since`` of a company derived whole: before every day
# The companies of a chunk, each with the day it is derived from.
_SINCE = _temporary(
    "facts_since",
    Column("company_id", Integer, primary_key=True),
    Column("since", Date, nullable=False),
)
# The chunk's stored need facts that a refresh can change: those from ``since`` on and, before
# it, each key's last row (its ``*_after`` mark lies on or after ``since``, or it has none).
_STORED_NEEDS = _copy_of(_NEED_FACT, "stored_needs")
# The chunk's stored approach facts from ``since`` on, and before it the last day of each
# organisation's rows (the ``organisation_before`` of its first row from ``since`` on).
_STORED_APPROACHES = _copy_of(_APPROACH_FACT, "stored_approaches")
_APPROACH_BOUNDS = _temporary(
    "approach_bounds",
    Column("company_id", Integer),
    Column("organisation_id", Integer),
    Column("municipality_code", String),
    Column("day", Date),
)
_S = _SINCE.c
# The approaches of companies of the chunk (``ids``) from their ``since`` on, found first on
# their own: in one statement with the joins of the facts PostgreSQL looks the approaches up by
# company alone and filters the whole histories by day, and joined with ``facts_since`` (some
# thousand rows) it may hash the whole approach table. PostgreSQL: a lateral look-up by company
# and day per company; SQLite looks up the index on both by itself.
_RECENT = _temporary("facts_recent", Column("id", Integer, primary_key=True))
_OF_SINCE = (Approach.company_id == _S.company_id, Approach.date >= _S.since)
_RECENT_LATERAL = select(Approach.id).where(*_OF_SINCE).lateral("recent")
_FILL_RECENT = {
    "postgresql": insert(_RECENT).from_select(
        ["id"],
        select(_RECENT_LATERAL.c.id)
        .select_from(_SINCE.join(_RECENT_LATERAL, true()))
        .where(_S.company_id.in_(int_list())),
    ),
    "sqlite": insert(_RECENT).from_select(
        ["id"],
        select(Approach.id)
        .select_from(_SINCE.join(Approach, and_(*_OF_SINCE)))
        .where(_S.company_id.in_(int_list())),
    ),
}
_FORGET_RECENT = delete(_RECENT).where(
    _RECENT.c.id.in_(select(Approach.id).where(Approach.company_id.in_(int_list())))
)


def _stored_of_chunk(table: Table) -> Select:
    return (
        select(*table.c)
        .select_from(table.join(_SINCE, _S.company_id == table.c.company_id))
        .where(table.c.company_id.in_(int_list()))
    )


_N = _NEED_FACT.c
_FILL = (
    insert(_STORED_NEEDS).from_select(
        [c.name for c in _N],
        _stored_of_chunk(_NEED_FACT).where(
            or_(
                _N.day >= _S.since,
                *(
                    or_(_N[f"{key}_after"].is_(None), _N[f"{key}_after"] >= _S.since)
                    for key in _KEYS
                ),
            )
        ),
    ),
    insert(_STORED_APPROACHES).from_select(
        [c.name for c in _APPROACH_FACT.c],
        _stored_of_chunk(_APPROACH_FACT).where(_APPROACH_FACT.c.day >= _S.since),
    ),
    insert(_APPROACH_BOUNDS).from_select(
        ["company_id", "organisation_id", "municipality_code", "day"],
        select(
            _APPROACH_FACT.c.company_id,
            _APPROACH_FACT.c.organisation_id,
            _APPROACH_FACT.c.municipality_code,
            func.max(_APPROACH_FACT.c.day),
        )
        .select_from(_APPROACH_FACT.join(_SINCE, _S.company_id == _APPROACH_FACT.c.company_id))
        .where(_APPROACH_FACT.c.company_id.in_(int_list()), _APPROACH_FACT.c.day < _S.since)
        .group_by(
            _APPROACH_FACT.c.company_id,
            _APPROACH_FACT.c.organisation_id,
            _APPROACH_FACT.c.municipality_code,
        ),
    ),
)
# The companies whose stored facts before their ``since`` show another municipality or industry
# than their own (changed since): they are derived whole.
_COMPANY = Company.__table__
_MOVED = union(
    select(_STORED_NEEDS.c.company_id)
    .join(_COMPANY, _COMPANY.c.id == _STORED_NEEDS.c.company_id)
    .where(
        _COMPANY.c.id.in_(int_list()),
        _STORED_NEEDS.c.municipality_code.is_distinct_from(_COMPANY.c.municipality_code)
        | _STORED_NEEDS.c.industry_section.is_distinct_from(_COMPANY.c.industry_section),
    ),
    select(_APPROACH_BOUNDS.c.company_id)
    .join(_COMPANY, _COMPANY.c.id == _APPROACH_BOUNDS.c.company_id)
    .where(
        _COMPANY.c.id.in_(int_list()),
        _APPROACH_BOUNDS.c.municipality_code.is_distinct_from(_COMPANY.c.municipality_code),
    ),
)
_DERIVE_WHOLE = update(_SINCE).where(_S.company_id.in_(int_list())).values(since=_WHOLE)


def _needs_since() -> Select:
    """The need facts of the chunk from each company's ``since`` on, derived, and the stored
    rows before it of :data:`_STORED_NEEDS` with their ``*_after`` marks following."""
    live = live_needs().join(_RECENT, _RECENT.c.id == Approach.id).subquery("live")
    marks = [f"{key}_before" for key in _KEYS] + list(_FIRSTS.values())
    marks += [f"{key}_after" for key in _KEYS]
    stored = _STORED_NEEDS.c
    kept = (
        select(
            *(stored[name] for name in _COLUMNS),
            stored.id,
            *(stored[name] for name in marks),
            _S.since,
        )
        .select_from(_STORED_NEEDS.join(_SINCE, _S.company_id == stored.company_id))
        .where(stored.day < _S.since)
    )
    fresh = select(
        *(live.c[name] for name in _COLUMNS),
        cast(null(), Integer).label("id"),
        *(cast(null(), _NEED_FACT.c[name].type).label(name) for name in marks),
        cast(null(), Date).label("since"),
    )
    rows = union_all(kept, fresh).subquery("rows")
    c = rows.c
    before, after, first = _need_marks(c)
    # A stored row keeps its marks but the ``*_after`` of the keys it is the last row of before
    # ``since``: the next row of its key (in ``rows``) is the first one from ``since`` on. The
    # first derived row of a key has that row before it, or none.
    is_kept = c.id.is_not(None)
    return select(
        *(c[name] for name in _COLUMNS),
        *(
            case((is_kept, c[f"{key}_before"]), else_=before(key)).label(f"{key}_before")
            for key in _KEYS
        ),
        *(case((is_kept, c[name]), else_=first(key)).label(name) for key, name in _FIRSTS.items()),
        *(
            case(
                (is_kept & (c[f"{key}_after"] < c.since), c[f"{key}_after"]), else_=after(key)
            ).label(f"{key}_after")
            for key in _KEYS
        ),
    )


def _approaches_since() -> Select:
    """The approach facts of the chunk from each company's ``since`` on, derived after the last
    day of each organisation's rows before it (:data:`_APPROACH_BOUNDS`)."""
    live = live_approaches().join(_RECENT, _RECENT.c.id == Approach.id).subquery("live")
    bounds = _APPROACH_BOUNDS.c
    fresh = select(*live.c, true().label("fresh"))
    kept = select(
        literal(0, Integer).label("approach_id"),  # 0: no approach has that id
        bounds.company_id,
        bounds.day,
        bounds.municipality_code,
        bounds.organisation_id,
        literal(True).label("coordinated"),
        false().label("fresh"),
    )
    rows = union_all(fresh, kept).subquery("rows")
    c = rows.c
    approach_first, organisation_before = _approach_marks(c)
    names = list(live.c.keys())
    marked = select(
        *(c[name] for name in names),
        approach_first.label("approach_first"),
        organisation_before.label("organisation_before"),
        c.fresh,
    ).subquery("marked")
    return select(
        *(marked.c[name] for name in names + ["approach_first", "organisation_before"])
    ).where(marked.c.fresh == true())


_CHANGED_NEEDS = _changes_table(_NEED_FACT)
_CHANGED_APPROACHES = _changes_table(_APPROACH_FACT)
_NEED_CHANGES = _changes(_STORED_NEEDS, _needs_since())
_APPROACH_CHANGES = _changes(_STORED_APPROACHES, _approaches_since())


# PostgreSQL settings for a refresh: its statements look a chunk's rows up by index and sort
# and group them, which JIT-compiled expressions do not speed up (PostgreSQL compiles them above
# a plan cost these statements reach, about 0.1 s a statement at 2,000,000 approaches); and the
# default work_mem (4 MB) sorts and groups a chunk's facts on disk.
_REFRESH_SETTINGS = {"jit": "off", "work_mem": "64MB"}


def _refresh_chunk(session: Session, since: dict[int, dt.date]) -> None:
    """Refresh the facts of the companies of ``since`` (company id -> the day to derive from)."""
    connection = session.connection()
    chunk = {"ids": sorted(since)}
    with _temporary_tables(
        connection, _SINCE, _RECENT, _STORED_NEEDS, _STORED_APPROACHES, _APPROACH_BOUNDS
    ):
        days = [{"company_id": cid, "since": day} for cid, day in since.items()]
        connection.execute(insert(_SINCE), days)
        analyse_tables(connection, [_SINCE.name])
        _fill(connection, chunk)
        moved = [cid for cid in connection.execute(_MOVED, chunk).scalars() if since[cid] != _WHOLE]
        if moved:  # a few a night: derived whole instead
            part = {"ids": sorted(moved)}
            connection.execute(_DERIVE_WHOLE, part)
            connection.execute(_FORGET_RECENT, part)
            for table in (_STORED_NEEDS, _STORED_APPROACHES, _APPROACH_BOUNDS):
                connection.execute(delete(table).where(table.c.company_id.in_(int_list())), part)
            _fill(connection, part)
        analyse_tables(connection, [_RECENT.name])
        with _changed_rows(session, _CHANGED_NEEDS, _NEED_CHANGES, chunk):
            old = _sums_of(session, _facts(_CHANGED_NEEDS, stored=True))
            new = _sums_of(session, _facts(_CHANGED_NEEDS, stored=False))
            _replace(session, _NEED_FACT, _CHANGED_NEEDS)
            _add_month_sums(session, old, new)
        with _changed_rows(session, _CHANGED_APPROACHES, _APPROACH_CHANGES, chunk):
            _replace(session, _APPROACH_FACT, _CHANGED_APPROACHES)


def _fill(connection, companies: dict) -> None:
    """Fill the temporary tables for the ``companies["ids"]`` of the chunk."""
    fill_recent = _FILL_RECENT.get(connection.dialect.name, _FILL_RECENT["sqlite"])
    for statement in (fill_recent, *_FILL):
        connection.execute(statement, companies)


@contextlib.contextmanager
def _temporary_tables(connection, *tables: Table) -> Iterator[None]:
    for table in tables:
        table.drop(connection, checkfirst=True)  # left behind by a failed refresh on SQLite
        table.create(connection)
    yield
    for table in tables:
        table.drop(connection)


@contextlib.contextmanager
def _changed_rows(session: Session, changed: Table, rows: Select, chunk: dict) -> Iterator[None]:
    """``changed`` holding ``rows`` of the companies ``chunk["ids"]`` while the block runs."""
    connection = session.connection()
    with _temporary_tables(connection, changed):
        names = list(rows.selected_columns.keys())
        connection.execute(insert(changed).from_select(names, rows), chunk)
        yield


def _facts(changed: Table, stored: bool) -> Select:
    """The rows of ``changed`` that are stored (to be deleted) or derived (to be added)."""
    columns = [c for c in changed.c if c.name != "id"]
    return select(*columns).where(changed.c.id.is_not(None) if stored else changed.c.id.is_(None))


def _replace(session: Session, table: Table, changed: Table) -> None:
    """Delete the stored rows of ``changed`` from ``table`` and add its derived ones."""
    gone = list(session.execute(select(changed.c.id).where(changed.c.id.is_not(None))).scalars())
    if gone:
        session.execute(delete(table).where(table.c.id.in_(int_list())), {"ids": gone})
    added = _facts(changed, stored=False)
    session.execute(insert(table).from_select(list(added.selected_columns.keys()), added))


# --- monthly sums -------------------------------------------------------------------------------

NO_MONTH = dt.date(1, 1, 1)  # ``before_month`` of facts with no earlier row of their key
UNCLASSIFIED = "unclassified"  # the need code the reports give needs that map nowhere
NEED, COMPANY, TYPE_NEED, TYPE = 1, 2, 3, 4  # the levels of ``reportneedmonth``


def level_columns(facts) -> dict[int, tuple]:
    """For each level: its group columns (section, organisation type, need type, need code; ""
    where the level has none), its ``*_before`` and ``*_after`` marks and the condition a row
    counts an approach by (None: every row)."""
    f = facts.c
    code = func.coalesce(f.taxonomy_code, UNCLASSIFIED)
    section = func.coalesce(f.industry_section, "")
    none = literal("", String)
    return {
        NEED: (
            (section, none, f.need_type, code),
            f.need_before,
            f.need_after,
            f.approach_need_first,
        ),
        COMPANY: ((section, none, none, none), f.any_before, f.any_after, f.approach_first),
        TYPE_NEED: (
            (none, f.organisation_type, f.need_type, code),
            f.type_need_before,
            f.type_need_after,
            None,
        ),
        TYPE: (
            (none, f.organisation_type, none, none),
            f.type_before,
            f.type_after,
            f.approach_type_first,
        ),
    }


def month_sums(rows: Select | None = None) -> Select:
    """The rows of ``reportneedmonth`` that the facts ``rows`` (a select with the columns of
    ``reportneedfact``; default: all stored facts) add up to."""
    facts = ReportNeedFact.__table__
    if rows is not None:  # read the rows once for the four levels
        facts = rows.cte("facts_of")
    month = MonthOf(facts.c.day)
    parts = []
    for level, (groups, before, _, counts_approach) in level_columns(facts).items():
        before_month = func.coalesce(MonthOf(before), literal(NO_MONTH, Date))
        keys = (month, facts.c.municipality_code, *groups, before_month)
        approaches = func.count()
        if counts_approach is not None:
            approaches = approaches.filter(counts_approach == true())
        parts.append(
            select(
                literal(level, Integer).label("level"),
                *(key.label(name) for key, name in zip(keys, _MONTH_KEYS[1:], strict=True)),
                func.count().label("facts"),
                approaches.label("approaches"),
            )
            .where(facts.c.municipality_code.is_not(None))
            .group_by(*keys)
        )
    return union_all(*parts)


_MONTH_KEYS = (
    "level",
    "month",
    "municipality_code",
    "industry_section",
    "organisation_type",
    "need_type",
    "taxonomy_code",
    "before_month",
)


def whole_months(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date] | None:
    """The first and last day of the calendar months that lie wholly within ``first`` to
    ``last``; None when no month does."""
    day = dt.timedelta(days=1)
    year, month = divmod(first.year * 12 + first.month, 12)  # the next month, counted from 0
    whole_first = first if first.day == 1 else dt.date(year, month + 1, 1)
    whole_last = last if (last + day).day == 1 else last.replace(day=1) - day
    return (whole_first, whole_last) if whole_first <= whole_last else None


def spans_by_days(spans: dict[str, tuple[dt.date, dt.date]]) -> dict[tuple, list[str]]:
    """The municipalities of ``spans`` (code -> first and last day) by their span."""
    found: dict[tuple, list[str]] = {}
    for code, span in sorted(spans.items()):
        found.setdefault(span, []).append(code)
    return found


def _sums_of(session: Session, rows: Select, params: dict | None = None) -> dict:
    """The monthly sums of the facts ``rows``: month keys -> (facts, approaches)."""
    return {tuple(keys): (n, a) for *keys, n, a in session.execute(month_sums(rows), params)}


def _add_month_sums(session: Session, old: dict, new: dict) -> None:
    """Add to the monthly sums what changed from the sums ``old`` to ``new`` (of the same
    companies): the keys whose sums differ, usually few of them."""
    changes = [
        {
            **dict(zip(_MONTH_KEYS, key, strict=True)),
            "facts": new.get(key, (0, 0))[0] - old.get(key, (0, 0))[0],
            "approaches": new.get(key, (0, 0))[1] - old.get(key, (0, 0))[1],
        }
        for key in old.keys() | new.keys()
        if old.get(key) != new.get(key)
    ]
    if not changes:
        return
    table = ReportNeedMonth.__table__
    emptied = [change for change in changes if change["facts"] < 0]
    if session.get_bind().dialect.name == "postgresql":
        # One statement for all the changes, their columns as arrays: a night changes thousands
        # of keys, and a statement per key (executemany) is bound and run apart (7,106 keys:
        # 0.22 -> 0.15 s, and about 0.1 s less of the client's CPU). A multi-row VALUES
        # statement was slower: compiling it cost the client more than it saved. The keys are
        # distinct: no row is changed twice by the statement.
        rows = _unnested(changes, _MONTH_KEYS + ("facts", "approaches"))
        statement = postgresql.insert(table).from_select(list(rows.c.keys()), select(*rows.c))
        session.execute(_adding(statement), _arrays(changes, rows))
        if emptied:  # a key whose facts are all gone leaves no row behind
            keys = _unnested(emptied, _MONTH_KEYS)
            key_of = tuple_(*(table.c[name] for name in _MONTH_KEYS))
            gone = delete(table).where(key_of.in_(select(*keys.c)), table.c.facts == 0)
            session.execute(gone, _arrays(emptied, keys))
        return
    session.execute(_adding(sqlite.insert(table)), changes)
    if emptied:
        keys = [table.c[name] == bindparam(f"k_{name}") for name in _MONTH_KEYS]
        session.execute(
            delete(table).where(*keys, table.c.facts == 0),
            [{f"k_{name}": change[name] for name in _MONTH_KEYS} for change in emptied],
        )


def _adding(statement):
    """``statement`` (an insert of ``reportneedmonth`` rows) adding to the sums of keys that
    have a row already."""
    table = ReportNeedMonth.__table__
    return statement.on_conflict_do_update(
        index_elements=list(_MONTH_KEYS),
        set_={
            "facts": table.c.facts + statement.excluded.facts,
            "approaches": table.c.approaches + statement.excluded.approaches,
        },
    )


def _unnested(rows: list[dict], names: tuple[str, ...]):
    """The columns ``names`` of ``rows`` as a table of arrays unnested (PostgreSQL), each array
    bound as the parameter ``a_<name>`` (see :func:`_arrays`)."""
    types = {name: ReportNeedMonth.__table__.c[name].type for name in names}
    arrays = (bindparam(f"a_{name}", type_=postgresql.ARRAY(types[name])) for name in names)
    columns = (column(name, types[name]) for name in names)
    return func.unnest(*arrays).table_valued(*columns).render_derived()


def _arrays(rows: list[dict], unnested) -> dict:
    return {f"a_{c.name}": [row[c.name] for row in rows] for c in unnested.c}


class MonthOf(FunctionElement):
    """The first day of the month of a date."""

    type = Date()
    inherit_cache = True
    name = "month_of"


@compiles(MonthOf)
def _month_of_postgresql(element, compiler, **kw):
    (day,) = element.clauses
    return compiler.process(cast(func.date_trunc(literal_column("'month'"), day), Date), **kw)


@compiles(MonthOf, "sqlite")
def _month_of_sqlite(element, compiler, **kw):
    (day,) = element.clauses
    return compiler.process(func.date(day, "start of month"), **kw)
