"""Later deliveries: a record seen again with the same source id is an update in place, never a
new approach; a cancelled or deleted record removes its contribution; a file dropped again with
the same content is skipped."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlmodel import Session

from coordination.models import Approach, ApproachRecord, Company, SourceRecord
from tests.integration.conftest import (
    AARHUS,
    AARHUS_EXPORT,
    CRM,
    HERNING,
    HERNING_EXPORT,
    REVERSED_COLUMNS,
    VEU_OEST,
    VEU_VEST,
    outcome,
    sample_items,
    snapshot,
    sync,
    write_drop,
)

pytestmark = pytest.mark.integration

LATER = "2026-11-02T08:00:00Z"
SOLO_CONTACT = "veu-4697966"  # Poulsen Robotteknik, 4 November 2025, VEU-center Vestjylland only
JOINT_APPOINTMENT = "4c6e538b-92b5-283d-33ce-8e013a01bc9c"  # with veu-4253254 (VEU Østjylland)
JOINT_CONTACT = "veu-4253254"
JOINT_VISIT_SOURCES = [CRM, VEU_OEST]
SOLO_APPOINTMENT = "16a52f2d-f540-facd-6451-af0ba5ff36eb"  # Nordisk Stål IVS, væksthus only


def _replace(fake, key: str, item_id: str, **changes) -> None:
    """Let the fake source deliver item ``item_id`` again with ``changes``."""
    for index, item in enumerate(fake.records):
        if item[key] == item_id:
            fake.records[index] = item | changes
            return
    raise AssertionError(f"no item {item_id}")


def _record(engine, external_id: str) -> SourceRecord:
    with Session(engine) as session:
        return session.scalars(
            select(SourceRecord).where(SourceRecord.external_id == external_id)
        ).one()


def _approach_of(engine, external_id: str) -> Approach | None:
    with Session(engine) as session:
        return session.scalars(
            select(Approach)
            .join(ApproachRecord, ApproachRecord.approach_id == Approach.id)
            .join(SourceRecord, SourceRecord.id == ApproachRecord.source_record_id)
            .where(SourceRecord.external_id == external_id)
        ).one_or_none()


# --- updates ----------------------------------------------------------------------------------


def test_a_changed_contact_is_updated_in_place_and_keeps_its_one_approach(config, engine, fakes):
    sync(config, engine, [VEU_VEST])
    before_record, before_approach = (
        _record(engine, SOLO_CONTACT),
        _approach_of(engine, SOLO_CONTACT),
    )
    approaches_before = len(snapshot(engine).approaches)
    _replace(
        fakes.veu_vest, "id", SOLO_CONTACT, purpose="Opfølgning på kursusplan", updated_at=LATER
    )

    result = sync(config, engine, [VEU_VEST])

    counts = outcome(result, VEU_VEST).counts
    assert (counts.new, counts.updated) == (0, 1)
    after_record, after_approach = _record(engine, SOLO_CONTACT), _approach_of(engine, SOLO_CONTACT)
    assert after_record.id == before_record.id
    assert after_record.content_hash != before_record.content_hash
    assert after_record.purpose == "Opfølgning på kursusplan"
    assert after_approach.id == before_approach.id
    assert after_approach.purpose == "Opfølgning på kursusplan"
    assert len(snapshot(engine).approaches) == approaches_before


def test_an_appointment_moved_to_another_day_moves_its_approach_instead_of_adding_one(
    config, engine, fakes
):
    sync(config, engine, [CRM])
    approaches_before = len(snapshot(engine).approaches)
    _replace(
        fakes.crm,
        "activityid",
        SOLO_APPOINTMENT,
        scheduledstart="2025-10-02T09:00:00+02:00",
        modifiedon=LATER,
    )

    result = sync(config, engine, [CRM])

    assert outcome(result, CRM).counts.updated == 1
    assert _approach_of(engine, SOLO_APPOINTMENT).date == dt.date(2025, 10, 2)
    assert len(snapshot(engine).approaches) == approaches_before


def test_a_contact_corrected_to_another_company_moves_its_approach_there(config, engine, fakes):
    sync(config, engine, [VEU_VEST])
    approaches_before = len(snapshot(engine).approaches)
    company = {"cvr": "66978001", "name": "Skjern Å Trævarer A/S", "postcode": "6900"}
    _replace(fakes.veu_vest, "id", SOLO_CONTACT, company=company, updated_at=LATER)

    sync(config, engine, [VEU_VEST])

    state = snapshot(engine)
    assert state.links[VEU_VEST, SOLO_CONTACT] == "66978001"
    assert state.approach_of((VEU_VEST, SOLO_CONTACT)) == (
        frozenset({(VEU_VEST, SOLO_CONTACT)}),
        ("VEU-center Vestjylland",),
    )
    assert len(state.approaches) == approaches_before
    assert _approach_of(engine, SOLO_CONTACT).company_id == _record(engine, SOLO_CONTACT).company_id


def test_a_delta_export_updates_the_rows_it_names_and_leaves_the_others(
    config, engine, jobcenter_exports
):
    sync(config, engine, [AARHUS])
    changed = AARHUS_EXPORT[1] | {"Formål": "Praktikpladser og lærlinge"}
    write_drop(
        jobcenter_exports[AARHUS],
        "virksomhedskontakter_20261101.csv",
        [AARHUS_EXPORT[0], changed],
        columns=REVERSED_COLUMNS,
    )

    result = sync(config, engine, [AARHUS])

    counts = outcome(result, AARHUS).counts
    assert (counts.fetched, counts.new, counts.updated, counts.unchanged) == (2, 0, 1, 1)
    assert _record(engine, "A-1002").purpose == "Praktikpladser og lærlinge"
    assert _record(engine, "A-1003").purpose == "Fastholdelse"


# --- cancellations and deletions --------------------------------------------------------------


def test_a_cancelled_appointment_leaves_its_joint_visit_to_the_partner(config, engine, fakes):
    sync(config, engine, JOINT_VISIT_SOURCES)
    _replace(fakes.crm, "activityid", JOINT_APPOINTMENT, statecode=2, modifiedon=LATER)

    result = sync(config, engine, JOINT_VISIT_SOURCES)

    assert outcome(result, CRM).counts.removed == 1
    approach = snapshot(engine).approach_of((VEU_OEST, JOINT_CONTACT))
    assert approach == (frozenset({(VEU_OEST, JOINT_CONTACT)}), ("VEU-center Østjylland",))
    assert snapshot(engine).status_of(CRM, JOINT_APPOINTMENT) == "cancelled"


def test_a_cancelled_appointment_of_its_own_removes_its_approach(config, engine, fakes):
    sync(config, engine, [CRM])
    approaches_before = len(snapshot(engine).approaches)
    _replace(fakes.crm, "activityid", SOLO_APPOINTMENT, statecode=2, modifiedon=LATER)

    sync(config, engine, [CRM])

    state = snapshot(engine)
    assert state.approach_of((CRM, SOLO_APPOINTMENT)) is None
    assert len(state.approaches) == approaches_before - 1


def test_a_row_annulled_in_a_delta_export_removes_its_approach(config, engine, jobcenter_exports):
    sync(config, engine, [AARHUS])
    approaches_before = len(snapshot(engine).approaches)
    write_drop(
        jobcenter_exports[AARHUS],
        "virksomhedskontakter_20261101.csv",
        [AARHUS_EXPORT[2] | {"Status": "Annulleret"}],
    )

    result = sync(config, engine, [AARHUS])

    assert outcome(result, AARHUS).counts.removed == 1
    state = snapshot(engine)
    assert state.status_of(AARHUS, "A-1003") == "cancelled"
    assert state.approach_of((AARHUS, "A-1003")) is None
    assert len(state.approaches) == approaches_before - 1


def test_a_deleted_contact_leaves_its_joint_visit_to_the_partner(config, engine, fakes):
    sync(config, engine, JOINT_VISIT_SOURCES)
    _replace(fakes.veu_oest, "id", JOINT_CONTACT, deleted=True, updated_at=LATER)

    result = sync(config, engine, JOINT_VISIT_SOURCES)

    assert outcome(result, VEU_OEST).counts.removed == 1
    state = snapshot(engine)
    assert state.status_of(VEU_OEST, JOINT_CONTACT) == "deleted"
    assert state.approach_of((CRM, JOINT_APPOINTMENT)) == (
        frozenset({(CRM, JOINT_APPOINTMENT)}),
        ("Væksthus Midtjylland",),
    )


def test_a_deletion_that_carries_nothing_but_its_id_adds_no_company(config, engine, fakes):
    sync(config, engine, [VEU_VEST])
    with Session(engine) as session:
        companies_before = set(session.scalars(select(Company.id)))
    fakes.veu_vest.records = [
        item
        if item["id"] != SOLO_CONTACT
        else {"id": SOLO_CONTACT, "updated_at": LATER, "deleted": True}
        for item in sample_items(VEU_VEST)
    ]

    sync(config, engine, [VEU_VEST])

    with Session(engine) as session:
        assert set(session.scalars(select(Company.id))) == companies_before
    assert snapshot(engine).approach_of((VEU_VEST, SOLO_CONTACT)) is None


def test_a_deletion_of_a_contact_never_stored_stores_nothing(config, engine, fakes):
    fakes.veu_vest.records.append({"id": "never-seen", "updated_at": LATER, "deleted": True})

    result = sync(config, engine, [VEU_VEST])

    assert "never-seen" not in snapshot(engine).records_of(VEU_VEST)
    assert outcome(result, VEU_VEST).counts.new == 20


# --- files dropped again ----------------------------------------------------------------------


def test_an_export_dropped_again_under_another_name_is_skipped(config, engine, jobcenter_exports):
    sync(config, engine, [HERNING])
    before = snapshot(engine)
    herning = jobcenter_exports[HERNING]
    original = (herning / "virksomhedskontakter_20261001.csv").read_bytes()
    (herning / "virksomhedskontakter_20261001_kopi.csv").write_bytes(original)

    result = sync(config, engine, [HERNING])

    assert outcome(result, HERNING).counts.fetched == 0
    assert snapshot(engine) == before


def test_the_same_rows_exported_again_in_another_encoding_change_nothing(
    config, engine, jobcenter_exports
):
    sync(config, engine, [HERNING])
    before = snapshot(engine)
    write_drop(
        jobcenter_exports[HERNING],
        "virksomhedskontakter_20261101.csv",
        HERNING_EXPORT,  # first delivered in Windows-1252
        encoding="utf-8",
        bom=True,
    )

    result = sync(config, engine, [HERNING])

    counts = outcome(result, HERNING).counts
    assert (counts.fetched, counts.new, counts.updated, counts.unchanged) == (2, 0, 0, 2)
    assert snapshot(engine) == before
