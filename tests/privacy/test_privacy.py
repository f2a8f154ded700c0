"""Retention and erasure: personal data leaves the database on purpose, and nothing else does."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select
from sqlmodel import Session

from connectors.base import load_registry
from coordination.config import Retention
from coordination.db import session_scope
from coordination.models import Approach, AuditEntry, ContactPerson, SourceRecord
from coordination.privacy import apply_retention, erase_contact_person
from coordination.sync import SyncEngine
from tests.helpers import csv_config, csv_row, text_in_database, write_csv

PERSON = {
    "Kontaktperson": "Birthe Kjærgaard",
    "KontaktpersonEmail": "Birthe.Kjaergaard@robot.dk",
    "KontaktpersonTelefon": "+45 86 12 34 56",
}


def _sync(engine, db_url, tmp_path, rows, **kwargs):
    write_csv(tmp_path / "drop", "virksomhedskontakter_1.csv", rows)
    config = csv_config(db_url, {"Jobcenter Aarhus": tmp_path / "drop"})
    config = dataclasses.replace(config, **kwargs)
    SyncEngine(engine, config, load_registry()).run()
    return config


def test_erasure_by_email_leaves_the_person_nowhere(engine, db_url, tmp_path):
    rows = [
        csv_row(KontaktID="1", CVR="53282067", Note="Ring til Birthe Kjærgaard igen", **PERSON),
        csv_row(KontaktID="2", CVR="53282067", Dato="05-09-2026", **PERSON),
    ]
    _sync(engine, db_url, tmp_path, rows)
    assert text_in_database(engine, "Birthe.Kjaergaard@robot.dk")  # the test can see it

    with session_scope(engine) as session:
        result = erase_contact_person(
            session, email="birthe.kjaergaard@ROBOT.dk", requested_by="dpo@region.dk"
        )

    assert result.contact_persons == 1
    assert result.source_records == 2
    for needle in ("Kjaergaard@robot", "Birthe Kjærgaard", "86123456", "86 12 34 56"):
        assert text_in_database(engine, needle) == [], needle
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Approach)).scalar_one() == 2
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "contact_person.erase")
        ).scalar_one()
        assert entry.actor == "dpo@region.dk"


def test_erasure_needs_an_email_or_phone(engine):
    with session_scope(engine) as session:
        try:
            erase_contact_person(session, email="not-an-email", requested_by="x")
        except ValueError as exc:
            assert "e-mail" in str(exc)
        else:
            raise AssertionError("an unusable identifier must be refused")


def test_retention_anonymises_old_approaches_and_keeps_recent_ones(engine, db_url, tmp_path):
    rows = [
        csv_row(KontaktID="old", CVR="53282067", Dato="01-02-2019", Note="Gammel note", **PERSON),
        csv_row(KontaktID="new", CVR="53282067", Dato="01-02-2026", Note="Ny note"),
    ]
    config = _sync(engine, db_url, tmp_path, rows)

    with session_scope(engine) as session:
        result = apply_retention(session, config, today=dt.date(2026, 11, 27))

    assert result.records_anonymised == 1
    with Session(engine) as session:
        notes = dict(session.execute(select(SourceRecord.external_id, SourceRecord.notes)).all())
        assert notes == {"old": None, "new": "Ny note"}
        person = session.execute(select(ContactPerson)).scalar_one()
        assert person.name is None and person.anonymised_at is not None
        # the statistics keep the approach itself
        assert session.execute(select(func.count()).select_from(Approach)).scalar_one() == 2


def test_retention_per_source_override_keeps_longer(engine, db_url, tmp_path):
    rows = [csv_row(KontaktID="old", CVR="53282067", Dato="01-02-2019", Note="Gammel note")]
    config = _sync(engine, db_url, tmp_path, rows)
    config = dataclasses.replace(config, retention=Retention(sources={"jobcenter-1": 10}))

    with session_scope(engine) as session:
        result = apply_retention(session, config, today=dt.date(2026, 11, 27))

    assert result.records_anonymised == 0


def test_retention_drops_audit_entries_older_than_the_audit_period(engine, service_config):
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with session_scope(engine) as session:
        session.add(AuditEntry(action="company.check", at=long_ago))
        session.add(AuditEntry(action="company.check"))
    with session_scope(engine) as session:
        result = apply_retention(session, service_config, today=dt.date(2026, 11, 27))
    assert result.audit_entries_deleted == 1
    with Session(engine) as session:
        actions = session.execute(select(AuditEntry.action)).scalars().all()
        assert sorted(actions) == ["company.check", "retention.run"]
