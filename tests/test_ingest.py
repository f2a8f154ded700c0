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


# Payloads the quick check must hand to the walk (it redacts or cleans something in each), and
# payloads it may store as they are (the walk leaves them unchanged); both lists are checked
# against the walk itself.
NEEDS_THE_WALK = [
    {"Note": "Borger 010190-1234 deltog"},
    {"Note": "Borger 010190\u20131234 deltog"},  # en dash: JSON must not escape it
    {"Note": "Borger 010190 1234 deltog"},
    {"Note": "\x010101901234"},  # a control character next to the number (an escape in JSON)
    {"Note": "Borger 010190\x00-1234 deltog"},
    {"Note": "CPR-nr.: 3213991234"},  # labelled, impossible date
    {"Note": "personnummer\n\n\n\n\n\n\n\n\n\n\t\t\t\t\t\t\t\t\t 3213991234"},
    {"rows": [{"tekst": "0101901234"}]},
    {"Note\x00": "x"},
    {"score": float("nan")},
    {"pair": ("0101901234", "x")},
]
STORED_AS_THEY_ARE = [
    {"PNummer": "1590186060", "Note": "Ring på tlf. 99 88 77 66"},  # 15/90/18: no birth date
    {"Note": 'Møde om ÆØÅ og "citater" og \\stier\\', "tal": [1, 2.5, None, True]},
    {"Note": "3213991234 og 9999999999"},  # CPR-shaped, but no birth date and no label
    {"Note": "\n\t ingen numre", "id": 12345678901},
]


@pytest.mark.parametrize("raw", NEEDS_THE_WALK + STORED_AS_THEY_ARE)
def test_the_stored_payload_and_its_json_are_what_the_walk_makes(raw):
    from coordination.ingest import _stored_payload, _stored_payload_json

    payload = {"raw": raw, "contact_person": None}
    stored, text = _stored_payload_json(payload)
    expected = _stored_payload(payload)
    assert stored == expected
    assert json.loads(text) == json.loads(json.dumps(expected))


@pytest.mark.parametrize("raw", NEEDS_THE_WALK)
def test_a_payload_with_anything_to_redact_or_clean_takes_the_walk(raw):
    from coordination.ingest import _stored_payload_json

    payload = {"raw": raw, "contact_person": None}
    assert _stored_payload_json(payload)[0] is not payload


@pytest.mark.parametrize("raw", STORED_AS_THEY_ARE)
def test_a_payload_with_nothing_to_redact_is_stored_as_it_is(raw):
    from coordination.ingest import _stored_payload_json

    payload = {"raw": raw, "contact_person": None}
    assert _stored_payload_json(payload)[0] is payload


def test_the_cpr_in_a_stored_payload_is_gone_from_its_json():
    from coordination.ingest import _stored_payload_json
    from coordination.redaction import MARKER

    for note in ("Borger 010190\u20131234 deltog", "\x010101901234", "CPR: 3213991234"):
        _, text = _stored_payload_json({"raw": {"Note": note}, "contact_person": None})
        assert MARKER in json.loads(text)["raw"]["Note"]
        assert "1234" not in text


def _veu_source(engine) -> int:
    """A stored VEU source (and its organisation) for _store; its id."""
    from coordination.db import session_scope
    from coordination.models import Organisation, Source

    with session_scope(engine) as session:
        organisation = Organisation(name="VEU Vest", name_key="veu vest", type="veu")
        session.add(organisation)
        session.flush()
        source = Source(name="veu", kind="veu_api", organisation_id=organisation.id)
        session.add(source)
        session.flush()
        return source.id


def _store(session, source_id: int, batch):
    """Both halves of storing ``batch``, without linking (new records get no company)."""
    from coordination.ingest import NeedClassifier, finish_batch, prepare_batch

    prepared = prepare_batch(session, source_id, batch)
    return finish_batch(session, prepared, NeedClassifier(), "veu_api", "veu")


