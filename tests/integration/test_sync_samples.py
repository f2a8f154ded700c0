"""All six sample sources synced end to end: the CRM and the two VEU APIs over real HTTP from the
fake servers, the three jobcenters from real files in drop folders, into a real database.

The deliveries here are only read, so each fixture syncs once per module and keeps what the
tests look at.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import SQLModel

from coordination.models import QuarantinedRecord, SourceRecord
from coordination.redaction import MARKER
from coordination.sync import SyncResult
from tests.integration.conftest import (
    AARHUS,
    CRM,
    HERNING,
    JOBCENTERS,
    RANDERS,
    SOURCE_NAMES,
    VEU_OEST,
    VEU_VEST,
    StoredState,
    crm_appointment,
    loaded,
    outcome,
    sample_world,
    snapshot,
    sync,
    veu_contact,
    write_drop,
    write_jobcenter_exports,
)

pytestmark = pytest.mark.integration

VAEKSTHUS = "Væksthus Midtjylland"
OEST = "VEU-center Østjylland"
VEST = "VEU-center Vestjylland"

# The joint visits of the samples: (CRM appointment, VEU source, VEU contact, the VEU centre).
JOINT_VISITS = [
    ("4c6e538b-92b5-283d-33ce-8e013a01bc9c", VEU_OEST, "veu-4253254", OEST),
    ("ad8feeb2-e464-34cf-958a-7bd44d80e489", VEU_VEST, "veu-3549079", VEST),
    ("5f54390b-220d-5265-8240-aa6bfec7debd", VEU_OEST, "veu-3199832", OEST),
    ("bd4d078d-f48a-96a2-fb00-75b537aabdc7", VEU_OEST, "veu-2599920", OEST),
    ("2d154857-4368-e3aa-7154-f2879c74070c", VEU_VEST, "veu-6479795", VEST),
    ("c402acbd-3259-dbbb-e108-36f73a6d9f42", VEU_OEST, "veu-2633899", OEST),
    ("78f39717-02a3-9920-739b-9b288912b4f1", VEU_OEST, "veu-6589911", OEST),
    ("44543317-eb18-ca67-f99d-590614a439fe", VEU_VEST, "veu-6856392", VEST),
    ("ea065578-3331-b9e9-e7bf-5e68375cd1fc", VEU_VEST, "veu-7683072", VEST),
]
CANCELLED_APPOINTMENT = "1d5aa9ab-92a5-a24e-fb2e-8c3d50d3a4fd"


@dataclasses.dataclass
class Synced:
    result: SyncResult
    state: StoredState
    records: dict[str, SourceRecord] = dataclasses.field(default_factory=dict)
    quarantined: dict[str, QuarantinedRecord] = dataclasses.field(default_factory=dict)
    texts: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)


@pytest.fixture(scope="module")
def samples(_migrated_url, tmp_path_factory) -> Synced:
    """The shipped sample deliveries, exactly as shipped, synced once."""
    with sample_world(_migrated_url, tmp_path_factory.mktemp("samples")) as world:
        result = sync(world.config, world.engine)
        return Synced(result, snapshot(world.engine))


# --- the shipped samples ----------------------------------------------------------------------


def test_every_sample_source_succeeds_with_its_records_stored_and_bad_ones_counted(samples):
    assert samples.result.ok
    counts = {
        o.name: (o.counts.fetched, o.counts.new, o.counts.quarantined)
        for o in samples.result.outcomes
    }
    assert counts == {
        CRM: (31, 31, 0),
        AARHUS: (1, 0, 1),  # the sample exports hold one (bad) row each, Randers none
        HERNING: (1, 0, 1),
        RANDERS: (0, 0, 0),
        VEU_OEST: (14, 13, 1),
        VEU_VEST: (20, 20, 0),
    }
    assert {name: len(samples.state.records_of(name)) for name in SOURCE_NAMES} == {
        CRM: 31,
        AARHUS: 0,
        HERNING: 0,
        RANDERS: 0,
        VEU_OEST: 13,
        VEU_VEST: 20,
    }


def test_sample_records_that_cannot_be_understood_are_quarantined_with_readable_reasons(
    samples,
):
    reasons = {(source, key): reason for source, key, reason in samples.state.quarantine}

    assert set(reasons) == {(AARHUS, "999001"), (HERNING, "999002"), (VEU_OEST, "veu-bad-1")}
    assert reasons[AARHUS, "999001"] == (
        "virksomhedskontakter_20260901.csv line 2: "
        "Dato '31-02-2026' is not a real date or time (day is out of range for month)"
    )
    assert reasons[HERNING, "999002"] == (
        "virksomhedskontakter_20260901.csv line 2: "
        "no company identification: neither company name nor CVR number"
    )
    assert reasons[VEU_OEST, "veu-bad-1"] == (
        "date: not a valid date: '2026-13-40' (month must be in 1..12)"
    )


def test_sample_companies_are_one_per_valid_cvr_plus_one_per_unidentified_name(samples):
    # 29 distinct valid CVR numbers; HOLM EL-SERVICE has none, and Dahl Emballage only a
    # mistyped one (81584466 fails the modulus-11 check), so both stay unresolved by name.
    assert len(samples.state.companies) == 31
    unresolved = {key for key in samples.state.companies if key.startswith("name:")}
    assert unresolved == {"name:holm el service|7600", "name:dahl emballage|8305"}
    assert "81584466" not in samples.state.companies


def test_joint_visits_in_the_samples_become_one_approach_listing_both_organisations(samples):
    joint = {a for a in samples.state.approaches if len(a[1]) > 1}

    assert joint == {
        (frozenset({(CRM, appointment), (veu, contact)}), tuple(sorted((centre, VAEKSTHUS))))
        for appointment, veu, contact, centre in JOINT_VISITS
    }


def test_every_sample_record_that_counts_is_in_exactly_one_approach(samples):
    # 64 stored records, one of them a cancelled appointment: 63 count; 9 pairs are joint.
    members = [ref for records, _ in samples.state.approaches for ref in records]
    assert len(members) == len(set(members)) == 63
    assert len(samples.state.approaches) == 54
    assert samples.state.status_of(CRM, CANCELLED_APPOINTMENT) == "cancelled"
    assert samples.state.approach_of((CRM, CANCELLED_APPOINTMENT)) is None


# --- realistic jobcenter exports beside the samples -------------------------------------------


@pytest.fixture(scope="module")
def with_exports(_migrated_url, tmp_path_factory) -> Synced:
    """The samples plus a realistic export per jobcenter, in each encoding and column order."""
    with sample_world(_migrated_url, tmp_path_factory.mktemp("exports")) as world:
        write_jobcenter_exports(world.drops)
        result = sync(world.config, world.engine)
        wanted = SourceRecord.external_id.in_(["A-1003", "H-501", "R-301"])
        records = loaded(world.engine, select(SourceRecord).where(wanted))
        return Synced(result, snapshot(world.engine), {r.external_id: r for r in records})


def test_every_row_of_the_jobcenter_exports_is_stored_whatever_its_encoding(with_exports):
    assert {name: outcome(with_exports.result, name).counts.new for name in JOBCENTERS} == {
        AARHUS: 3,
        HERNING: 2,
        RANDERS: 2,
    }


def test_danish_text_of_the_jobcenter_exports_is_stored_unchanged(with_exports):
    records = with_exports.records

    assert records["A-1003"].company_name == "Århus Å-Bryggeri ApS"  # UTF-8 with BOM
    assert records["H-501"].company_name == "Søhøjlandets Smedie P/S"  # Windows-1252
    assert records["H-501"].purpose == "Fælles virksomhedsbesøg"
    assert records["R-301"].company_name == "Randers Rebslåeri ApS"  # columns reversed
    assert records["R-301"].consultant_email == "birthe.aagaard@randers.dk"


def test_cvr_numbers_written_with_spaces_or_dk_prefix_are_read_as_cvr_numbers(with_exports):
    assert with_exports.records["H-501"].cvr == "35294236"  # written "35 29 42 36"
    assert with_exports.records["R-301"].cvr == "83960310"  # written "DK-83960310"


def test_a_joint_visit_recorded_in_three_systems_becomes_one_approach(with_exports):
    assert with_exports.state.approach_of((HERNING, "H-501")) == (
        frozenset(
            {
                (HERNING, "H-501"),
                (VEU_VEST, "veu-3549079"),
                (CRM, "ad8feeb2-e464-34cf-958a-7bd44d80e489"),
            }
        ),
        ("Jobcenter Herning", VEST, VAEKSTHUS),
    )
    assert with_exports.state.approach_of((AARHUS, "A-1001"))[1] == (
        "Jobcenter Aarhus",
        VAEKSTHUS,
    )


def test_a_visit_keyed_in_twice_by_one_consultant_becomes_one_approach(with_exports):
    records, organisations = with_exports.state.approach_of((RANDERS, "R-301"))

    assert records == {(RANDERS, "R-301"), (RANDERS, "R-302")}
    assert organisations == ("Jobcenter Randers",)


# --- CPR numbers ------------------------------------------------------------------------------

PLANTED_CPRS = ("010190-1234", "0101901234", "010190 1234")
SAMPLE_CPRS = ("020599-0299", "260278-8754", "171074-5148")  # in the samples' notes
P_NUMBER = "1012341234"  # reads as a valid birth date (10/12/1934), but it is labelled


def _plant_cpr_numbers(world) -> None:
    world.fakes.veu_vest.records += [
        veu_contact("veu-cpr-1", notes="Talte med borger 010190-1234 om praktik."),
        # quarantined: an impossible date
        veu_contact("veu-cpr-2", date="2026-02-30", notes="Borger 0101901234 ringer tilbage."),
    ]
    world.fakes.crm.records.append(
        crm_appointment("crm-cpr-1", description="Jobsøgende 010190 1234 deltog i mødet.")
    )
    row = {
        "KontaktID": "CPR-1",
        "Dato": "20-10-2026",
        "CVR": "26616417",
        "PNummer": P_NUMBER,
        "Virksomhed": "Gjern Fjerkræ ApS",
        "Postnr": "8883",
        "By": "Gjern",
        "Kontaktform": "Besøg",
        "MedarbejderEmail": "lise.baek@aarhus.dk",
        "Note": f"borger 0101901234 i praktik, P-nr {P_NUMBER}",
    }
    bad_row = row | {"KontaktID": "CPR-2", "Dato": "32-10-2026", "Note": "borger 010190-1234"}
    write_drop(world.drops[AARHUS], "virksomhedskontakter_20261020.csv", [row, bad_row])


@pytest.fixture(scope="module")
def with_cpr_numbers(_migrated_url, tmp_path_factory) -> Synced:
    """The samples (which hold CPR numbers in notes) plus deliveries with planted ones."""
    with sample_world(_migrated_url, tmp_path_factory.mktemp("cpr")) as world:
        _plant_cpr_numbers(world)
        result = sync(world.config, world.engine)
        ids = SourceRecord.external_id.in_(["veu-cpr-1", "crm-cpr-1", "CPR-1"])
        keys = QuarantinedRecord.record_key.in_(["veu-cpr-2", "CPR-2"])
        digits = {c.replace("-", "").replace(" ", "") for c in PLANTED_CPRS + SAMPLE_CPRS}
        return Synced(
            result,
            snapshot(world.engine),
            {r.external_id: r for r in loaded(world.engine, select(SourceRecord).where(ids))},
            {q.record_key: q for q in loaded(world.engine, select(QuarantinedRecord).where(keys))},
            _texts_holding(world.engine, PLANTED_CPRS + SAMPLE_CPRS + tuple(digits)),
        )


def _texts_holding(engine, needles) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text or JSON value in the database holding a needle."""
    import coordination.models  # noqa: F401  (registers every table)

    hits = []
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in connection.execute(select(table)).mappings():
                for column, value in row.items():
                    text = _as_text(value)
                    if text and any(needle in text for needle in needles):
                        hits.append((table.name, column, text))
    return hits


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return None


