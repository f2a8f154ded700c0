"""The sync's reader processes (``coordination.sync_reader``) change nothing that is stored.

The same deliveries are synced twice on fresh databases, once with each source read in a
reader process (the default) and once in the syncing process, and then, on both, a second
delivery in which a random part of the API records changed (new text, a CPR number in the
notes, cancellations and deletions, records that fail validation, new records) and the
jobcenters dropped a file more. Every row of every table must be the same in both, but the
moments the run itself took (sighting times, run times).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from marshmallow import Schema
from sqlalchemy import select
from sqlmodel import SQLModel

import coordination.models  # noqa: F401  (registers every table)
from connectors.base import Batch, Connector, SourceSettings
from coordination import sync_reader
from coordination.config import SourceConfig
from coordination.models import ApproachRecord
from tests.integration.conftest import (
    AARHUS,
    AARHUS_EXPORT,
    VEU_OEST,
    sample_world,
    sync,
    veu_contact,
    write_drop,
    write_jobcenter_exports,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sync_reader.fork_available(), reason="no fork on this platform"),
]

LATER = "2026-11-03T09:00:00Z"
# Source-given times stay compared; the others are the moments the run took.
SOURCE_TIMES = {"modified_at", "approach_date"}
# Derived rows whose own ids follow the order the rebuild and the facts' refresh write them in.
BY_CONTENT = {"contactperson", "reportapproachfact", "reportneedfact", "reportneedmonth"}


def _change_deliveries(world, seed: int) -> None:
    """A second delivery: about a third of each API's records changed (each way below), two
    new records, and one more jobcenter file."""
    rng = random.Random(seed)
    crm = world.fakes.crm
    crm_new = crm.records[1] | {"activityid": "ny-aftale-1", "modifiedon": LATER}
    for index, item in enumerate(crm.records):
        roll = rng.random()
        if roll < 0.1:
            crm.records[index] = item | {"statecode": 2, "modifiedon": LATER}  # cancelled
        elif roll < 0.3:
            crm.records[index] = item | {
                "description": f"Opfølgning {index}, CPR 010190-1235 nævnt",
                "modifiedon": LATER,
            }
        elif roll < 0.35:
            crm.records[index] = item | {"cr_contacttype": "ukendt", "modifiedon": LATER}
    crm.records.append(crm_new)
    veu = world.fakes.for_source(VEU_OEST)
    veu_new = veu_contact("veu-ny-1", updated_at=LATER)
    for index, item in enumerate(veu.records):
        roll = rng.random()
        if roll < 0.15:
            veu.records[index] = item | {"purpose": f"Ny plan {index}", "updated_at": LATER}
        elif roll < 0.25:
            veu.records[index] = item | {"deleted": True, "updated_at": LATER}
        elif roll < 0.3:
            company = dict(item.get("company") or {}) | {"name": f"Omdøbt {index} ApS"}
            veu.records[index] = item | {"company": company, "updated_at": LATER}
    veu.records.append(veu_new)
    rows = [dict(row) for row in AARHUS_EXPORT[:3]]
    for row in rows:
        row.update({key: f"{value} (rettet)" for key, value in row.items() if key == "Formål"})
    write_drop(world.drops[AARHUS], "virksomhedskontakter_20261103.csv", rows)


def _contents(engine) -> dict[str, list[tuple]]:
    """Every row of every table, the run's own moments reduced to "set". Approaches, contact
    persons and report facts are taken by content, not by id: on PostgreSQL their ids differ
    between two runs of the same code (the order of rows the rebuild reads); an approach stands
    for its records' ids, which are the same."""
    contents = {}
    with engine.connect() as connection:
        members: dict[int, list[int]] = {}
        for approach_id, record_id in connection.execute(
            select(ApproachRecord.approach_id, ApproachRecord.source_record_id)
        ):
            members.setdefault(approach_id, []).append(record_id)
        approach = {key: tuple(sorted(ids)) for key, ids in members.items()}
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            columns = list(table.c)
            rows = []
            for row in connection.execute(select(*columns)):
                values = []
                for column, value in zip(columns, row, strict=True):
                    name = column.name
                    if isinstance(value, dt.datetime) and name not in SOURCE_TIMES:
                        value = "set"
                    elif isinstance(value, dt.date):
                        value = value.isoformat()
                    elif name == "approach_id" or (table.name == "approach" and name == "id"):
                        value = approach.get(value, value)
                    elif name == "approach_ids":
                        value = sorted(approach.get(v, (v,)) for v in value)
                    elif table.name in BY_CONTENT and name == "id":
                        value = None
                    values.append(value)
                rows.append(tuple(values))
            contents[table.name] = sorted(rows, key=repr)
    return contents


