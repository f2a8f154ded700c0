"""``insert_rows`` (COPY on PostgreSQL) stores exactly what an INSERT of the same rows stores:
JSON values, aware datetimes, dates, booleans, floats and NULLs alike. Runs on both databases."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite

from coordination.copy_rows import _bind_processor, insert_rows
from coordination.db import session_scope
from coordination.models import Approach, Company, CompanyLink

_APPROACH = Approach.__table__
_COMPANY = Company.__table__


def _approach(group_key: int, company_id: int, **values) -> dict:
    return {
        "group_key": group_key,
        "company_id": company_id,
        "date": dt.date(2025, 3, 1),
        "channel": None,
        "purpose": "Sådan én 'citeret' tekst\tmed \\ og ny\nlinje",
        "planned": False,
        "joint": True,
        "coordinated": True,
        "organisations": ["Jobcenter Aarhus", "Erhvervshus Midtjylland"],
        "consultants": [],
        **values,
    }


def _company(company_id: int) -> dict:
    return {
        "id": company_id,
        "cvr": None,
        "name": f"Firma {company_id}",
        "name_key": f"firma {company_id}",
        "address": None,
        "postcode": "8000",
        "city": None,
        "municipality_code": "751",
        "created_at": dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC),
    }


def test_copied_rows_read_back_as_inserted_rows(engine):
    with session_scope(engine) as session:
        connection = session.connection()
        connection.execute(insert(_COMPANY), [_company(1)])
        insert_rows(connection, _COMPANY, [_company(2)])
        connection.execute(insert(_APPROACH), [_approach(10, 1)])
        insert_rows(connection, _APPROACH, [_approach(20, 2)])
        insert_rows(connection, _APPROACH, [])  # nothing to do

    with session_scope(engine) as session:
        companies = session.execute(select(_COMPANY).order_by(_COMPANY.c.id)).all()
        approaches = session.execute(select(_APPROACH).order_by(_APPROACH.c.group_key)).all()
    inserted, copied = (row._asdict() for row in companies)
    assert {**copied, "id": 1, "name": "Firma 1", "name_key": "firma 1"} == inserted
    assert copied["created_at"] == dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    inserted, copied = (row._asdict() for row in approaches)
    assert copied.pop("id") != inserted.pop("id")
    assert {**copied, "group_key": 10, "company_id": 1} == inserted
    assert copied["organisations"] == ["Jobcenter Aarhus", "Erhvervshus Midtjylland"]


# --- SQLite's date and timestamp texts, made without SQLAlchemy's machinery --------------------

_SQLITE = sqlite.dialect()
_CET = dt.timezone(dt.timedelta(hours=1))
_TIMESTAMPS = [
    dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC),
    dt.datetime(2025, 3, 1, 12, 30, 15, tzinfo=dt.UTC),  # no microseconds
    dt.datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),  # a year of three digits
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2025, 3, 30, 1, 30, tzinfo=_CET),  # another offset: converted to UTC
    dt.datetime(2025, 3, 30, 1, 30, tzinfo=ZoneInfo("Europe/Copenhagen")),
]
_DAYS = [dt.date(2025, 3, 1), dt.date(1, 1, 1), dt.date(999, 12, 31), dt.date(9999, 12, 31)]


def _processors(table, name):
    column = table.c[name]
    general = column.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
    return general, _bind_processor(column, _SQLITE)


@pytest.mark.parametrize("value", _TIMESTAMPS)
def test_a_timestamp_is_bound_on_sqlite_as_sqlalchemy_binds_it(value):
    general, fast = _processors(_COMPANY, "created_at")
    assert fast is not general
    assert fast(value) == general(value)
    assert fast(value) == general(value)  # from memory, the second time


@pytest.mark.parametrize("value", _DAYS + [dt.datetime(2025, 3, 1, 12, 30)])
def test_a_date_is_bound_on_sqlite_as_sqlalchemy_binds_it(value):
    general, fast = _processors(_APPROACH, "date")
    assert fast is not general
    assert fast(value) == general(value)


def test_what_sqlalchemy_refuses_is_refused_on_the_fast_path_too():
    _, timestamp = _processors(_COMPANY, "created_at")
    with pytest.raises(ValueError, match="timezone"):
        timestamp(dt.datetime(2025, 3, 1, 12, 30))  # naive
    _, day = _processors(_APPROACH, "date")
    with pytest.raises(TypeError):
        day("2025-03-01")


def test_a_value_bound_again_is_answered_from_memory_only_when_it_is_the_same_object():
    _, fast = _processors(_COMPANY, "created_at")
    first = dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    equal_but_another = first.astimezone(_CET)
    assert fast(first) == "2025-03-01 12:30:15.123456"
    assert fast(equal_but_another) == "2025-03-01 12:30:15.123456"
    later = first + dt.timedelta(days=1, microseconds=1)
    assert fast(later) == "2025-03-02 12:30:15.123457"
    assert fast(first) == "2025-03-01 12:30:15.123456"


def test_other_columns_and_postgresql_keep_sqlalchemys_processors():
    general, fast = _processors(CompanyLink.__table__, "score")
    assert fast is general
    pg = postgresql.dialect()
    for column in (_COMPANY.c.created_at, _APPROACH.c.date):
        process = _bind_processor(column, pg)
        assert process is None or "_last_value_kept" not in process.__qualname__