def test_no_cpr_number_from_any_delivery_is_stored_in_any_column(with_cpr_numbers):
    assert with_cpr_numbers.state.records_of(VEU_VEST) >= {"veu-cpr-1"}  # the sync stored them
    assert with_cpr_numbers.texts == []


def test_stored_notes_and_payloads_keep_the_text_around_a_removed_cpr_number(with_cpr_numbers):
    records = with_cpr_numbers.records

    assert records["veu-cpr-1"].notes == f"Talte med borger {MARKER} om praktik."
    assert records["veu-cpr-1"].payload["raw"]["notes"] == f"Talte med borger {MARKER} om praktik."
    assert records["crm-cpr-1"].notes == f"Jobsøgende {MARKER} deltog i mødet."
    assert records["crm-cpr-1"].payload["raw"]["description"] == records["crm-cpr-1"].notes
    assert records["CPR-1"].notes == f"borger {MARKER} i praktik, P-nr {P_NUMBER}"


def test_quarantined_payloads_hold_no_cpr_number(with_cpr_numbers):
    quarantined = with_cpr_numbers.quarantined

    assert quarantined["veu-cpr-2"].payload["notes"] == f"Borger {MARKER} ringer tilbage."
    assert quarantined["CPR-2"].payload["Note"] == f"borger {MARKER}"


def test_a_labelled_p_number_that_looks_like_a_cpr_number_is_kept(with_cpr_numbers):
    record = with_cpr_numbers.records["CPR-1"]

    assert record.p_number == P_NUMBER
    assert record.payload["raw"]["PNummer"] == P_NUMBER
    assert record.notes.endswith(f"P-nr {P_NUMBER}")