def _synced(template_url: str, folder: Path, in_process: bool, monkeypatch) -> tuple:
    folder.mkdir()
    with monkeypatch.context() as patch:
        if in_process:
            patch.setattr(sync_reader, "fork_available", lambda: False)
        else:  # the second delivery too, not only each source's first read
            patch.setattr(sync_reader, "worth_a_process", lambda state: True)
        with sample_world(template_url, folder) as world:
            write_jobcenter_exports(world.drops)
            first = sync(world.config, world.engine)
            after_first = _contents(world.engine)
            _change_deliveries(world, seed=7)
            second = sync(world.config, world.engine)
            after_second = _contents(world.engine)
    outcomes = [
        [(o.name, o.status, o.error, o.counts) for o in result.outcomes]
        for result in (first, second)
    ]
    return outcomes, after_first, after_second


def test_reader_processes_store_exactly_what_reading_in_process_stores(
    _migrated_url, tmp_path, monkeypatch
):
    read_apart = _synced(_migrated_url, tmp_path / "apart", False, monkeypatch)
    read_here = _synced(_migrated_url, tmp_path / "here", True, monkeypatch)

    outcomes, after_first, after_second = read_apart
    assert outcomes == read_here[0]
    assert all(status == "succeeded" for run in outcomes for _, status, _, _ in run)
    counts = {name: c for name, _, _, c in outcomes[1]}
    # the second delivery reached every way of storing a record
    assert counts["vaeksthus-midt"].updated and counts["vaeksthus-midt"].removed
    assert counts["vaeksthus-midt"].new and counts["vaeksthus-midt"].quarantined
    assert counts[VEU_OEST].removed and counts[AARHUS].fetched
    for table in after_first:
        assert after_first[table] == read_here[1][table], table
        assert after_second[table] == read_here[2][table], table
    assert after_second["sourcerecord"] != after_first["sourcerecord"]


def test_an_error_in_a_reader_process_fails_its_source_with_the_connector_error(
    _migrated_url, tmp_path
):
    with sample_world(_migrated_url, tmp_path) as world:
        world.fakes.crm.faults = [("sleep", 0)] + [("500", None)] * 5
        result = sync(world.config, world.engine)
    by_name = {o.name: o for o in result.outcomes}
    failed = by_name["vaeksthus-midt"]
    assert failed.status == "failed"
    assert "still failing after 2 retries: HTTP 500" in failed.error
    assert failed.counts.new == 10  # the page before the fault was stored
    assert all(o.status == "succeeded" for name, o in by_name.items() if name != failed.name)


def test_only_a_sources_first_read_forks_a_reader_process(_migrated_url, tmp_path, monkeypatch):
    forked: list[str] = []
    real_start = sync_reader.start_reader

    def counting_start(sc, *args):
        forked.append(f"sync-reader-{sc.name}")
        return real_start(sc, *args)

    monkeypatch.setattr(sync_reader, "start_reader", counting_start)
    with sample_world(_migrated_url, tmp_path) as world:
        write_jobcenter_exports(world.drops)
        first = sync(world.config, world.engine)
        after_first = list(forked)
        _change_deliveries(world, seed=7)
        second = sync(world.config, world.engine)
    names = sorted(f"sync-reader-{o.name}" for o in first.outcomes)
    assert sorted(after_first) == names  # one reader for each source's whole history
    assert forked == after_first  # a night's delta is read in process
    assert sum(o.counts.fetched for o in second.outcomes) > 0
    assert all(o.status == "succeeded" for o in second.outcomes)


