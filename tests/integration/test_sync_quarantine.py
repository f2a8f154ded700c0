"""Records that cannot be understood are quarantined with a readable reason and counted; the
valid records of the same delivery are stored; a later delivery that corrects a record
releases it from quarantine."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlmodel import Session

from coordination.models import QuarantinedRecord, SourceRecord
from tests.integration.conftest import (
    AARHUS,
    CRM,
    VEU_VEST,
    crm_appointment,
    outcome,
    run_sources,
    snapshot,
    sync,
    veu_contact,
    write_drop,
)

pytestmark = pytest.mark.integration

NAMELESS_COMPANY = {"cvr": None, "p_number": None, "name": None, "postcode": "6900", "city": None}


def _reasons(engine, source: str) -> dict[str, str]:
    return {key: reason for name, key, reason in snapshot(engine).quarantine if name == source}


def _quarantined(engine, record_key: str) -> QuarantinedRecord:
    with Session(engine) as session:
        return session.scalars(
            select(QuarantinedRecord).where(QuarantinedRecord.record_key == record_key)
        ).one()


# --- bad records in each kind of delivery -----------------------------------------------------


def test_bad_contacts_from_the_veu_api_are_quarantined_and_the_rest_of_the_page_stored(
    config, engine, fakes
):
    fakes.veu_vest.records += [
        veu_contact("bad-date", date="2026-02-30"),
        veu_contact("no-company", company=NAMELESS_COMPANY),
        veu_contact("cvr-number", company=veu_contact("x")["company"] | {"cvr": 66978001}),
        veu_contact("joint-text", joint_with="Væksthus Midtjylland"),
        veu_contact("good-one"),
    ]

    result = sync(config, engine, [VEU_VEST])

    counts = outcome(result, VEU_VEST).counts
    assert (counts.fetched, counts.new, counts.quarantined) == (25, 21, 4)
    assert run_sources(engine, result.run_id)[VEU_VEST].quarantined == 4
    reasons = _reasons(engine, VEU_VEST)
    assert (
        reasons["bad-date"]
        == "date: not a valid date: '2026-02-30' (day is out of range for month)"
    )
    assert reasons["no-company"] == "no company identification: neither company name nor CVR number"
    assert reasons["cvr-number"] == "cvr: expected a string, got a number (66978001)"
    assert reasons["joint-text"] == "joint_with: expected an array, got a string"
    assert "good-one" in snapshot(engine).records_of(VEU_VEST)


def test_bad_appointments_from_the_crm_are_quarantined_and_the_rest_stored(config, engine, fakes):
    fakes.crm.records += [
        crm_appointment("state-as-text", statecode="1"),
        crm_appointment("no-offset", scheduledstart="2026-10-21T10:00:00"),
        crm_appointment("account-as-text", regardingobjectid_account="Skjern Å Trævarer A/S"),
        crm_appointment("good-one"),
    ]

    result = sync(config, engine, [CRM])

    counts = outcome(result, CRM).counts
    assert (counts.fetched, counts.new, counts.quarantined) == (35, 32, 3)
    reasons = _reasons(engine, CRM)
    assert reasons["state-as-text"] == "statecode: unknown state '1' (expected 0, 1 or 2)"
    assert "without a UTC offset" in reasons["no-offset"]
    assert reasons["account-as-text"] == (
        "regardingobjectid_account: expected an object, got a string"
    )
    assert "good-one" in snapshot(engine).records_of(CRM)


GOOD_ROW = {
    "KontaktID": "Q-1",
    "Dato": "20-10-2026",
    "CVR": "50234045",
    "Virksomhed": "Hammel Værktøj ApS",
    "Postnr": "8450",
    "By": "Hammel",
    "Kontaktform": "Besøg",
    "MedarbejderEmail": "lise.baek@aarhus.dk",
}


def test_bad_rows_of_a_jobcenter_export_are_quarantined_and_the_good_rows_stored(
    config, engine, drops
):
    write_drop(
        drops[AARHUS],
        "virksomhedskontakter_20261020.csv",
        [
            GOOD_ROW,
            GOOD_ROW | {"KontaktID": "Q-2", "Dato": "29-02-2026"},
            GOOD_ROW | {"KontaktID": "Q-3", "Virksomhed": "", "CVR": ""},
            GOOD_ROW | {"KontaktID": "Q-4", "Kontaktform": "Brevdue"},
            GOOD_ROW | {"KontaktID": "Q-5", "Dato": "20-10-2026 25:00"},
            GOOD_ROW | {"KontaktID": "Q-6"},
        ],
    )

    result = sync(config, engine, [AARHUS])

    counts = outcome(result, AARHUS).counts
    # the shipped delta file adds one more bad row (999001)
    assert (counts.fetched, counts.new, counts.quarantined) == (7, 2, 5)
    reasons = _reasons(engine, AARHUS)
    prefix = "virksomhedskontakter_20261020.csv line"
    assert reasons["Q-2"].startswith(f"{prefix} 3: Dato '29-02-2026' is not a real date")
    assert reasons["Q-3"] == (
        f"{prefix} 4: no company identification: neither company name nor CVR number"
    )
    assert reasons["Q-4"] == f"{prefix} 5: unknown Kontaktform 'Brevdue'"
    assert reasons["Q-5"].startswith(f"{prefix} 6: Dato '20-10-2026 25:00' is not a real date")
    assert snapshot(engine).records_of(AARHUS) == {"Q-1", "Q-6"}


def test_a_quarantined_record_keeps_its_raw_content_for_the_operator(config, engine, fakes):
    fakes.veu_vest.records.append(veu_contact("bad-date", date="2026-02-30"))

    sync(config, engine, [VEU_VEST])

    entry = _quarantined(engine, "bad-date")
    assert entry.external_id == "bad-date"
    assert entry.payload["company"]["name"] == "Skjern Å Trævarer A/S"
    assert entry.resolved_at is None


# --- corrections ------------------------------------------------------------------------------


def test_a_contact_corrected_in_a_later_delivery_leaves_quarantine_and_is_stored(
    config, engine, fakes
):
    fakes.veu_vest.records.append(veu_contact("late-fix", date="2026-02-30"))
    sync(config, engine, [VEU_VEST])
    fakes.veu_vest.records[-1] = veu_contact(
        "late-fix", date="2026-02-28", updated_at="2026-11-02T08:00:00Z"
    )

    result = sync(config, engine, [VEU_VEST])

    assert outcome(result, VEU_VEST).counts.new == 1
    entry = _quarantined(engine, "late-fix")
    assert entry.resolved_at is not None
    with Session(engine) as session:
        record = session.scalars(
            select(SourceRecord).where(SourceRecord.external_id == "late-fix")
        ).one()
    assert record.approach_date == dt.date(2026, 2, 28)
    assert (VEU_VEST, "late-fix") not in {(n, k) for n, k, _ in snapshot(engine).quarantine}


def test_a_row_corrected_in_a_later_export_leaves_quarantine_and_is_stored(config, engine, drops):
    bad = GOOD_ROW | {"KontaktID": "Q-7", "Dato": "31-04-2026"}
    write_drop(drops[AARHUS], "virksomhedskontakter_20261020.csv", [bad])
    sync(config, engine, [AARHUS])
    write_drop(
        drops[AARHUS],
        "virksomhedskontakter_20261027.csv",
        [bad | {"Dato": "30-04-2026"}],
        columns=("KontaktID", "Virksomhed", "CVR", "Dato", "Kontaktform", "Postnr"),
    )

    result = sync(config, engine, [AARHUS])

    assert outcome(result, AARHUS).counts.new == 1
    assert _quarantined(engine, "Q-7").resolved_at is not None
    assert (AARHUS, "Q-7") in snapshot(engine).released
    assert "Q-7" in snapshot(engine).records_of(AARHUS)


def test_an_appointment_corrected_in_the_crm_leaves_quarantine_and_is_stored(config, engine, fakes):
    fakes.crm.records.append(crm_appointment("crm-fix", statecode=7))
    sync(config, engine, [CRM])
    fakes.crm.records[-1] = crm_appointment(
        "crm-fix", statecode=1, modifiedon="2026-11-02T08:00:00Z"
    )

    sync(config, engine, [CRM])

    assert _quarantined(engine, "crm-fix").resolved_at is not None
    assert snapshot(engine).status_of(CRM, "crm-fix") == "completed"


def test_a_record_still_bad_in_the_next_delivery_stays_quarantined_once(config, engine, fakes):
    fakes.veu_vest.records.append(veu_contact("still-bad", date="2026-02-30"))
    sync(config, engine, [VEU_VEST])
    fakes.veu_vest.records[-1] = veu_contact(
        "still-bad", date="2026-02-31", updated_at="2026-11-02T08:00:00Z"
    )

    sync(config, engine, [VEU_VEST])

    entry = _quarantined(engine, "still-bad")
    assert entry.resolved_at is None
    assert "'2026-02-31'" in entry.reason
