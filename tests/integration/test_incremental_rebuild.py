"""The sync's incremental rebuild (``plan_rebuild`` + ``rebuild_approaches`` with windows)
leaves exactly the approaches a full rebuild makes, ids included.

Random histories arrive in batches as a sync stores them: new records, changed dates, channels,
consultants and joint-with fields, cancellations, deletions, records counting again, and records
moving to another company (identity moves). After each batch the touched companies (the
records' companies before and after) are rebuilt incrementally, the way ``SyncEngine`` does:
planned once, then rebuilt in chunks. A full rebuild of every company must then change nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest
from sqlalchemy import select

from coordination import approach_building
from coordination.approach_building import plan_rebuild, rebuild_approaches
from coordination.db import session_scope
from coordination.identity.normalise import normalise_company_name, normalise_organisation_name
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Company,
    Organisation,
    Source,
    SourceRecord,
)

pytestmark = pytest.mark.integration

START = dt.date(2025, 1, 1)
ORGANISATIONS = ["Jobcenter Aarhus", "Væksthus Midtjylland", "VEU-center Østjylland"]
CONSULTANTS = ["anna@example.dk", "bo@example.dk", None]
CHANNELS = ["visit", "phone", None]
STATUSES = ["completed"] * 6 + ["planned", "cancelled", "deleted"]


class World:
    def __init__(self, engine, rng: random.Random, companies: int, days: int) -> None:
        self.engine = engine
        self.rng = rng
        self.days = days
        self.numbers = itertools.count(1)
        with session_scope(engine) as session:
            self.sources = []
            for name in ORGANISATIONS:
                organisation = Organisation(
                    name=name, name_key=normalise_organisation_name(name), type="other"
                )
                session.add(organisation)
                session.flush()
                source = Source(
                    name=f"source-{organisation.id}",
                    kind="csv-drop",
                    organisation_id=organisation.id,
                )
                session.add(source)
                session.flush()
                self.sources.append(source.id)
            self.companies = []
            for n in range(companies):
                name = f"Firma {n} ApS"
                company = Company(name=name, name_key=normalise_company_name(name))
                session.add(company)
                session.flush()
                self.companies.append(company.id)
        self.records: list[int] = []

    def _fields(self) -> dict:
        rng = self.rng
        return {
            "approach_date": START + dt.timedelta(days=rng.randrange(self.days)),
            "channel": rng.choice(CHANNELS),
            "consultant_email": rng.choice(CONSULTANTS),
            "consultant_name": rng.choice(["Anna", "Bo", None]),
            "purpose": rng.choice(["need", "follow-up", None]),
            "joint_with": rng.sample(ORGANISATIONS, rng.choice([0, 0, 1, 2])),
            "status": rng.choice(STATUSES),
        }

    def batch(self, session, new: int, changes: int) -> tuple[set[int], set[int]]:
        """Store one batch; returns (records changed, companies touched)."""
        rng = self.rng
        changed, touched = set(), set()
        for _ in range(new):
            number = next(self.numbers)
            record = SourceRecord(
                source_id=rng.choice(self.sources),
                external_id=f"rec-{number}",
                content_hash=f"{number:064d}",
                payload={},
                company_id=rng.choice(self.companies),
                **self._fields(),
            )
            session.add(record)
            session.flush()
            self.records.append(record.id)
            changed.add(record.id)
            touched.add(record.company_id)
        for record_id in rng.sample(self.records, min(changes, len(self.records))):
            record = session.get(SourceRecord, record_id)
            touched.add(record.company_id)
            kind = rng.choice(["date", "date", "fields", "status", "move", "move", "all"])
            if kind in ("date", "all"):
                shift = rng.choice([-40, -5, -3, -2, -1, 1, 2, 3, 5, 40])
                record.approach_date = record.approach_date + dt.timedelta(days=shift)
            if kind in ("fields", "all"):
                fields = self._fields()
                for name in ("channel", "consultant_email", "consultant_name", "joint_with"):
                    setattr(record, name, fields[name])
            if kind in ("status", "all"):
                record.status = rng.choice(STATUSES)
            if kind == "move":  # an identity move: linked to another company, content unchanged
                record.company_id = rng.choice(self.companies)
            changed.add(record_id)
            touched.add(record.company_id)
        session.flush()
        return changed, touched


def _snapshot(engine) -> dict:
    with session_scope(engine) as session:
        approaches = {
            row.id: (
                row.group_key,
                row.company_id,
                row.date,
                row.channel,
                row.purpose,
                row.planned,
                row.joint,
                tuple(row.organisations),
                tuple(row.consultants),
            )
            for row in session.execute(select(Approach)).scalars()
        }
        links = dict(
            session.execute(
                select(ApproachRecord.source_record_id, ApproachRecord.approach_id)
            ).all()
        )
        organisations = sorted(
            session.execute(
                select(ApproachOrganisation.approach_id, ApproachOrganisation.organisation_id)
            ).all()
        )
    return {"approaches": approaches, "links": links, "organisations": organisations}


def _rebuild_incrementally(engine, world, touched, changed, tolerance, chunk) -> None:
    ids = sorted(touched)
    with session_scope(engine) as session:
        windows = plan_rebuild(session, ids, changed, tolerance)
    for start in range(0, len(ids), chunk):
        with session_scope(engine) as session:
            rebuild_approaches(session, ids[start : start + chunk], tolerance, windows)


@pytest.mark.parametrize("seed", range(12))
def test_the_incremental_rebuild_equals_a_full_rebuild(engine, seed, monkeypatch):
    rng = random.Random(seed)
    tolerance = rng.choice([0, 1, 2, 3])
    world = World(engine, rng, companies=rng.choice([3, 6, 12]), days=rng.choice([20, 60, 200]))
    chunk = rng.choice([1, 2, 500])
    # The plan reads and plans its companies and records in chunks of this size too.
    monkeypatch.setattr(approach_building, "CHUNK", rng.choice([2, 5, 5_000]))
    with session_scope(engine) as session:  # the first sync: everything new
        changed, touched = world.batch(session, new=rng.randrange(40, 120), changes=0)
    _rebuild_incrementally(engine, world, touched, changed, tolerance, chunk)
    windowed = 0
    for _ in range(8):
        with session_scope(engine) as session:
            changed, touched = world.batch(
                session, new=rng.randrange(0, 15), changes=rng.randrange(1, 15)
            )
        with session_scope(engine) as session:
            windowed += sum(
                bool(w.record_ids)
                for w in plan_rebuild(session, touched, changed, tolerance).values()
            )
        _rebuild_incrementally(engine, world, touched, changed, tolerance, chunk)
        incremental = _snapshot(engine)
        with session_scope(engine) as session:
            rebuild_approaches(session, world.companies, tolerance)
        assert _snapshot(engine) == incremental
    assert windowed > 0  # the windows were used, not only whole rebuilds


def _records_on_days(engine, world, company_id: int, days: list[int], tolerance: int) -> list[int]:
    """One completed record of the company on each of ``days`` (after START), its approaches
    built; the records' ids, in the order of ``days``."""
    with session_scope(engine) as session:
        ids = []
        for n, day in enumerate(days):
            record = SourceRecord(
                source_id=world.sources[0],
                external_id=f"r{n}",
                content_hash=f"{n:064d}",
                payload={},
                company_id=company_id,
                status="completed",
                approach_date=START + dt.timedelta(days=day),
                joint_with=[],
            )
            session.add(record)
            session.flush()
            ids.append(record.id)
        rebuild_approaches(session, [company_id], tolerance)
    return ids