class _TellingConnector(Connector):
    """Logs where it reads (its process and that process's parent), then delivers nothing.
    At module level: the reader process imports it by name."""

    kind = "telling"
    options_schema = Schema

    def read(self, state):
        logging.getLogger("connectors.telling").warning(
            "reading in %d, a child of %d.", os.getpid(), os.getppid()
        )
        logging.getLogger("connectors.telling").debug("below the syncing process's level")
        yield Batch(records=[], rejected=[], state={"read": True})


def test_a_reader_is_forked_from_the_fork_server_and_logs_in_the_syncing_process(caplog):
    settings = SourceSettings("telling", {}, {})
    sc = SourceConfig("telling", "telling", "Org", "jobcenter", None, settings)
    registry = {"telling": _TellingConnector}
    with caplog.at_level(logging.INFO):
        batches = list(sync_reader.read_batches(sc, registry, None, source_id=1))
    assert [batch.state for batch in batches] == [{"read": True}]
    [record] = [r for r in caplog.records if r.name == "connectors.telling"]
    assert record.levelno == logging.WARNING
    reader, its_parent = map(int, re.findall(r"\d+", record.getMessage()))
    # Neither in this process nor forked from it: a fork of a large syncing process would keep
    # copies of the pages it writes while the reader lives.
    assert reader != os.getpid()
    assert its_parent not in (os.getpid(), 1)


def test_a_connector_that_cannot_be_sent_to_a_reader_is_read_in_the_syncing_process(caplog):
    class Local(_TellingConnector):  # a class defined in a function cannot be pickled
        kind = "local"

    settings = SourceSettings("local", {}, {})
    sc = SourceConfig("local", "local", "Org", "jobcenter", None, settings)
    with caplog.at_level(logging.INFO):
        batches = list(sync_reader.read_batches(sc, {"local": Local}, None, source_id=1))
    assert [batch.state for batch in batches] == [{"read": True}]
    [fallback] = [r for r in caplog.records if r.name == "coordination.sync_reader"]
    assert "source local is read without a reader process" in fallback.getMessage()
    [told] = [r for r in caplog.records if r.name == "connectors.telling"]
    reader, _ = map(int, re.findall(r"\d+", told.getMessage()))
    assert reader == os.getpid()


UNGUARDED_MAIN = """
print("main module ran", flush=True)
from connectors.base import SourceSettings, load_registry
from coordination import sync_reader
from coordination.config import SourceConfig

settings = SourceSettings("j", {{"path": {folder!r}}}, {{}})
sc = SourceConfig("j", "csv-drop", "Org", "jobcenter", None, settings)
print(list(sync_reader.read_batches(sc, load_registry(), None, source_id=1))[-1].state)
"""


def test_a_reader_does_not_run_the_main_module_again(tmp_path):
    # A main module without the ``if __name__ == "__main__"`` guard: a reader that imported it
    # again (as multiprocessing does) would start a sync of its own; the console script, gunicorn
    # and pytest have the guard, but importing them costs each reader 0.3 s.
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_MAIN.format(folder=str(tmp_path)), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["main module ran", "{'files': {}}"]


MAIN_CONNECTOR = """
import logging, os
from marshmallow import Schema
from connectors.base import Batch, Connector, SourceSettings
from coordination import sync_reader
from coordination.config import SourceConfig


class Mine(Connector):
    kind = "mine"
    options_schema = Schema

    def read(self, state):
        yield Batch(records=[], rejected=[], state={"pid": os.getpid()})


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sc = SourceConfig("m", "mine", "Org", "jobcenter", None, SourceSettings("m", {}, {}))
    [batch] = sync_reader.read_batches(sc, {"mine": Mine}, None, source_id=1)
    print(batch.state["pid"] == os.getpid())
"""


def test_a_connector_class_of_the_main_module_is_read_in_process(tmp_path):
    script = tmp_path / "own_connector.py"
    script.write_text(MAIN_CONNECTOR, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True"]
    assert "source m is read without a reader process" in done.stderr
