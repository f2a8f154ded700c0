"""Fuzzing the JSON connectors (rest-json and odata-crm): whatever a source answers, ``read()``
raises nothing but :class:`ConnectorError`, every item comes out as a record that passes
``record_problems`` or as a :class:`Rejected` with a reason, and a sync of such deliveries stores
every good record, quarantines every bad one and never fails.

Bulk: items fed straight to the connectors' ``map_item``. A handful of pages over real HTTP from
the fake servers (arbitrary JSON, bodies that are not JSON, deep nesting). Then deliveries synced
into a real database through the sync engine.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlmodel import Session
from werkzeug.wrappers import Request, Response

from connectors.base import (
    Batch,
    ConnectorError,
    Rejected,
    SourceRecordData,
    SourceSettings,
    load_registry,
    record_problems,
)
from connectors.odata_crm import DEFAULT_FIELD_NAMES as CRM_FIELDS
from connectors.odata_crm import ODataCrmConnector
from connectors.rest_json import DEFAULT_FIELD_NAMES as VEU_FIELDS
from connectors.rest_json import RestJsonConnector
from coordination.config import parse_config
from coordination.db import make_engine
from coordination.demo.fakes import FakeODataCrm, FakeVeuApi
from coordination.models import QuarantinedRecord, Source, SourceRecord
from coordination.sync import SyncEngine
from tests.connectors.conftest import appointment, contact
from tests.security import fresh_database_url

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # no example database in the source tree
    derandomize=True,  # the same examples on every run: a failure in CI can be repeated
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
OVER_HTTP = settings(FUZZ, max_examples=20)
SYNCED = settings(FUZZ, max_examples=40)

CRM_SECRET = "crm-hemmelighed"
VEU_KEY = "veu-noegle"

# --- generated JSON -------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and Infinity too: Python's JSON reader accepts them from a source
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
timestamps = st.one_of(
    st.datetimes(timezones=offsets).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()),  # without an offset
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(["2026-02-30T10:00:00Z", "2026-10-01", "i går", "", " ", "T"]),
)
dates = st.one_of(
    st.dates().map(dt.date.isoformat),
    st.sampled_from(["2026-02-30", "01-10-2026", "2026-1-1", "2026-10-01T08:00:00Z", ""]),
)
huge_text = st.integers(20_000, 120_000).map(lambda n: "æ" * n)


def _deep(depth: int) -> Any:
    value: Any = "bund"
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


deep_values = st.integers(20, 200).map(_deep)
field_values = st.one_of(json_values, timestamps, dates, huge_text, deep_values)


def _paths(field_names: Mapping[str, str]) -> list[str]:
    return sorted(field_names)


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """``valid`` with some fields (also nested ones, also inside the first need) deleted or
    given a value of any type, size or depth."""
    item = copy.deepcopy(valid)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True)):
        parent, key = _parent(item, path)
        if parent is None:
            continue
        if draw(st.booleans()) and key in parent:
            del parent[key]
        else:
            parent[key] = draw(field_values)
    return item


def _parent(item: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    *outer, key = path.split(".")
    parent: Any = item
    for name in outer:
        parent = parent.get(name) if isinstance(parent, dict) else None
        if isinstance(parent, list):  # "needs.type": the first need
            parent = parent[0] if parent else None
    return (parent if isinstance(parent, dict) else None), key


def veu_items() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(contact()),  # some good ones, so that storing them is exercised too
        mutated(contact(), _paths(VEU_FIELDS)),
        st.dictionaries(st.sampled_from(_paths(VEU_FIELDS)), field_values, max_size=8),
        json_values,
    )


def crm_items() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(appointment()),
        mutated(appointment(), _paths(CRM_FIELDS)),
        st.dictionaries(st.sampled_from(_paths(CRM_FIELDS)), field_values, max_size=8),
        json_values,
    )


# --- connectors -----------------------------------------------------------------------------------


UNUSED = "http://127.0.0.1:9"  # the discard port: the mapping tests never connect


def _no_wait(_seconds: float) -> None:
    pass


def veu_connector(base_url: str = UNUSED) -> RestJsonConnector:
    options = {"base_url": base_url, "api_key_env": "VEU_KEY", "max_retries": 0, "page_size": 7}
    settings_ = SourceSettings(name="veu-fuzz", options=options, secrets={"api_key": VEU_KEY})
    return RestJsonConnector(settings_, sleep=_no_wait)


def crm_connector(base_url: str = f"{UNUSED}/api", token_url: str = f"{UNUSED}/token"):
    options = {
        "base_url": base_url,
        "token_url": token_url,
        "client_id": "coordination",
        "client_secret_env": "CRM_SECRET",
        "max_retries": 0,
        "page_size": 7,
    }
    settings_ = SourceSettings(
        name="crm-fuzz", options=options, secrets={"client_secret": CRM_SECRET}
    )
    return ODataCrmConnector(settings_, sleep=_no_wait)


def check_outcome(outcome: SourceRecordData | Rejected) -> None:
    if isinstance(outcome, SourceRecordData):
        assert record_problems(outcome) is None
    else:
        assert isinstance(outcome, Rejected)
        assert isinstance(outcome.reason, str) and outcome.reason.strip()


def check_batches(batches: list[Batch]) -> None:
    for batch in batches:
        assert batch.fetched == len(batch.records) + len(batch.rejected)
        for outcome in (*batch.records, *batch.rejected):
            check_outcome(outcome)
        json.dumps(batch.state)  # stored with the batch


# --- mapping, the bulk ----------------------------------------------------------------------------


# Found by this fuzzing once; kept so they are tried on every run.
EDGE_OF_TIME = "0001-01-01T00:30:00+01:00"  # a valid timestamp whose UTC time is before year 1


@FUZZ
@given(item=veu_items())
@example(item=contact(updated_at=EDGE_OF_TIME))
def test_every_veu_item_maps_to_a_valid_record_or_a_rejection(item: Any) -> None:
    check_outcome(veu_connector().map_item(item))


@FUZZ
@given(item=crm_items())
@example(item=appointment(modifiedon=EDGE_OF_TIME))
@example(item=appointment(scheduledstart="9999-12-31T23:30:00-05:00"))
@example(item=appointment(statecode=[1]))
def test_every_crm_appointment_maps_to_a_valid_record_or_a_rejection(item: Any) -> None:
    check_outcome(crm_connector().map_item(item))


# --- whole answers over real HTTP -----------------------------------------------------------------


class ScriptedAnswers:
    """Makes a fake answer its data requests with ``body`` (bytes) while it is set."""

    def __init__(self, fake, data_path: str) -> None:
        self.body: bytes | None = None
        dispatch = fake.dispatch

        def scripted(request: Request) -> Response:
            if self.body is not None and request.path == data_path:
                return Response(self.body, 200, content_type="application/json")
            return dispatch(request)

        fake.dispatch = scripted


def _page_bodies(items_key: str) -> st.SearchStrategy[bytes]:
    def encoded(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")

    pages = st.fixed_dictionaries(
        {items_key: st.lists(json_values, max_size=5)},
        optional={"next_cursor": json_values, "@odata.nextLink": json_values},
    )
    nested = st.integers(1_000, 200_000).map(lambda n: b"[" * n + b"]" * n)
    truncated = st.builds(
        lambda body, cut: body[: cut % max(len(body), 1)], pages.map(encoded), st.integers(0, 10**6)
    )
    return st.one_of(
        pages.map(encoded),
        json_values.map(encoded),
        nested,
        truncated,
        st.binary(max_size=200),
        st.just(b"<html>gateway says hello</html>"),
    )


@pytest.fixture(scope="module")
def veu_server() -> Iterator[tuple[FakeVeuApi, ScriptedAnswers]]:
    with FakeVeuApi(api_key=VEU_KEY) as fake:
        yield fake, ScriptedAnswers(fake, FakeVeuApi.CONTACTS_PATH)


@pytest.fixture(scope="module")
def crm_server() -> Iterator[tuple[FakeODataCrm, ScriptedAnswers]]:
    with FakeODataCrm(client_id="coordination", client_secret=CRM_SECRET) as fake:
        yield fake, ScriptedAnswers(fake, f"{FakeODataCrm.API_PATH}/appointments")


def read_or_connector_error(read: Callable[[], Iterator[Batch]]) -> list[Batch] | None:
    """All batches, or None when the read failed the way a source may fail: a ConnectorError."""
    try:
        return list(read())
    except ConnectorError:
        return None


DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's JSON reader can recurse


@OVER_HTTP
@given(body=_page_bodies("items"))
@example(body=DEEP)
def test_any_veu_answer_reads_as_batches_or_a_connector_error(veu_server, body: bytes) -> None:
    fake, script = veu_server
    script.body = body
    batches = read_or_connector_error(lambda: veu_connector(fake.base_url).read(None))
    if batches is not None:
        check_batches(batches)


@OVER_HTTP
@given(body=_page_bodies("value"))
@example(body=DEEP)
def test_any_crm_answer_reads_as_batches_or_a_connector_error(crm_server, body: bytes) -> None:
    fake, script = crm_server
    script.body = body
    batches = read_or_connector_error(
        lambda: crm_connector(fake.base_url, fake.token_url).read(None)
    )
    if batches is not None:
        check_batches(batches)


@OVER_HTTP
@given(items=st.lists(veu_items(), max_size=6), garbage_after=st.integers(0, 2))
def test_a_garbage_answer_after_good_pages_is_a_connector_error(
    veu_server, items: list[Any], garbage_after: int
) -> None:
    fake, script = veu_server
    script.body = None
    fake.records = items
    pages = max(1, -(-len(items) // 2))
    fake.faults = [("sleep", 0)] * min(garbage_after, pages - 1) + [("garbage", None)]
    connector = veu_connector(fake.base_url)
    connector.config["page_size"] = 2
    with pytest.raises(ConnectorError):
        for batch in connector.read(None):
            check_batches([batch])
    fake.faults.clear()


# --- synced into a database -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sync_world(_migrated_url, tmp_path_factory):
    """Both fakes and a database, with a configuration naming them as two sources."""
    url = fresh_database_url(_migrated_url, tmp_path_factory.mktemp("json-fuzz"))
    engine = make_engine(url)
    with (
        FakeVeuApi(api_key=VEU_KEY) as veu,
        FakeODataCrm(client_id="coordination", client_secret=CRM_SECRET) as crm,
    ):
        sources = [
            {
                "name": "veu-fuzz",
                "kind": "rest-json",
                "organisation": "VEU-center Fuzz",
                "organisation_type": "veu",
                "base_url": veu.base_url,
                "api_key_env": "VEU_KEY",
                "page_size": 7,
                "max_retries": 0,
            },
            {
                "name": "crm-fuzz",
                "kind": "odata-crm",
                "organisation": "Væksthus Fuzz",
                "organisation_type": "vaeksthus",
                "base_url": crm.base_url,
                "token_url": crm.token_url,
                "client_id": "coordination",
                "client_secret_env": "CRM_SECRET",
                "page_size": 7,
                "max_retries": 0,
            },
        ]
        environment = {"VEU_KEY": VEU_KEY, "CRM_SECRET": CRM_SECRET}
        config = parse_config(
            {"sources": sources, "database": {"url": url}}, environment, load_registry()
        )
        yield engine, config, veu, crm
    engine.dispose()


_runs = itertools.count(1)


def _with_unique_ids(items: list[Any], id_key: str, run: int) -> list[Any]:
    """Ids unique to this example (a string id is kept apart from other examples' ids)."""
    unique = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get(id_key), str):
            item = {**item, id_key: f"r{run}-{index}-{item[id_key]}"[:200]}
        unique.append(item)
    return unique


