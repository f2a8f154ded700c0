"""Planner statistics that keep up while a sync fills a young PostgreSQL database.

PostgreSQL plans with each table's statistics from its last ``ANALYZE``. Autovacuum analyses a
table once a tenth of its rows have changed, but looks only once a minute, and later on a busy
machine; a full sync into an empty database grows its tables from nothing to hundreds of
thousands of rows in that time. Until then the planner plans for the nearly empty tables it last
saw, and statements planned once and kept (psycopg prepares a statement on its fifth execution;
foreign-key checks are kept plans) stay with those plans: sequential scans that compare every
row with a list of a thousand values. Measured on the 200,000-approach full sync (loaded
machine): the production-unit lookup took 385 ms a batch, the records of a rebuild chunk 620 ms,
the company refresh's read 120 ms; with the analyses below, 6 ms, 33 ms and 21 ms.

The sync calls :func:`analyse_grown_tables` as each batch and each rebuild begins: a table that
has ``GROWTH`` times the rows it had at its last analysis (and at least ``GROWN_FLOOR``) is
analysed there and then, which also makes PostgreSQL re-plan the kept statements on it. That is
a few analyses while a table grows from nothing; in between, the planner scales the analysed
statistics by the table's size on disk. A table of stable size (a nightly delta on a filled
database) never qualifies and is left to autovacuum. SQLite keeps no such statistics: nothing
to do there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

# The tables a sync writes and then reads by key in the same run.
SYNC_TABLES = (
    "sourcerecord",
    "need",
    "quarantinedrecord",
    "company",
    "companylink",
    "productionunit",
    "contactperson",
    "matchproposal",
    "dirtycompany",
    "approach",
    "approachrecord",
    "approachorganisation",
)
# The columns analysed of a wide table: those the sync's statements look rows up by or filter
# on; autovacuum's analyses cover the others (payload, free text: an analysis of all of
# ``sourcerecord``'s columns took 0.8 s at 100,000 records, of these 0.5 s, loaded machine).
ANALYSED_COLUMNS = {
    "sourcerecord": (
        "id",
        "source_id",
        "external_id",
        "company_id",
        "approach_date",
        "status",
        "cvr",
    ),
}
# Below this many rows a table is not worth an analysis (a sequential scan of it is cheap
# whatever the plan).
GROWN_FLOOR = 1_000
# A table is analysed again once it has this many times the rows of its last analysis.
GROWTH = 4

# ``reltuples`` (the rows at the last analysis) is -1 for a table never analysed. The live rows
# are counted by the statistics system, which lags the writes by up to about a second (each
# server process reports its counts when idle, at most once a second). Not the changes since
# the last analysis: an analysis of some columns only leaves that count as it was. A table that
# autovacuum is working on is left to it: ANALYZE would wait for its lock.
_GROWN = text(
    "SELECT c.relname FROM pg_class c "
    "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(:tables) "
    "AND pg_stat_get_live_tuples(c.oid) >= greatest(:floor, :growth * c.reltuples) "
    "AND c.oid NOT IN (SELECT relid FROM pg_stat_progress_analyze "
    "UNION ALL SELECT relid FROM pg_stat_progress_vacuum) "
    "ORDER BY c.relname"
)


def analyse_grown_tables(connection: Connection, tables=SYNC_TABLES) -> list[str]:
    """Analyse those of ``tables`` that have grown out of their statistics (module docstring),
    in the connection's transaction; their names."""
    if connection.dialect.name != "postgresql":
        return []
    grown = list(
        connection.execute(
            _GROWN, {"tables": list(tables), "floor": GROWN_FLOOR, "growth": GROWTH}
        ).scalars()
    )
    analyse_tables(connection, grown)
    return grown


def analyse_tables(connection: Connection, tables: Iterable[str]) -> None:
    """Analyse ``tables`` in the connection's transaction (its own new rows count: PostgreSQL
    samples them as live); for a statement that has just filled or replaced them."""
    if connection.dialect.name != "postgresql":
        return
    quote = connection.dialect.identifier_preparer.quote
    for name in tables:
        # names from the catalog and this package only; quoted all the same
        columns = ANALYSED_COLUMNS.get(name)
        listed = f" ({', '.join(quote(c) for c in columns)})" if columns else ""
        connection.execute(text(f"ANALYZE {quote(name)}{listed}"))
