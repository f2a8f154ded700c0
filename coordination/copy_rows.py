"""Many new rows into one table: ``COPY`` on PostgreSQL, an ``executemany`` INSERT elsewhere.

A multi-row INSERT of thousands of rows costs psycopg more than the database: it parses the
statement for its tens of thousands of placeholders before sending it. ``COPY ... FROM STDIN``
sends the rows as data, in the caller's transaction. The values go in as the INSERT would store
them: JSON columns as ``json.dumps`` text (SQLAlchemy's default serialiser), aware datetimes with
their offset (the columns are ``timestamp with time zone``), everything else as psycopg dumps it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import JSON, Connection, Table, insert


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys, naming columns of ``table``)."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), list(rows))
        return
    from psycopg import sql

    names = list(rows[0])
    as_json = [isinstance(table.c[name].type, JSON) for name in names]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    cursor = connection.connection.driver_connection.cursor()
    with cursor, cursor.copy(statement) as copy:
        if any(as_json):
            for row in rows:
                copy.write_row(
                    [
                        _json(row[name]) if dumped else row[name]
                        for name, dumped in zip(names, as_json, strict=True)
                    ]
                )
        else:
            for row in rows:
                copy.write_row([row[name] for name in names])


def _json(value) -> str:
    return json.dumps(value)  # None too: SQLAlchemy's JSON stores it as JSON null


__all__ = ["insert_rows"]