def test_store_batch_writes_the_records_and_needs_as_delivered_and_redacted(engine):
    """The bulk writes (COPY on PostgreSQL, the driver's own statements on SQLite): each id
    belongs to its record, every column holds what the record said (text redacted), and a
    second delivery of the same batch changes nothing."""
    from sqlmodel import Session, select

    from connectors.base import Batch
    from coordination.db import session_scope
    from coordination.models import Need, SourceRecord
    from coordination.redaction import MARKER

    source_id = _veu_source(engine)
    records = [
        dataclasses.replace(
            FULL,
            source_id=f"A-{number}",
            notes=f"Borger 010190\u20131234 nr. {number}" if number % 2 else f"Note {number}",
            needs=FULL.needs[: number % 3],
            raw={"id": f"A-{number}", "Note": "CPR 0101901234" if number == 3 else "ø"},
        )
        for number in range(7)
    ]
    batch = Batch(records=records, rejected=[], state={})
    with session_scope(engine) as session:
        stored = _store(session, source_id, batch)
    assert stored.counts.new == 7
    with Session(engine) as session:
        rows = {r.id: r for r in session.exec(select(SourceRecord))}
        needs = session.exec(select(Need)).all()
    assert sorted(rows) == sorted(stored.changed_record_ids)
    by_external = {row.external_id: row for row in rows.values()}
    assert [by_external[r.source_id].id for r in records] == stored.changed_record_ids
    for number, record in enumerate(records):
        row = by_external[record.source_id]
        assert row.content_hash == content_hash(record)
        assert row.approach_date == record.approach_date
        assert row.modified_at == record.modified_at
        assert row.company_name == record.company.name
        assert row.joint_with == list(record.joint_with)
        assert row.cvr == "66978001"
        assert row.notes == (f"Borger {MARKER} nr. {number}" if number % 2 else f"Note {number}")
        assert row.payload["raw"] == (
            {"id": record.source_id, "Note": f"CPR {MARKER}"} if number == 3 else record.raw
        )
        assert row.payload["contact_person"]["name"] == "Ærling Højgaard"
        assert sorted((n.type, n.label, n.code) for n in needs if n.source_record_id == row.id) == (
            sorted((n.type, n.label, n.code) for n in record.needs)
        )
    with session_scope(engine) as session:
        again = _store(session, source_id, batch)
    assert (again.counts.new, again.counts.updated, again.counts.unchanged) == (0, 0, 7)


def test_a_changed_record_gets_its_new_needs_in_place_of_the_old_ones(engine):
    """A batch with a changed and a new record: the changed one's stored needs are replaced
    (none left over, none twice), the new one gets its own, and a record the batch leaves
    unchanged keeps its needs."""
    from sqlmodel import Session, select

    from connectors.base import Batch
    from coordination.db import session_scope
    from coordination.models import Need, SourceRecord

    source_id = _veu_source(engine)
    kept = dataclasses.replace(FULL, source_id="K-1")
    first = dataclasses.replace(FULL, source_id="C-1")
    changed = dataclasses.replace(first, needs=(NeedRef("upskilling", "Svejsning"),))
    fresh = dataclasses.replace(FULL, source_id="N-1", needs=(NeedRef("recruitment", "Kok"),))

    def store(*records):
        batch = Batch(records=list(records), rejected=[], state={})
        with session_scope(engine) as session:
            return _store(session, source_id, batch)

    store(kept, first)
    counts = store(kept, changed, fresh).counts
    assert (counts.new, counts.updated, counts.unchanged) == (1, 1, 1)
    with Session(engine) as session:
        query = select(SourceRecord.external_id, Need.type, Need.label).join(
            Need, Need.source_record_id == SourceRecord.id
        )
        needs = sorted(session.exec(query).all())
    assert needs == sorted(
        [("C-1", "upskilling", "Svejsning"), ("N-1", "recruitment", "Kok")]
        + [("K-1", n.type, n.label) for n in FULL.needs]
    )