def test_a_change_far_from_the_rest_of_a_history_leaves_its_other_approaches_unread(engine):
    """Only the stretch around a change is regrouped: the plan names the records within the
    tolerance chain of the changed date, not the company's whole history."""
    rng = random.Random(1)
    world = World(engine, rng, companies=1, days=1)
    (company_id,) = world.companies
    dates = [0, 1, 2, 10, 11, 30]  # tolerance 2: stretches {0, 1, 2}, {10, 11}, {30}
    ids = _records_on_days(engine, world, company_id, dates, tolerance=2)
    with session_scope(engine) as session:
        record = session.get(SourceRecord, ids[4])
        record.approach_date = START + dt.timedelta(days=12)  # still within 2 days of day 10
        session.flush()
        (window,) = plan_rebuild(session, [company_id], {ids[4]}, 2).values()
    assert sorted(window.record_ids) == [ids[3], ids[4]]
    assert len(window.approach_ids) == 2


def test_a_stretch_longer_than_what_the_plan_reads_first_is_planned_whole(engine):
    """The plan reads a company's history around its changes first; a stretch of records each
    within the tolerance of the next that reaches past that is followed to its end, and the
    stretch before the gap stays out."""
    rng = random.Random(2)
    world = World(engine, rng, companies=1, days=1)
    (company_id,) = world.companies
    days = [*range(0, 100), *range(103, 400)]  # tolerance 1: stretches 0-99 and 103-399
    ids = _records_on_days(engine, world, company_id, days, tolerance=1)
    with session_scope(engine) as session:
        session.get(SourceRecord, ids[-1]).channel = "phone"
        session.flush()
        (window,) = plan_rebuild(session, [company_id], {ids[-1]}, 1).values()
    assert sorted(window.record_ids) == ids[100:]
    assert len(window.approach_ids) == len(days) - 100
