"""The rest-json connector, over real HTTP against the fake VEU API."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from marshmallow import ValidationError

from connectors.base import (
    CompanyRef,
    FatalError,
    NeedRef,
    PersonRef,
    RetriableError,
    SourceRecordData,
    SourceSettings,
)
from connectors.rest_json import RestJsonConnector, RestJsonOptions
from coordination.config import parse_config
from coordination.demo.fakes import FakeVeuApi
from tests.connectors.conftest import SAMPLES, Sleeps, contact


def connector(fake: FakeVeuApi, sleeps: Sleeps, **options: Any) -> RestJsonConnector:
    settings = SourceSettings(
        name="veu-test",
        options={"base_url": fake.base_url, "api_key_env": "VEU_KEY", **options},
        secrets={"api_key": "demo-key"},
    )
    return RestJsonConnector(settings, sleep=sleeps)


def contacts(*hours: int) -> list[dict[str, Any]]:
    """Contacts c-<h> updated <h> hours after 2025-10-01 00:00 UTC, in the order given."""
    start = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
    return [
        contact(f"c-{h}", updated_at=(start + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        for h in hours
    ]


def read_all(conn: RestJsonConnector, state: dict[str, Any] | None = None):
    batches = list(conn.read(state))
    records = [r for b in batches for r in b.records]
    rejected = [r for b in batches for r in b.rejected]
    return batches, records, rejected


# --- paging and state -------------------------------------------------------------------------


def test_follows_next_cursor_one_batch_per_page(veu, sleeps):
    veu.records = contacts(1, 2, 3, 4, 5)
    batches, records, _ = read_all(connector(veu, sleeps, page_size=2))
    assert [len(b.records) for b in batches] == [2, 2, 1]
    assert [b.fetched for b in batches] == [2, 2, 1]
    assert [r.source_id for r in records] == ["c-1", "c-2", "c-3", "c-4", "c-5"]
    first, second = veu.requests[:2]
    assert first.args == {"updated_since": "1970-01-01T00:00:00Z", "limit": "2"}
    assert second.args["cursor"]
    assert {r.headers["X-Api-Key"] for r in veu.requests} == {"demo-key"}


def test_only_the_last_batch_moves_the_cursor_because_items_are_unordered(veu, sleeps):
    # The newest item comes first: saving its time after page one and then failing on page two
    # would make the next run skip c-1 and c-2 for good.
    veu.records = contacts(9, 1, 2)
    previous = {"updated_at": "2025-09-01T00:00:00Z"}
    batches, _, _ = read_all(connector(veu, sleeps, page_size=1), previous)
    assert [b.state for b in batches] == [
        previous,
        previous,
        {"updated_at": "2025-10-01T09:00:00Z"},
    ]


def test_first_run_intermediate_batches_carry_an_empty_state(veu, sleeps):
    veu.records = contacts(2, 1)
    batches, _, _ = read_all(connector(veu, sleeps, page_size=1))
    assert [b.state for b in batches] == [{}, {"updated_at": "2025-10-01T02:00:00Z"}]


def test_incremental_run_reads_only_newer_records_plus_overlap(veu, sleeps):
    veu.records = contacts(1, 5, 3)
    conn = connector(veu, sleeps, cursor_overlap_seconds=7200)
    first, _, _ = read_all(conn)
    assert first[-1].state == {"updated_at": "2025-10-01T05:00:00Z"}
    veu.records += contacts(8)

    batches, records, _ = read_all(conn, first[-1].state)

    assert veu.requests[-1].args["updated_since"] == "2025-10-01T03:00:00Z"
    assert sorted(r.source_id for r in records) == ["c-3", "c-5", "c-8"]  # c-3, c-5: overlap
    assert batches[-1].state == {"updated_at": "2025-10-01T08:00:00Z"}


def test_state_never_moves_past_the_run_start(veu, sleeps):
    veu.records = [contact("future", updated_at="2099-01-01T00:00:00Z")]
    before = dt.datetime.now(dt.UTC)
    batches, _, _ = read_all(connector(veu, sleeps))
    saved = dt.datetime.fromisoformat(batches[-1].state["updated_at"])
    assert before <= saved <= dt.datetime.now(dt.UTC)


def test_no_changes_keeps_the_previous_state(veu, sleeps):
    state = {"updated_at": "2025-10-01T00:00:00Z"}
    batches, records, _ = read_all(connector(veu, sleeps), state)
    assert records == []
    assert [b.state for b in batches] == [state]


def test_unreadable_saved_state_is_fatal(veu, sleeps):
    with pytest.raises(FatalError, match="state"):
        read_all(connector(veu, sleeps), {"updated_at": "yesterday"})


# --- faults -----------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(veu, sleeps):
    veu.records = contacts(1)
    veu.faults = [("429", 3)]
    _, records, _ = read_all(connector(veu, sleeps))
    assert len(records) == 1
    assert sleeps == [3.0]


def test_429_on_a_later_page_loses_nothing(veu, sleeps):
    veu.records = contacts(1, 2, 3)
    conn = connector(veu, sleeps, page_size=1)
    batches = conn.read(None)
    first = next(batches)
    veu.faults = [("429", 1), ("429", 1)]
    rest = list(batches)
    assert [r.source_id for b in [first, *rest] for r in b.records] == ["c-1", "c-2", "c-3"]
    assert sleeps == [1.0, 1.0]


def test_a_500_is_retried_and_recovers(veu, sleeps):
    veu.records = contacts(1)
    veu.faults = [("500", None)]
    _, records, _ = read_all(connector(veu, sleeps))
    assert len(records) == 1
    assert sleeps == [1.0]


def test_429_beyond_the_retries_is_retriable(veu, sleeps):
    veu.faults = [("429", 1)] * 5
    with pytest.raises(RetriableError, match="HTTP 429"):
        read_all(connector(veu, sleeps))
    assert veu.request_count == 5  # the first attempt and the default 4 retries
    assert sleeps == [1.0] * 4


def test_a_slow_answer_times_out_and_the_retry_succeeds(veu, sleeps):
    veu.records = contacts(1)
    veu.faults = [("sleep", 2.0)]
    _, records, _ = read_all(connector(veu, sleeps, timeout_seconds=0.2))
    assert len(records) == 1
    assert veu.request_count == 2


def test_timeouts_beyond_the_retries_are_retriable(veu, sleeps):
    veu.faults = [("sleep", 2.0)] * 2
    started = time.monotonic()
    with pytest.raises(RetriableError, match="Timeout"):
        read_all(connector(veu, sleeps, timeout_seconds=0.1, max_retries=1))
    assert time.monotonic() - started < 2.0


def test_a_wrong_api_key_is_fatal_without_retries(sleeps):
    with FakeVeuApi(contacts(1), api_key="another-key") as veu:
        with pytest.raises(FatalError, match="401") as raised:
            read_all(connector(veu, sleeps))
        assert not isinstance(raised.value, RetriableError)
        assert veu.request_count == 1
        assert sleeps == []


def test_a_client_error_is_fatal_with_an_excerpt_of_the_answer(veu, sleeps):
    veu.faults = [("400", None)]
    with pytest.raises(FatalError, match="HTTP 400: .*scripted fault 400"):
        read_all(connector(veu, sleeps))


def test_an_answer_without_items_is_fatal(veu, sleeps):
    veu.faults = [("garbage", None)]
    with pytest.raises(FatalError, match="not JSON"):
        read_all(connector(veu, sleeps))


# --- mapping ----------------------------------------------------------------------------------


def test_maps_every_field_of_a_contact(veu, sleeps):
    veu.records = [contact("veu-1")]
    _, [record], _ = read_all(connector(veu, sleeps))
    assert record == SourceRecordData(
        source_id="veu-1",
        approach_date=dt.date(2025, 10, 16),
        status="completed",
        company=CompanyRef(
            name="Østjysk Robotteknik ApS",
            cvr="53282067",
            address="Søgaardvej 56",
            postcode="8680",
            city="Ry",
        ),
        channel="visit",
        purpose="Virksomhedspraktik",
        contact_person=PersonRef("Bjørn Kristensen", "bjoern@oestjysk.dk", "916"),
        consultant=PersonRef("Jørgen Møller", "joergen@veu.dk"),
        needs=(NeedRef(type="upskilling", label="CNC-bearbejdning", code="AMU-CNC"),),
        joint_with=("Væksthus Midtjylland",),
        notes="Ring igen efter sommerferien.",
        modified_at=dt.datetime(2025, 10, 19, 16, tzinfo=dt.UTC),
    )
    assert record.raw == contact("veu-1")


def test_danish_letters_arrive_unchanged(veu, sleeps):
    text = "Æbleøen Å/S: Ærø, Østerå, Ålborg — æøå ÆØÅ"
    veu.records = [contact("veu-1", purpose=text, notes=text)]
    _, [record], _ = read_all(connector(veu, sleeps))
    assert record.purpose == record.notes == text


def test_a_need_without_label_is_labelled_by_its_code(veu, sleeps):
    veu.records = [contact(needs=[{"type": "recruitment", "code": "7212", "label": None}])]
    _, [record], _ = read_all(connector(veu, sleeps))
    assert record.needs == (NeedRef(type="recruitment", label="7212", code="7212"),)


def test_a_deleted_contact_with_nothing_but_its_id_becomes_a_deletion(veu, sleeps):
    veu.records = [{"id": "veu-9", "updated_at": "2025-11-01T10:00:00Z", "deleted": True}]
    _, [record], rejected = read_all(connector(veu, sleeps))
    assert rejected == []
    assert record.status == "deleted"
    assert record.company == CompanyRef(name=None)
    assert record.approach_date == dt.date(1970, 1, 1)
    assert record.modified_at == dt.datetime(2025, 11, 1, 10, tzinfo=dt.UTC)


def test_a_deleted_contact_keeps_its_date_when_it_has_one(veu, sleeps):
    veu.records = [contact("veu-1", deleted=True, company=None, channel="fax")]
    _, [record], rejected = read_all(connector(veu, sleeps))
    assert rejected == []
    assert (record.status, record.approach_date) == ("deleted", dt.date(2025, 10, 16))


def test_bad_items_are_quarantined_and_good_ones_in_the_same_page_kept(veu, sleeps):
    bad = {
        "bad-date": contact("bad-date", date="2026-13-40"),
        "date-form": contact("date-form", date="16-10-2025"),
        "no-date": contact("no-date", date=None),
        "no-company": contact("no-company", company=None),
        "company-list": contact("company-list", company=["Madsen"]),
        "no-company-id": contact("no-company-id", company={"name": None, "cvr": None}),
        "fax": contact("fax", channel="fax"),
        "need-type": contact("need-type", needs=[{"type": "dreams", "label": "x"}]),
        "needs-text": contact("needs-text", needs="CNC"),
        "joint-number": contact("joint-number", joint_with=[42]),
        "deleted-yes": contact("deleted-yes", deleted="yes"),
        "no-updated": contact("no-updated", updated_at=None),
    }
    veu.records = [contact("good-1"), *bad.values(), contact("good-2")]

    batches, records, rejected = read_all(connector(veu, sleeps))

    assert len(batches) == 1
    assert [r.source_id for r in records] == ["good-1", "good-2"]
    reasons = {r.source_id: r.reason for r in rejected}
    assert set(reasons) == set(bad)
    assert "date: not a valid date: '2026-13-40'" in reasons["bad-date"]
    assert "not in YYYY-MM-DD form" in reasons["date-form"]
    assert "date is missing" in reasons["no-date"]
    assert "company is missing" in reasons["no-company"]
    assert "company: expected an object, got an array" in reasons["company-list"]
    assert "neither company name nor CVR" in reasons["no-company-id"]
    assert reasons["fax"].startswith("channel: Must be one of")
    assert reasons["need-type"].startswith("needs.0.type: Must be one of")
    assert "needs: expected an array, got a string" in reasons["needs-text"]
    assert "joint_with[0]: expected a string, got a number" in reasons["joint-number"]
    assert "deleted: expected true or false" in reasons["deleted-yes"]
    assert "updated_at is missing" in reasons["no-updated"]
    assert all(r.raw == bad[r.source_id] for r in rejected)


def test_renamed_fields_are_read_from_their_configured_names(veu, sleeps):
    item = contact("veu-1")
    item["kanal"] = item.pop("channel")
    item["company"]["cvr_nr"] = item["company"].pop("cvr")
    veu.records = [item]
    conn = connector(veu, sleeps, field_names={"channel": "kanal", "company.cvr": "cvr_nr"})
    _, [record], _ = read_all(conn)
    assert (record.channel, record.company.cvr) == ("visit", "53282067")


def test_the_sample_delivery_reads_completely_with_its_one_bad_record(sleeps):
    with FakeVeuApi.from_file(SAMPLES / "veu-oestjylland" / "records.json") as veu:
        batches, records, rejected = read_all(connector(veu, sleeps, page_size=5))
        delivered = len(veu.records)
    assert len(batches) == 3
    assert len(records) + len(rejected) == delivered == 14
    [bad] = rejected
    assert bad.source_id == "veu-bad-1"
    assert "2026-13-40" in bad.reason
    # The bad record (updated 2026-05-01) comes last, after newer ones: the cursor is the
    # largest updated_at of all items, not that of the last one.
    assert batches[-1].state == {"updated_at": "2026-07-07T16:00:00Z"}
    assert any(r.company.name == "Rasmussen Møbler I/S" for r in records)


# --- options ----------------------------------------------------------------------------------

VALID_OPTIONS = {"base_url": "http://veu.local:9000", "api_key_env": "VEU_KEY"}


def test_options_have_the_documented_defaults():
    options = RestJsonOptions().load(VALID_OPTIONS)
    assert options["page_size"] == 500
    assert options["cursor_overlap_seconds"] == 300
    assert (options["connect_timeout_seconds"], options["timeout_seconds"]) == (5.0, 30.0)
    assert options["field_names"] == {}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"base_url": "veu.local"}, "base_url"),
        ({"api_key_env": ""}, "api_key_env"),
        ({"limit": 10}, "limit"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"field_names": {"chanel": "kanal"}}, "field_names"),
    ],
)
def test_bad_options_are_rejected_naming_the_key(change, key):
    with pytest.raises(ValidationError) as raised:
        RestJsonOptions().load({**VALID_OPTIONS, **change})
    assert key in raised.value.messages


def test_the_config_loader_resolves_the_api_key_from_the_environment():
    source = {
        "name": "veu-oestjylland",
        "kind": "rest-json",
        "organisation": "VEU-center Østjylland",
        "organisation_type": "veu",
        **VALID_OPTIONS,
    }
    registry = {"rest-json": RestJsonConnector}
    config = parse_config({"sources": [source]}, {"VEU_KEY": "k3y"}, registry)
    conn = config.sources[0].build_connector(registry)
    assert conn.secrets == {"api_key": "k3y"}