def _expected(connector) -> tuple[set[str], set[str], int]:
    """What one read delivers: ids of good records (not deletions), ids of rejected items, and
    how many rejected items have no id."""
    try:
        batches = list(connector.read(None))
    except Exception:  # the sync must then report the source as failed, which is asserted
        batches = []
    good = {r.source_id for b in batches for r in b.records if r.status != "deleted"}
    bad = [r for b in batches for r in b.rejected]
    return good, {r.source_id for r in bad if r.source_id} - good, sum(not r.source_id for r in bad)


@SYNCED
@example(veu_delivery=[contact(updated_at=EDGE_OF_TIME)], crm_delivery=[])
@example(veu_delivery=[], crm_delivery=[appointment(statecode=[1])])
# JSON readers accept NaN and Infinity, which PostgreSQL's json type refuses; PostgreSQL text
# columns refuse NUL characters.
@example(veu_delivery=[contact(extra=float("nan"))], crm_delivery=[appointment(extra=float("inf"))])
@example(veu_delivery=[contact(notes="Ring\x00igen")], crm_delivery=[appointment(subject="A\x00S")])
@given(
    veu_delivery=st.lists(veu_items(), max_size=8), crm_delivery=st.lists(crm_items(), max_size=8)
)
def test_a_sync_of_fuzzed_deliveries_stores_the_good_and_quarantines_the_bad(
    sync_world, veu_delivery: list[Any], crm_delivery: list[Any]
) -> None:
    engine, config, veu, crm = sync_world
    run = next(_runs)
    veu.records = _with_unique_ids(veu_delivery, "id", run)
    crm.records = _with_unique_ids(crm_delivery, "activityid", run)
    with Session(engine) as session:  # every example reads its delivery from the start
        session.execute(update(Source).values(state=None))
        session.commit()
    expected = {
        "veu-fuzz": _expected(veu_connector(veu.base_url)),
        "crm-fuzz": _expected(crm_connector(crm.base_url, crm.token_url)),
    }

    result = SyncEngine(engine, config, load_registry()).run()

    assert {o.name: (o.status, o.error) for o in result.outcomes} == {
        "veu-fuzz": ("succeeded", None),
        "crm-fuzz": ("succeeded", None),
    }
    for name, (good, bad, without_id) in expected.items():
        stored, quarantined = _stored(engine, name, run)
        assert good <= stored
        assert bad <= quarantined["open"]
        assert quarantined["by hash"] >= min(without_id, 1)


def _stored(engine, source_name: str, run: int) -> tuple[set[str], dict[str, Any]]:
    with Session(engine) as session:
        source_id = session.execute(
            select(Source.id).where(Source.name == source_name)
        ).scalar_one()
        stored = set(
            session.execute(
                select(SourceRecord.external_id).where(SourceRecord.source_id == source_id)
            ).scalars()
        )
        rows = session.execute(
            select(QuarantinedRecord.record_key, QuarantinedRecord.resolved_at).where(
                QuarantinedRecord.source_id == source_id
            )
        ).all()
    return stored, {
        "open": {key for key, resolved in rows if resolved is None},
        "by hash": sum(key.startswith("sha256:") for key, _ in rows),
    }
