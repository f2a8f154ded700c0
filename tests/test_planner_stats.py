"""The sync's analyses of grown tables (``coordination/planner_stats.py``): a table is analysed
once it has ``GROWTH`` times the rows of its last analysis, and not before; the records table
only in the columns the sync looks records up by (and once: such an analysis leaves the count of
changes since the last full one as it was). Nothing on SQLite."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, text

from coordination import planner_stats
from coordination.models import Company, Organisation, Source, SourceRecord
from coordination.planner_stats import analyse_grown_tables

_NOW = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


@pytest.fixture
def connection(engine, monkeypatch):
    monkeypatch.setattr(planner_stats, "GROWN_FLOOR", 10)
    with engine.connect() as connection:
        yield connection


def _add_companies(connection, first: int, count: int) -> None:
    rows = [
        {"id": i, "name": f"Firma {i}", "name_key": f"firma {i}", "created_at": _NOW}
        for i in range(first, first + count)
    ]
    connection.execute(insert(Company.__table__), rows)


def _add_records(connection, count: int) -> None:
    connection.execute(
        insert(Organisation.__table__),
        [{"id": 1, "name": "Jobcenter Aarhus", "name_key": "jobcenter aarhus", "type": "job"}],
    )
    connection.execute(
        insert(Source.__table__),
        [{"id": 1, "name": "crm", "kind": "csv-drop", "organisation_id": 1, "state": {}}],
    )
    rows = [
        {
            "source_id": 1,
            "external_id": f"r{i}",
            "content_hash": f"{i:064d}",
            "status": "completed",
            "approach_date": dt.date(2025, 3, 1),
            "notes": "Opfølgning på besøget",
            "joint_with": [],
            "payload": {"raw": {"id": i}},
            "first_seen_at": _NOW,
            "last_seen_at": _NOW,
        }
        for i in range(count)
    ]
    connection.execute(insert(SourceRecord.__table__), rows)


def _analysed(connection) -> list[str]:
    """``analyse_grown_tables`` in a transaction of its own, after the counters of the
    connection's earlier writes have reached the server's statistics (which they otherwise do
    within about a second)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        connection.commit()  # the server process flushes them as it goes idle
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
    analysed = analyse_grown_tables(connection)
    connection.commit()
    return analysed


def _rows_analysed(connection, table: str) -> float:
    query = text("SELECT reltuples FROM pg_class WHERE relname = :table")
    return connection.execute(query, {"table": table}).scalar_one()


def test_tables_are_analysed_once_they_outgrow_their_statistics(connection):
    if connection.dialect.name == "sqlite":  # SQLite plans without such statistics
        _add_companies(connection, 1, 50)
        assert _analysed(connection) == []
        return
    connection.execute(text("ANALYZE company"))  # empty: its statistics say 0 rows
    connection.commit()
    _add_companies(connection, 1, 30)
    assert "company" in _analysed(connection)
    assert _rows_analysed(connection, "company") == 30
    assert "company" not in _analysed(connection)  # nothing changed since

    grown = planner_stats.GROWTH * 30
    _add_companies(connection, 31, grown - 31)  # one row short
    assert "company" not in _analysed(connection)
    assert _rows_analysed(connection, "company") == 30
    _add_companies(connection, grown, 1)
    assert "company" in _analysed(connection)
    assert _rows_analysed(connection, "company") == grown


def test_below_the_floor_a_table_is_left_alone(connection):
    if connection.dialect.name == "sqlite":
        assert _analysed(connection) == []
        return
    connection.execute(text("ANALYZE company"))
    connection.commit()
    _add_companies(connection, 1, 9)  # fewer than the floor (10 here)
    assert "company" not in _analysed(connection)


def test_records_are_analysed_in_their_lookup_columns_only(connection):
    if connection.dialect.name == "sqlite":
        _add_records(connection, 20)
        assert _analysed(connection) == []
        return
    connection.execute(text("ANALYZE sourcerecord"))
    connection.commit()
    connection.execute(text("DELETE FROM pg_statistic WHERE starelid = 'sourcerecord'::regclass"))
    connection.commit()
    _add_records(connection, 20)
    assert "sourcerecord" in _analysed(connection)
    assert _rows_analysed(connection, "sourcerecord") == 20
    assert "sourcerecord" not in _analysed(connection)
    query = text("SELECT attname FROM pg_stats WHERE tablename = 'sourcerecord'")
    columns = set(connection.execute(query).scalars())
    assert columns == set(planner_stats.ANALYSED_COLUMNS["sourcerecord"])
