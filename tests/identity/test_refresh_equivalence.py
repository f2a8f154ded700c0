"""``refresh_companies`` against its plain definition over random histories.

The refresh reads only the records that decide something (the database picks them: the
first record with each display field in survivorship order, and the first and last record of
each spelling of a person). The definition reads every record of the company: its display
fields by survivorship (``display_fields``) over all of them, its contact persons by merging
all its records' persons by key in order of date and id, later fields winning, anonymised
persons left alone, new persons inserted in the order they first appear. The worlds below have
many ties (few dates, shared modification times), blank and empty values, postcodes spelled
several ways, CVR numbers that are not valid, persons spelled several ways, and stored persons
and display fields that are stale, anonymised or unknown to the records: a refresh that took
the wrong record of a group, ordered ties wrongly, or trusted a blank value fails them.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict

from sqlalchemy import select
from sqlmodel import Session

from connectors.base import PersonRef
from coordination import linking
from coordination.db import session_scope
from coordination.identity.contacts import contact_key
from coordination.identity.normalise import (
    normalise_company_name,
    normalise_email,
    normalise_phone,
)
from coordination.identity.survivorship import CompanyFacts, display_fields
from coordination.linking import municipality_code, refresh_companies
from coordination.models import Company, ContactPerson, Organisation, Source, SourceRecord
from tests.identity.test_refresh_contacts import source_and_company

VALID_CVRS = ["12345674", "10150817", "25313763"]
NAMES = ["Holm Byg ApS", "HOLM BYG", "Holm Byg A/S", "Møller & Søn", None]
POSTCODES = ["8000", " 8000", "DK-8000", "8200", "7400", None]
ADDRESSES = ["Vestergade 1", "Søndergade 12, 2. tv", None]
CITIES = ["Aarhus C", "Aarhus N", "Herning", None]
BLANKS = ["  ", "", "\t"]  # no value to survivorship, a value to the database
PERSON_NAMES = ["Anne Holm", "anne  holm", "Holm, Anne", "Bo Ek", "", "  ", None]
EMAILS = ["anne@holm.dk", " Anne@Holm.dk", "bo@ek.dk", "n/a", "", None]
PHONES = ["+45 86 12 34 56", "86123456", "20304050", "123", "", None]


def _person(rng: random.Random) -> dict | None:
    kind = rng.random()
    if kind < 0.2:
        return None
    if kind < 0.25:
        return {}
    person = {
        "name": rng.choice(PERSON_NAMES),
        "email": rng.choice(EMAILS),
        "phone": rng.choice(PHONES),
    }
    if rng.random() < 0.2:
        del person[rng.choice(list(person))]
    return person


def _record(
    rng: random.Random, source_id: int, company_id: int, number: int, odd: float, bare: bool
) -> SourceRecord:
    """A record; ``odd``: the chance of each field to be blank (and of the CVR not valid);
    ``bare``: without name, address, postcode and city."""

    def pick(values):
        if bare:
            return None
        return rng.choice(BLANKS) if rng.random() < odd else rng.choice(values)

    cvr = "12345678" if rng.random() < odd else rng.choice([None, None, *VALID_CVRS])
    modified = rng.choice(
        [None, dt.datetime(2025, 5, 1, 12, tzinfo=dt.UTC), dt.datetime(2025, 5, 2, tzinfo=dt.UTC)]
    )
    payload: dict = {"raw": {"Note": "x" * rng.randint(0, 50)}}
    if rng.random() < 0.9:
        payload["contact_person"] = _person(rng)
    return SourceRecord(
        source_id=source_id,
        external_id=f"{company_id}-{number}",
        content_hash="x",
        status=rng.choice(["completed", "completed", "planned", "cancelled"]),
        approach_date=dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 4)),
        cvr=cvr,
        company_name=pick(NAMES),
        address=pick(ADDRESSES),
        postcode=pick(POSTCODES),
        city=pick(CITIES),
        payload=payload,
        modified_at=modified,
        company_id=company_id,
    )


def _stored_person(rng: random.Random, company_id: int) -> ContactPerson:
    key = rng.choice(
        ["email:anne@holm.dk", "email:bo@ek.dk", "phone:86123456", "name:anne holm", "name:x y"]
    )
    anonymised = rng.random() < 0.3
    return ContactPerson(
        company_id=company_id,
        person_key=key,
        name=None if anonymised else rng.choice(["Anne Holm", "Gammel", None]),
        email=None if anonymised else rng.choice(["anne@holm.dk", None]),
        phone=None if anonymised else rng.choice(["86123456", None]),
        last_seen_on=None if anonymised else dt.date(2024, 1, 1),
        anonymised_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC) if anonymised else None,
    )


def _world(session, rng: random.Random, source_id: int) -> list[int]:
    companies = [
        Company(name=rng.choice(["Holm Byg", "(ukendt)", "Gammelt Navn"]), name_key="x")
        for _ in range(rng.randint(1, 6))
    ]
    session.add_all(companies)
    session.flush()
    ids = [company.id for company in companies]
    odd = rng.choice([0.0, 0.0, 0.02, 0.2])
    for company_id in ids:
        # some companies without records: the refresh leaves them alone
        count = rng.choice([0, 1, 2, 5, 12, 30])
        bare = rng.random() < 0.15  # a company whose records name no company fields at all
        session.add_all(_record(rng, source_id, company_id, n, odd, bare) for n in range(count))
        taken = set()
        for _ in range(rng.randint(0, 3)):
            person = _stored_person(rng, company_id)
            if person.person_key not in taken:
                taken.add(person.person_key)
                session.add(person)
    session.flush()
    return ids


# --- the plain definition ----------------------------------------------------------------------


def _expected(session, ids: list[int]):
    """The companies' display values and contact persons as the definition derives them from
    all their records: (display by company, persons by (company, key), new keys in order by
    company)."""
    records = defaultdict(list)
    for record in session.execute(
        select(SourceRecord).where(SourceRecord.company_id.in_(ids))
    ).scalars():
        records[record.company_id].append(record)
    displays = {}
    for company_id, rows in records.items():
        facts = [
            CompanyFacts(
                name=r.company_name,
                cvr=r.cvr,
                approach_date=r.approach_date,
                address=r.address,
                postcode=r.postcode,
                city=r.city,
                p_number=r.p_number,
                modified_at=r.modified_at,
                record_id=r.id,
            )
            for r in rows
        ]
        _, shown = display_fields(facts)
        name = shown["name"]
        displays[company_id] = (
            name or "(ukendt)",
            normalise_company_name(name or ""),
            shown["address"],
            shown["postcode"],
            shown["city"],
            municipality_code(shown["postcode"]),
        )
    existing = {
        (p.company_id, p.person_key): _person_values(p)
        for p in session.execute(
            select(ContactPerson).where(ContactPerson.company_id.in_(ids))
        ).scalars()
    }
    persons = dict(existing)
    new_keys = defaultdict(list)
    for company_id, rows in records.items():
        merged: dict[str, dict] = {}
        for r in sorted(rows, key=lambda r: (r.approach_date, r.id)):
            person = r.payload.get("contact_person") or {}
            spelled = (person.get("name"), person.get("email"), person.get("phone"))
            if spelled == (None, None, None):
                continue
            key = contact_key(PersonRef(*spelled))
            if key is None:
                continue
            stored = existing.get((company_id, key))
            if stored is not None and stored[-1] is not None:  # anonymised
                continue
            entry = merged.setdefault(key, {})
            entry["name"] = spelled[0] or entry.get("name")
            entry["email"] = normalise_email(spelled[1]) or entry.get("email")
            entry["phone"] = normalise_phone(spelled[2]) or entry.get("phone")
            entry["last_seen_on"] = r.approach_date
        for key, entry in merged.items():
            before = existing.get((company_id, key))
            anonymised_at = None if before is None else before[-1]
            persons[(company_id, key)] = (
                entry["name"],
                entry["email"],
                entry["phone"],
                entry["last_seen_on"],
                anonymised_at,
            )
            if before is None:
                new_keys[company_id].append(key)
    return displays, persons, new_keys


def _person_values(p) -> tuple:
    return (p.name, p.email, p.phone, p.last_seen_on, _as_utc(p.anonymised_at))


def _as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone: they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _state(session, ids: list[int]):
    companies = {
        c.id: (c.name, c.name_key, c.address, c.postcode, c.city, c.municipality_code)
        for c in session.execute(select(Company).where(Company.id.in_(ids))).scalars()
    }
    persons = session.execute(
        select(ContactPerson).where(ContactPerson.company_id.in_(ids)).order_by(ContactPerson.id)
    ).scalars()
    rows = {}
    order = defaultdict(list)
    for p in persons:
        values = _person_values(p)
        rows[(p.company_id, p.person_key)] = values
        order[p.company_id].append(p.person_key)
    return companies, rows, order


def test_refresh_equals_the_plain_definition_over_random_histories(engine, monkeypatch):
    with session_scope(engine) as session:
        organisation = Organisation(name="Jobcenter Aarhus", name_key="jobcenter aarhus", type="x")
        session.add(organisation)
        session.flush()
        source = Source(name="s", kind="csv_drop", organisation_id=organisation.id)
        session.add(source)
        session.flush()
        source_id = source.id
    undecided = []

    def spy(rows):
        display = decide(rows)
        undecided.append(display is None)
        return display

    decide = linking._display_from_candidates
    monkeypatch.setattr(linking, "_display_from_candidates", spy)
    for seed in range(60):
        rng = random.Random(seed)
        with session_scope(engine) as session:
            ids = _world(session, rng, source_id)
        with Session(engine) as session:
            displays, persons, new_keys = _expected(session, ids)
            companies_before, _, order_before = _state(session, ids)
        with session_scope(engine) as session:
            refresh_companies(session, ids)
        with Session(engine) as session:
            companies, rows, order = _state(session, ids)
        for company_id in ids:
            wanted = displays.get(company_id, companies_before[company_id])
            assert companies[company_id] == wanted, (seed, company_id)
            # persons already stored keep their place; new ones follow in order of appearance
            assert order[company_id] == order_before[company_id] + new_keys[company_id], seed
        assert rows == persons, seed
    # the worlds reach both ways: decided from the deciding records, and from the whole history
    assert 20 < sum(undecided) < len(undecided) - 20


def test_the_refresh_reads_only_deciding_records(engine):
    """A company with a long history of alike records: the refresh is sent a handful of rows,
    not its history (and still derives what the definition derives)."""
    with session_scope(engine) as session:
        source_id, company_id = source_and_company(session)
        person = {"name": "Anne Holm", "email": "anne@holm.dk", "phone": None}
        session.add_all(
            SourceRecord(
                source_id=source_id,
                external_id=f"r{n}",
                content_hash="x",
                status="completed",
                approach_date=dt.date(2025, 1, 1) + dt.timedelta(days=n),
                company_name="Holm Byg ApS",
                postcode="8000",
                address="Vestergade 1",
                city="Aarhus C",
                payload={"raw": {}, "contact_person": person},
                company_id=company_id,
            )
            for n in range(200)
        )
    with Session(engine) as session:
        deciding = session.connection().execute(linking._DECIDING_RECORDS, {"ids": [company_id]})
        # the newest record (all display fields), the person's first and last record
        assert len(deciding.all()) == 3
    with session_scope(engine) as session:
        refresh_companies(session, [company_id])
    with Session(engine) as session:
        stored = session.get(Company, company_id)
        assert (stored.name, stored.postcode, stored.city) == ("Holm Byg ApS", "8000", "Aarhus C")
        (anne,) = session.execute(select(ContactPerson)).scalars()
        assert (anne.person_key, anne.last_seen_on) == (
            "email:anne@holm.dk",
            dt.date(2025, 1, 1) + dt.timedelta(days=199),
        )
