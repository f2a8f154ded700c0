"""The report facts refreshed from the first day of each company's rebuild window (what the
sync does: ``Window.since``) equal a whole build, over the random histories of
``test_incremental_rebuild`` (new records, changed dates, statuses and fields, records moving
to another company), with needs noted, changed and removed, and companies changing their
municipality or industry (not dated: their facts are derived whole)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import delete

from coordination import approach_building
from coordination.approach_building import Window, plan_rebuild, rebuild_approaches
from coordination.db import session_scope
from coordination.models import Company, Need
from coordination.reports import facts
from coordination.reports.facts import refresh_report_facts
from coordination.sync import _note_since
from tests.integration.conftest import CRM, VEU_OEST, VEU_VEST, sync
from tests.integration.test_incremental_rebuild import World
from tests.integration.test_sync_changes import (
    JOINT_CONTACT,
    LATER,
    SOLO_APPOINTMENT,
    SOLO_CONTACT,
    _replace,
)
from tests.reports.test_facts import assert_facts_current
from tests.reports.test_facts_since import derived_approach_facts, stored_approach_facts

pytestmark = pytest.mark.integration

NEEDS = [
    ("upskilling", "Svejsning", "komp:svejsning"),
    ("upskilling", "CNC", "komp:cnc"),
    ("recruitment", "Smed", "stilling:smed"),
    ("upskilling", "Bæredygtig emballage", None),
]


def _note_needs(session, rng: random.Random, record_ids) -> None:
    """New needs for the records, as a sync classifies a stored record again."""
    ids = sorted(record_ids)
    if not ids:
        return
    session.execute(delete(Need).where(Need.source_record_id.in_(ids)))
    for record_id in ids:
        for type_, label, code in rng.sample(NEEDS, rng.choice([0, 1, 1, 2, 3])):
            session.add(
                Need(
                    source_record_id=record_id,
                    type=type_,
                    label=label,
                    taxonomy_code=code,
                    mapping_method="test" if code else "none",
                )
            )
    session.flush()


@pytest.mark.parametrize("seed", range(8))
def test_facts_refreshed_from_the_rebuild_windows_equal_a_whole_build(engine, seed, monkeypatch):
    rng = random.Random(seed)
    tolerance = rng.choice([0, 1, 3])
    world = World(engine, rng, companies=rng.choice([3, 6]), days=rng.choice([20, 60, 200]))
    monkeypatch.setattr(approach_building, "CHUNK", rng.choice([2, 5_000]))
    monkeypatch.setattr(facts, "_CHUNK", rng.choice([2, 5_000]))
    with session_scope(engine) as session:
        changed, touched = world.batch(session, new=rng.randrange(40, 100), changes=0)
        _note_needs(session, rng, changed)
        rebuild_approaches(session, sorted(touched), tolerance)
        refresh_report_facts(session)  # the first build
    dated = 0
    for _ in range(6):
        with session_scope(engine) as session:
            changed, touched = world.batch(
                session, new=rng.randrange(0, 10), changes=rng.randrange(1, 12)
            )
            _note_needs(session, rng, changed)
            for company_id in rng.sample(world.companies, rng.choice([0, 0, 1])):
                company = session.get(Company, company_id)
                company.municipality_code = rng.choice(["657", "751", None])
                company.industry_section = rng.choice(["C", "F", None])
                touched.add(company_id)  # the sync's company refresh: not dated
        ids = sorted(touched)
        since: dict = {}
        with session_scope(engine) as session:
            windows = plan_rebuild(session, ids, changed, tolerance)
        _note_since(since, ids, windows)
        with session_scope(engine) as session:
            rebuild_approaches(session, ids, tolerance, windows)
        with session_scope(engine) as session:
            days = {cid: day for cid, day in since.items() if day is not None}
            dated += len(days)
            refresh_report_facts(session, touched, days)
        with session_scope(engine) as session:
            assert_facts_current(session)
            assert stored_approach_facts(session) == derived_approach_facts(session)
    assert dated > 0  # refreshed from a day, not only whole


def test_a_company_planned_twice_in_a_run_keeps_the_earlier_day():
    since: dict = {1: None}  # caught up: whole
    early, late = dt.date(2025, 1, 1), dt.date(2025, 3, 1)
    _note_since(
        since, [1, 2, 3, 4], {1: Window((), (), late), 2: Window((), (), late), 4: Window((), ())}
    )
    _note_since(since, [2, 3], {2: Window((), (), early)})  # 3: rebuilt whole
    assert since == {1: None, 2: early, 3: None, 4: dt.date.max}
    _note_since(since, [4], {4: Window((), (), late)})
    assert since[4] == late


def test_a_sync_leaves_the_facts_of_a_whole_build(config, engine, fakes):
    """Through the sync: an appointment moved to an earlier day, a contact corrected to another
    company, a joint contact deleted; the facts follow as a whole build gives them."""
    sync(config, engine, [CRM, VEU_VEST, VEU_OEST])
    with session_scope(engine) as session:
        assert facts.facts_built(session)
    _replace(
        fakes.crm,
        "activityid",
        SOLO_APPOINTMENT,
        scheduledstart="2025-01-02T09:00:00+01:00",
        modifiedon=LATER,
    )
    company = {"cvr": "66978001", "name": "Skjern Å Trævarer A/S", "postcode": "6900"}
    _replace(fakes.veu_vest, "id", SOLO_CONTACT, company=company, updated_at=LATER)
    _replace(fakes.veu_oest, "id", JOINT_CONTACT, deleted=True, updated_at=LATER)
    sync(config, engine, [CRM, VEU_VEST, VEU_OEST])
    with session_scope(engine) as session:
        assert_facts_current(session)
        assert stored_approach_facts(session) == derived_approach_facts(session)
