"""The content hash is what tells a changed record from a re-delivered one: it must stay the
hash every stored record already carries, however it is computed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import pytest

from connectors.base import CompanyRef, NeedRef, PersonRef, SourceRecordData, plain
from coordination.ingest import content_hash, storable


def hash_as_first_stored(record: SourceRecordData) -> str:
    """The content hash as the sync first stored it (``plain`` per field, ``asdict`` inside)."""
    data = {
        f.name: plain(getattr(record, f.name))
        for f in dataclasses.fields(record)
        if f.name not in ("raw", "modified_at")
    }
    encoded = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


FULL = SourceRecordData(
    source_id="A-17",
    approach_date=dt.date(2026, 10, 20),
    status="completed",
    company=CompanyRef(
        name="Skjern Å Trævarer A/S",
        cvr="66978001",
        p_number="1012345678",
        address="Ådalen 9",
        postcode="6900",
        city="Skjern",
    ),
    channel="visit",
    purpose="Kompetenceafklaring",
    contact_person=PersonRef("Ærling Højgaard", "aerling@skjern-tra.dk", "+45 12 34 56 78"),
    consultant=PersonRef("Sofie Lund", "sofie.lund@veu-vest.dk"),
    needs=(NeedRef("upskilling", "Truckcertifikat"), NeedRef("recruitment", "Smed", "7212")),
    joint_with=("Jobcenter Herning", "VEU-center Vestjylland"),
    notes="Ring igen i januar",
    modified_at=dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC),
    raw={"id": "A-17", "nested": {"list": [1, 2.5, None, {"ø": "å"}]}},
)


@pytest.mark.parametrize(
    "record",
    [
        FULL,
        dataclasses.replace(FULL, contact_person=None, consultant=None, needs=(), joint_with=()),
        dataclasses.replace(FULL, company=CompanyRef(name=None), channel=None, notes="\x00"),
        SourceRecordData("D-1", dt.date(2026, 1, 1), "deleted", CompanyRef(None)),
    ],
)
def test_the_content_hash_is_the_one_stored_records_carry(record):
    assert content_hash(record) == hash_as_first_stored(record)


def test_the_content_hash_ignores_the_raw_item_and_the_change_time_only():
    assert content_hash(dataclasses.replace(FULL, raw={}, modified_at=None)) == content_hash(FULL)
    assert content_hash(dataclasses.replace(FULL, purpose="Rekruttering")) != content_hash(FULL)


class Text(str):
    pass


def test_storable_drops_nul_characters_and_keeps_non_finite_numbers_as_text():
    value = {
        "a\x00": ["x\x00y", 1, True, None, float("nan"), float("inf"), 2.5],
        "b": ("t", {"c": Text("u\x00v")}),
    }
    assert storable(value) == {
        "a": ["xy", 1, True, None, "nan", "inf", 2.5],
        "b": ["t", {"c": "uv"}],
    }


def test_the_stored_payload_is_the_redacted_payload_made_storable():
    from coordination.ingest import _stored_payload
    from coordination.redaction import MARKER, redact_mapping

    payload = {
        "raw": {
            "Note\x00": "Borger 0101901234\x00 deltog",
            "PNummer": " 1012341234 ",
            "rows": [{"CVR": "1012341234", "tekst": "1012341234"}, "0101901234", 3, None],
            "pair": ("0101901234", Text("x\x00y"), float("nan")),
            "score": float("-inf"),
            "ja": True,
        },
        "contact_person": {"name": "Åse", "email": None, "phone": "0101901234"},
    }
    stored = _stored_payload(payload)
    assert stored == storable(redact_mapping(payload))
    assert stored["raw"]["Note"] == f"Borger {MARKER} deltog"
    assert stored["raw"]["rows"][0] == {"CVR": "1012341234", "tekst": MARKER}
    assert stored["contact_person"]["phone"] == "0101901234"  # a phone field keeps its number


def test_a_cpr_split_by_a_nul_character_does_not_become_whole_when_stored():
    from coordination.ingest import _stored_payload
    from coordination.redaction import MARKER

    stored = _stored_payload({"raw": {"Note": "Borger 010190\x00-1234 deltog"}})
    assert stored["raw"]["Note"] == f"Borger {MARKER} deltog"
