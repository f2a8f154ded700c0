"""``insert_rows`` (COPY on PostgreSQL) stores exactly what an INSERT of the same rows stores:
JSON values, aware datetimes, dates, booleans, floats and NULLs alike. Runs on both databases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from coordination.copy_rows import insert_rows
from coordination.db import session_scope
from coordination.models import Approach, Company

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
