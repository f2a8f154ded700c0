"""The odata-crm connector, over real HTTP against the fake CRM."""

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
    Rejected,
    RetriableError,
    SourceRecordData,
    SourceSettings,
)
from connectors.odata_crm import ODataCrmConnector, ODataCrmOptions
from coordination.config import parse_config
from coordination.demo.fakes import FakeODataCrm
from tests.connectors.conftest import SAMPLES, Sleeps, appointment


def connector(fake: FakeODataCrm, sleeps: Sleeps, **options: Any) -> ODataCrmConnector:
    settings = SourceSettings(
        name="vaeksthus-test",
        options={
            "base_url": fake.base_url,
            "token_url": fake.token_url,
            "client_id": "demo-client",
            "client_secret_env": "CRM_SECRET",
            **options,
        },
        secrets={"client_secret": "demo-secret"},
    )
    return ODataCrmConnector(settings, sleep=sleeps)


def appointments(count: int) -> list[dict[str, Any]]:
    """``count`` appointments a-0, a-1, ... modified one hour apart."""
    start = dt.datetime(2025, 9, 1, 8, tzinfo=dt.UTC)
    return [
        appointment(
            f"a-{i}", modifiedon=(start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%MZ")
        )
        for i in range(count)
    ]


def read_all(conn: ODataCrmConnector, state: dict[str, Any] | None = None):
    batches = list(conn.read(state))
    records = [r for b in batches for r in b.records]
    rejected = [r for b in batches for r in b.rejected]
    return batches, records, rejected


def data_requests(fake: FakeODataCrm):
    return [r for r in fake.requests if r.path.endswith("/appointments")]


# --- paging and state -------------------------------------------------------------------------


def test_reads_every_page_as_one_batch_each(crm, sleeps):
    crm.records = appointments(5)
    batches, records, _ = read_all(connector(crm, sleeps, page_size=2))
    assert [len(b.records) for b in batches] == [2, 2, 1]
    assert [b.fetched for b in batches] == [2, 2, 1]
    assert [r.source_id for r in records] == ["a-0", "a-1", "a-2", "a-3", "a-4"]
    first = data_requests(crm)[0]
    assert first.headers["Prefer"] == "odata.maxpagesize=2"
    assert first.headers["Authorization"] == "Bearer token-1"
    assert first.args["$orderby"] == "modifiedon asc"


def test_each_batch_carries_largest_modifiedon_stored_so_far(crm, sleeps):
    crm.records = appointments(5)
    batches, _, _ = read_all(connector(crm, sleeps, page_size=2))
    assert [b.state for b in batches] == [
        {"modifiedon": "2025-09-01T09:00:00Z"},
        {"modifiedon": "2025-09-01T11:00:00Z"},
        {"modifiedon": "2025-09-01T12:00:00Z"},
    ]


def test_first_run_filters_from_the_epoch(crm, sleeps):
    crm.records = appointments(1)
    read_all(connector(crm, sleeps))
    assert data_requests(crm)[0].args["$filter"] == "modifiedon gt 1970-01-01T00:00:00Z"


def test_incremental_run_reads_only_newer_records_plus_overlap(crm, sleeps):
    crm.records = appointments(3)  # modified 08:00, 09:00, 10:00
    conn = connector(crm, sleeps, cursor_overlap_seconds=3600)
    first, _, _ = read_all(conn)
    crm.records.append(appointment("a-new", modifiedon="2025-09-02T08:00:00Z"))

    batches, records, _ = read_all(conn, first[-1].state)

    assert data_requests(crm)[-1].args["$filter"] == "modifiedon gt 2025-09-01T09:00:00Z"
    assert [r.source_id for r in records] == ["a-2", "a-new"]  # a-2 is the overlap re-read
    assert batches[-1].state == {"modifiedon": "2025-09-02T08:00:00Z"}


def test_state_never_moves_past_the_run_start(crm, sleeps):
    crm.records = [appointment("from-the-future", modifiedon="2099-01-01T00:00:00Z")]
    before = dt.datetime.now(dt.UTC)
    batches, records, _ = read_all(connector(crm, sleeps))
    saved = dt.datetime.fromisoformat(batches[-1].state["modifiedon"])
    assert len(records) == 1
    assert before <= saved <= dt.datetime.now(dt.UTC)


def test_no_changes_keeps_the_previous_state(crm, sleeps):
    state = {"modifiedon": "2025-09-01T08:00:00Z"}
    batches, records, rejected = read_all(connector(crm, sleeps), state)
    assert records == rejected == []
    assert [b.state for b in batches] == [state]


# --- authentication ---------------------------------------------------------------------------


def test_expired_token_mid_run_is_renewed_once_and_no_record_is_lost(sleeps):
    with FakeODataCrm(appointments(6), token_uses=2) as crm:
        _, records, _ = read_all(connector(crm, sleeps, page_size=2))
        assert [r.source_id for r in records] == [f"a-{i}" for i in range(6)]
        assert crm.tokens_issued == 2
        tokens_sent = [r.headers["Authorization"] for r in data_requests(crm)]
        assert tokens_sent == ["Bearer token-1"] * 3 + ["Bearer token-2"]  # 3rd refused, repeated


def test_token_request_sends_client_credentials(crm, sleeps):
    read_all(connector(crm, sleeps, scope="https://crm.example/.default"))
    token_request = crm.requests[0]
    assert token_request.method == "POST"
    assert token_request.path == crm.TOKEN_PATH
    assert token_request.form == {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "scope": "https://crm.example/.default",
    }
    assert crm.tokens_issued == 1


def test_401_with_a_fresh_token_is_fatal(sleeps):
    with FakeODataCrm(appointments(1), token_uses=0) as crm:
        with pytest.raises(FatalError, match="401"):
            read_all(connector(crm, sleeps))
        assert crm.tokens_issued == 2  # the first token and exactly one renewal


def test_wrong_client_secret_is_fatal(sleeps):
    with FakeODataCrm(appointments(1), client_secret="something-else") as crm:
        with pytest.raises(FatalError, match="invalid_client") as raised:
            read_all(connector(crm, sleeps))
        assert not isinstance(raised.value, RetriableError)
        assert crm.request_count == 1  # no retries: asking again will not help
        assert sleeps == []


def test_missing_secret_is_fatal_naming_the_variable(crm):
    settings = SourceSettings(
        "vaeksthus-test",
        {
            "base_url": crm.base_url,
            "token_url": crm.token_url,
            "client_id": "demo-client",
            "client_secret_env": "CRM_SECRET",
        },
        secrets={},
    )
    with pytest.raises(FatalError, match="CRM_SECRET"):
        list(ODataCrmConnector(settings).read(None))


# --- passing faults ---------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(crm, sleeps):
    crm.records = appointments(1)
    crm.faults = [("429", 7)]
    _, records, _ = read_all(connector(crm, sleeps))
    assert len(records) == 1
    assert sleeps == [7.0]


def test_retry_after_is_capped_by_the_maximum_wait(crm, sleeps):
    crm.records = appointments(1)
    crm.faults = [("503", 3600)]
    _, records, _ = read_all(connector(crm, sleeps, max_retry_wait_seconds=30))
    assert len(records) == 1
    assert sleeps == [30.0]


def test_server_errors_are_retried_with_growing_waits(crm, sleeps):
    crm.records = appointments(1)
    crm.faults = [("500", None), ("502", None), ("500", None)]
    _, records, _ = read_all(connector(crm, sleeps))
    assert len(records) == 1
    assert sleeps == [1.0, 2.0, 4.0]


def test_server_errors_beyond_the_retries_are_retriable(crm, sleeps):
    crm.records = appointments(1)
    crm.faults = [("500", None)] * 3
    with pytest.raises(RetriableError, match="HTTP 500"):
        read_all(connector(crm, sleeps, max_retries=2))
    assert len(data_requests(crm)) == 3


def test_a_slow_answer_times_out_and_the_retry_succeeds(crm, sleeps):
    crm.records = appointments(1)
    crm.faults = [("sleep", 2.0)]
    _, records, _ = read_all(connector(crm, sleeps, timeout_seconds=0.2))
    assert len(records) == 1
    assert len(sleeps) == 1


def test_timeouts_beyond_the_retries_are_retriable(crm, sleeps):
    crm.records = appointments(1)
    crm.faults = [("sleep", 2.0)] * 3
    started = time.monotonic()
    with pytest.raises(RetriableError, match="Timeout"):
        read_all(connector(crm, sleeps, timeout_seconds=0.1, max_retries=2))
    assert time.monotonic() - started < 2.0


def test_token_endpoint_faults_are_retried_too(crm, sleeps):
    crm.records = appointments(1)
    crm.token_faults = [("503", 2)]
    _, records, _ = read_all(connector(crm, sleeps))
    assert len(records) == 1
    assert sleeps == [2.0]


def test_an_answer_that_is_not_json_is_fatal(crm, sleeps):
    crm.faults = [("garbage", None)]
    with pytest.raises(FatalError, match="not JSON"):
        read_all(connector(crm, sleeps))


def test_a_failed_page_leaves_earlier_batches_and_their_state_intact(crm, sleeps):
    crm.records = appointments(4)
    conn = connector(crm, sleeps, page_size=2, max_retries=0)
    batches = conn.read(None)
    first = next(batches)
    crm.faults = [("500", None)]
    with pytest.raises(RetriableError):
        next(batches)
    assert first.state == {"modifiedon": "2025-09-01T09:00:00Z"}


# --- mapping ----------------------------------------------------------------------------------


def test_maps_every_field_of_an_appointment(crm, sleeps):
    crm.records = [appointment("a-1")]
    _, [record], _ = read_all(connector(crm, sleeps))
    assert record == SourceRecordData(
        source_id="a-1",
        approach_date=dt.date(2025, 9, 23),
        status="completed",
        company=CompanyRef(
            name="Madsen & Bøgh ApS",
            cvr="14272720",
            p_number="1381329428",
            address="Aagaardvej 15",
            postcode="7500",
            city="Holstebro",
            external_id="acc-1",
        ),
        channel="visit",
        purpose="Vækstsparring",
        contact_person=PersonRef("Søren Østergaard", "soeren@madsen.dk", "33410157"),
        consultant=PersonRef("Hanne Rasmussen", "hanne@vh.dk"),
        needs=(
            NeedRef(type="upskilling", label="DIG", code="DIG"),
            NeedRef(type="upskilling", label="LEAN", code="LEAN"),
        ),
        joint_with=("VEU-center Østjylland", "Jobcenter Århus"),
        notes="God dialog om grøn omstilling på værkstedet.",
        modified_at=dt.datetime(2025, 9, 26, 7, tzinfo=dt.UTC),
    )
    assert record.raw == appointment("a-1")


def test_danish_letters_arrive_unchanged(crm, sleeps):
    text = "Æbleøen Å/S: Ærø, Østerå, Ålborg — æøå ÆØÅ"
    crm.records = [appointment("a-1", subject=text, description=text)]
    _, [record], _ = read_all(connector(crm, sleeps))
    assert record.purpose == record.notes == text


def test_empty_strings_become_none(crm, sleeps):
    account = {**appointment()["regardingobjectid_account"], "cr_cvr": "", "cr_pnumber": " "}
    crm.records = [
        appointment(
            "a-1",
            regardingobjectid_account=account,
            cr_contact=None,
            cr_competenceneeds="",
            cr_jointwith="",
            description="",
            subject="",
        )
    ]
    _, [record], _ = read_all(connector(crm, sleeps))
    assert (record.company.cvr, record.company.p_number) == (None, None)
    assert (record.contact_person, record.notes, record.purpose) == (None, None, None)
    assert (record.needs, record.joint_with) == ((), ())


@pytest.mark.parametrize(
    ("statecode", "status"), [(0, "planned"), (1, "completed"), (2, "cancelled")]
)
def test_statecode_becomes_status(crm, sleeps, statecode, status):
    crm.records = [appointment("a-1", statecode=statecode)]
    _, [record], _ = read_all(connector(crm, sleeps))
    assert record.status == status


@pytest.mark.parametrize(
    ("contact_type", "channel"),
    [
        ("besoeg", "visit"),
        ("telefon", "phone"),
        ("moede", "meeting"),
        ("email", "email"),
        ("virtuelt", "online"),
    ],
)
def test_contact_type_becomes_channel(crm, sleeps, contact_type, channel):
    crm.records = [appointment("a-1", cr_contacttype=contact_type)]
    _, [record], _ = read_all(connector(crm, sleeps))
    assert record.channel == channel


@pytest.mark.parametrize(
    ("scheduledstart", "date"),
    [
        ("2025-09-23T23:30:00-00:00", dt.date(2025, 9, 24)),  # summer time: 01:30 next day
        ("2025-09-23T21:59:00Z", dt.date(2025, 9, 23)),  # 23:59 the same day
        ("2025-12-31T23:30:00Z", dt.date(2026, 1, 1)),  # winter time: 00:30 on New Year's Day
        ("2025-12-31T22:30:00Z", dt.date(2025, 12, 31)),
        ("2025-09-24T00:30:00+02:00", dt.date(2025, 9, 24)),
    ],
)
def test_approach_date_is_the_date_in_copenhagen(crm, sleeps, scheduledstart, date):
    crm.records = [appointment("a-1", scheduledstart=scheduledstart)]
    _, [record], _ = read_all(connector(crm, sleeps))
    assert record.approach_date == date


def test_bad_items_are_quarantined_and_good_ones_in_the_same_page_kept(crm, sleeps):
    no_company_id = {**appointment()["regardingobjectid_account"], "name": "", "cr_cvr": ""}
    bad = {
        "bad-date": appointment("bad-date", scheduledstart="2025-02-30T10:00:00+01:00"),
        "bad-type": appointment("bad-type", scheduledstart=20250923),
        "no-offset": appointment("no-offset", scheduledstart="2025-09-23T10:00:00"),
        "account-text": appointment("account-text", regardingobjectid_account="Madsen"),
        "no-account": appointment("no-account", regardingobjectid_account=None),
        "fax": appointment("fax", cr_contacttype="fax"),
        "state-9": appointment("state-9", statecode=9),
        "no-company-id": appointment("no-company-id", regardingobjectid_account=no_company_id),
        "bad-modified": appointment("bad-modified", modifiedon="gestern"),
    }
    crm.records = [appointment("good-1"), *bad.values(), appointment("good-2")]

    batches, records, rejected = read_all(connector(crm, sleeps))

    assert len(batches) == 1
    assert [r.source_id for r in records] == ["good-1", "good-2"]
    reasons = {r.source_id: r.reason for r in rejected}
    assert set(reasons) == set(bad)
    assert "scheduledstart: not an ISO-8601 datetime" in reasons["bad-date"]
    assert "scheduledstart: expected a string, got a number" in reasons["bad-type"]
    assert "without a UTC offset" in reasons["no-offset"]
    assert "regardingobjectid_account: expected an object, got a string" in reasons["account-text"]
    assert "regardingobjectid_account is missing" in reasons["no-account"]
    assert "unknown contact type 'fax'" in reasons["fax"]
    assert "statecode: unknown state 9" in reasons["state-9"]
    assert "neither company name nor CVR" in reasons["no-company-id"]
    assert "modifiedon: not an ISO-8601 timestamp" in reasons["bad-modified"]
    assert all(r.raw == bad[r.source_id] for r in rejected)


def test_an_item_that_is_not_an_object_is_quarantined(crm, sleeps):
    crm.records = [appointment("good-1"), ["not", "an", "object"]]
    _, records, [rejected] = read_all(connector(crm, sleeps))
    assert [r.source_id for r in records] == ["good-1"]
    assert rejected == Rejected({"item": ["not", "an", "object"]}, rejected.reason, None)
    assert "not an object" in rejected.reason


def test_renamed_fields_are_read_from_their_configured_names(crm, sleeps):
    item = appointment("a-1", new_notes="Note fra feltet.")
    item["regardingobjectid_account"]["new_cvr"] = item["regardingobjectid_account"].pop("cr_cvr")
    crm.records = [item]
    conn = connector(
        crm,
        sleeps,
        field_names={"description": "new_notes", "regardingobjectid_account.cr_cvr": "new_cvr"},
    )
    _, [record], _ = read_all(conn)
    assert (record.notes, record.company.cvr) == ("Note fra feltet.", "14272720")


def test_the_sample_delivery_reads_completely(sleeps):
    with FakeODataCrm.from_file(SAMPLES / "vaeksthus-midt" / "records.json") as crm:
        batches, records, rejected = read_all(connector(crm, sleeps, page_size=10))
        delivered = len(crm.records)
    assert len(batches) == 4
    assert len(records) + len(rejected) == delivered == 31
    # The samples README promises one bad record per source, but every appointment in this
    # file is well-formed (dates parse, each company has a name), so none is quarantined.
    assert rejected == []
    assert sum(r.status == "cancelled" for r in records) == 1
    assert any(r.company.name == "Søhøjlandets Smedie P/S" for r in records)


# --- options ----------------------------------------------------------------------------------

VALID_OPTIONS = {
    "base_url": "http://crm.local:8080/api/data/v9.2",
    "token_url": "http://login.local/oauth2/v2.0/token",
    "client_id": "cid",
    "client_secret_env": "CRM_SECRET",
}


def test_options_have_the_documented_defaults():
    options = ODataCrmOptions().load(VALID_OPTIONS)
    assert options["scope"] == ""
    assert options["page_size"] == 500
    assert options["cursor_overlap_seconds"] == 300
    assert (options["connect_timeout_seconds"], options["timeout_seconds"]) == (5.0, 30.0)
    assert options["max_retries"] == 4
    assert options["field_names"] == {}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"base_url": "not a url"}, "base_url"),
        ({"token_url": "http//missing-colon"}, "token_url"),
        ({"client_id": ""}, "client_id"),
        ({"page_size": 0}, "page_size"),
        ({"pagesize": 10}, "pagesize"),
        ({"field_names": {"cr_kvr": "x"}}, "field_names"),
    ],
)
def test_bad_options_are_rejected_naming_the_key(change, key):
    with pytest.raises(ValidationError) as raised:
        ODataCrmOptions().load({**VALID_OPTIONS, **change})
    assert key in raised.value.messages


def test_the_config_loader_resolves_the_client_secret_from_the_environment():
    source = {
        "name": "vaeksthus-midt",
        "kind": "odata-crm",
        "organisation": "Væksthus Midtjylland",
        "organisation_type": "vaeksthus",
        **VALID_OPTIONS,
    }
    config = parse_config(
        {"sources": [source]}, {"CRM_SECRET": "s3cret"}, {"odata-crm": ODataCrmConnector}
    )
    conn = config.sources[0].build_connector({"odata-crm": ODataCrmConnector})
    assert conn.secrets == {"client_secret": "s3cret"}
    assert conn.config["page_size"] == 500
