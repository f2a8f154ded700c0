"""``refresh_companies`` derives a company's contact persons from its records' payloads.

It reads only the payload's contact person (extracted by the database), so this runs on both
databases: the extraction must give the same person the full payload held.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlmodel import Session

from coordination.db import session_scope
from coordination.linking import refresh_companies
from coordination.models import Company, ContactPerson, Organisation, Source, SourceRecord

RAW = {"Note": "lang tekst " * 50, "nested": {"contact_person": {"name": "Ikke Denne"}}}


def _person(name, email, phone):
    return {"name": name, "email": email, "phone": phone}


def _records(source_id: int, company_id: int) -> list[SourceRecord]:
    people = [
        (dt.date(2025, 1, 10), _person("Anne Holm", "Anne@Holm.dk", None)),
        (dt.date(2025, 3, 1), _person("Anne  Holm", "anne@holm.dk", "+45 86 12 34 56")),
        (dt.date(2025, 2, 1), None),  # a record without a contact person
        (dt.date(2025, 2, 5), _person(None, None, "0045 20 30 40 50")),
        (dt.date(2025, 2, 6), _person("Gemt Væk", "gemt@x.dk", None)),  # anonymised before
        (dt.date(2025, 2, 7), _person(None, None, None)),  # identifies nobody
    ]
    return [
        SourceRecord(
            source_id=source_id,
            external_id=f"r{number}",
            content_hash="x",
            status="completed",
            approach_date=day,
            company_name="Holm Byg ApS",
            payload={"raw": RAW, "contact_person": person},
            company_id=company_id,
        )
        for number, (day, person) in enumerate(people)
    ]


def source_and_company(session) -> tuple[int, int]:
    """A jobcentre's source and a company with no records yet: their ids."""
    organisation = Organisation(name="Jobcenter Aarhus", name_key="jobcenter aarhus", type="x")
    session.add(organisation)
    session.flush()
    source = Source(name="s", kind="csv_drop", organisation_id=organisation.id)
    company = Company(name="Holm Byg", name_key="holm byg")
    session.add_all([source, company])
    session.flush()
    return source.id, company.id


def _company_with_records(session) -> int:
    """A company with the records of ``_records`` from one source; its id."""
    source_id, company_id = source_and_company(session)
    session.add_all(_records(source_id, company_id))
    return company_id


def test_contact_persons_are_merged_from_the_records_and_anonymised_ones_stay(engine):
    with session_scope(engine) as session:
        company_id = _company_with_records(session)
        session.add(
            ContactPerson(
                company_id=company_id,
                person_key="email:gemt@x.dk",
                anonymised_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            )
        )
    with session_scope(engine) as session:
        refresh_companies(session, [company_id])

    with Session(engine) as session:
        people = session.execute(
            select(
                ContactPerson.person_key,
                ContactPerson.name,
                ContactPerson.email,
                ContactPerson.phone,
                ContactPerson.last_seen_on,
            )
            .where(ContactPerson.company_id == company_id)
            .order_by(ContactPerson.person_key)
        ).all()
    assert [tuple(p) for p in people] == [
        ("email:anne@holm.dk", "Anne  Holm", "anne@holm.dk", "86123456", dt.date(2025, 3, 1)),
        ("email:gemt@x.dk", None, None, None, None),
        ("phone:20304050", None, None, "20304050", dt.date(2025, 2, 5)),
    ]


def test_a_second_refresh_of_unchanged_records_writes_nothing(engine):
    from sqlalchemy import event

    with session_scope(engine) as session:
        company_id = _company_with_records(session)
    with session_scope(engine) as session:
        refresh_companies(session, [company_id])
    with Session(engine) as session:
        before = session.execute(select(ContactPerson.person_key, ContactPerson.name)).all()
        assert session.get(Company, company_id).name == "Holm Byg ApS"

    writes: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with session_scope(engine) as session:
            refresh_companies(session, [company_id])
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert [w for w in writes if "company" in w.lower()] == []
    with Session(engine) as session:
        assert session.execute(select(ContactPerson.person_key, ContactPerson.name)).all() == before
