"""Many new rows into one table: ``COPY`` on PostgreSQL, an ``executemany`` INSERT elsewhere.

A multi-row INSERT of thousands of rows costs psycopg more than the database: it parses the
statement for its tens of thousands of placeholders before sending it. ``COPY ... FROM STDIN``
sends the rows as data, in the caller's transaction. The values go in as the INSERT would store
them: JSON columns as ``json.dumps`` text (SQLAlchemy's default serialiser), aware datetimes with
their offset (the columns are ``timestamp with time zone``), everything else as psycopg dumps it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Date, Table
from sqlalchemy.dialects.sqlite import DATE, DATETIME
from sqlmodel.sql.sqltypes import UTCDateTime


def insert_rows(
    connection: Connection, table: Table, rows: Sequence[dict], returning_ids: bool = False
) -> list[int]:
    """Insert ``rows`` (dicts with the same keys, naming columns of ``table``); the new ids in
    the order of ``rows`` when ``returning_ids``."""
    if not rows:
        return []
    names = tuple(rows[0])
    as_json = [isinstance(table.c[name].type, JSON) for name in names]
    values = [
        tuple(
            _json(row[name]) if dumped else row[name]
            for name, dumped in zip(names, as_json, strict=True)
        )
        for row in rows
    ]
    return bulk_insert(connection, table, names, values, returning_ids)


def bulk_insert(
    connection: Connection,
    table,
    names: Sequence[str],
    values: list[tuple],
    returning_ids: bool = False,
) -> list[int]:
    """Insert ``values`` (tuples in the order of ``names``) into ``table`` in the
    connection's transaction, without SQLAlchemy's per-row statement machinery; the new
    ids in the order of ``values`` when ``returning_ids``. JSON columns take JSON text; other
    values go through their column type's bind processing as with SQLAlchemy.

    PostgreSQL: ``COPY`` (ids drawn from the table's sequence first). SQLite: the driver's
    ``executemany`` of one prepared statement (one ``INSERT ... RETURNING`` per row for ids)."""
    if not values:
        return []
    dialect = connection.dialect
    raw = connection.connection.driver_connection
    plan = _insert_plan(table, tuple(names), dialect)
    if plan.processors:
        values = [_processed(row, plan.processors) for row in values]
    if dialect.name == "postgresql":
        ids: list[int] = []
        with raw.cursor() as cursor:
            if returning_ids:
                cursor.execute(plan.draw_ids, (table.name, len(values)))
                ids = sorted(row[0] for row in cursor.fetchall())
                values = [(rid, *row) for rid, row in zip(ids, values, strict=True)]
            with cursor.copy(plan.copy_ids if returning_ids else plan.copy) as copy:
                for row in values:
                    copy.write_row(row)
        return ids
    cursor = raw.cursor()
    try:
        if returning_ids:
            return [cursor.execute(plan.insert_returning, row).fetchone()[0] for row in values]
        cursor.executemany(plan.insert, values)
        return []
    finally:
        cursor.close()


def _processed(row: tuple, processors: tuple[tuple[int, Any], ...]) -> list:
    values = list(row)
    for index, process in processors:
        if values[index] is not None:
            values[index] = process(values[index])
    return values


@dataclasses.dataclass(frozen=True)
class _InsertPlan:
    processors: tuple  # (column index, bind processor) of the columns that have one
    insert: str = ""
    insert_returning: str = ""
    copy: str = ""
    copy_ids: str = ""
    draw_ids: str = ""


@functools.cache
def _insert_plan(table, names: tuple[str, ...], dialect) -> _InsertPlan:
    quote = dialect.identifier_preparer.quote
    processors = tuple(
        None if isinstance(table.c[name].type, JSON) else _bind_processor(table.c[name], dialect)
        for name in names
    )
    processors = tuple((i, f) for i, f in enumerate(processors) if f is not None)
    # Names from the table's metadata only, quoted by the dialect: no input reaches the SQL.
    name, columns = quote(table.name), ", ".join(quote(n) for n in names)
    if dialect.name == "postgresql":
        return _InsertPlan(
            processors,
            copy=f"COPY {name} ({columns}) FROM STDIN",
            copy_ids=f"COPY {name} ({quote('id')}, {columns}) FROM STDIN",
            draw_ids="SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        )
    marks = ", ".join("?" for _ in names)
    insert = f"INSERT INTO {name} ({columns}) VALUES ({marks})"  # noqa: S608
    return _InsertPlan(processors, insert=insert, insert_returning=f"{insert} RETURNING id")


def _bind_processor(column, dialect) -> Callable[[Any], Any] | None:
    """The column type's bind processing; on SQLite, for dates and aware datetimes, the same
    text made without its general machinery (a sync binds several per record: the timestamp
    type's checks, conversion to UTC and ``%`` formatting took more time than SQLite's insert
    of the value), and a value bound again (a batch's one ``now``) is not made again."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None or dialect.name != "sqlite":
        return process
    kind = column.type
    if isinstance(kind, UTCDateTime) and _default_format(kind.impl, DATETIME, dialect):
        return _last_value_kept(_fast_utc_datetime(process))
    if isinstance(kind, Date) and _default_format(kind, DATE, dialect):
        return _last_value_kept(_fast_date(process))
    return process


def _default_format(kind, sqlite_type, dialect) -> bool:
    """Whether ``kind`` is stored on SQLite in ``sqlite_type``'s default text format."""
    impl = kind.dialect_impl(dialect)
    return isinstance(impl, sqlite_type) and impl._storage_format == sqlite_type._storage_format


def _fast_utc_datetime(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``UTCDateTime``'s processor on SQLite for a datetime in UTC: its text without offset
    (``YYYY-MM-DD HH:MM:SS.ffffff``); anything else takes ``process``."""

    def fast(value):
        if type(value) is dt.datetime and value.tzinfo is dt.UTC:
            return value.isoformat(" ", "microseconds")[:26]
        return process(value)

    return fast


def _fast_date(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``Date``'s processor on SQLite for a date (``YYYY-MM-DD``); anything else (a datetime
    among them) takes ``process``."""

    def fast(value):
        return value.isoformat() if type(value) is dt.date else process(value)

    return fast


def _last_value_kept(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` that answers the value it was last given (the same object: dates and
    datetimes are immutable, and the kept one cannot be freed and its address reused) from
    memory."""
    last = [(object(), None)]  # replaced whole: threads never see one value with another's text

    def kept(value):
        held = last[0]
        if held[0] is value:
            return held[1]
        text = process(value)
        last[0] = (value, text)
        return text

    return kept


def _json(value) -> str:
    return json.dumps(value)  # None too: SQLAlchemy's JSON stores it as JSON null


__all__ = ["bulk_insert", "insert_rows"]
