"""A sync that stops half-way loses nothing and duplicates nothing: after the next run the
database holds exactly what a clean run on a fresh database stores.

The clean run is made once per module on a database of its own; each test breaks a run on its
own fresh database, runs once more, and compares what the two databases hold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

import coordination.sync as sync_module
from coordination.models import DirtyCompany, Source, SourceRecord, SyncRun
from tests.integration.conftest import (
    CRM,
    FAST_RETRIES,
    QUICK_GIVE_UP,
    SECRETS,
    SOURCE_NAMES,
    VEU_OEST,
    VEU_VEST,
    StoredState,
    outcome,
    run_sources,
    sample_world,
    snapshot,
    source_tables,
    sync,
    toml_text,
    write_jobcenter_exports,
)

pytestmark = pytest.mark.integration

PAGES_SERVED = 2  # the fault strikes on the third page
STORED_BEFORE_THE_FAULT = {CRM: 20, VEU_OEST: 10, VEU_VEST: 10}  # two pages each


@pytest.fixture(scope="module")
def clean(_migrated_url, tmp_path_factory) -> StoredState:
    """What a clean run of the samples and the jobcenter exports stores on a fresh database."""
    with sample_world(_migrated_url, tmp_path_factory.mktemp("clean")) as world:
        write_jobcenter_exports(world.drops)
        assert sync(world.config, world.engine).ok
        return snapshot(world.engine)


def _served_then_failing(retries: int) -> list[tuple[str, float | None]]:
    """Two pages answered, then HTTP 500 on every attempt of the third."""
    return [("sleep", 0)] * PAGES_SERVED + [("500", None)] * (retries + 1)


@pytest.mark.parametrize("failing", [CRM, VEU_VEST])
def test_a_source_that_fails_after_some_pages_fails_alone_with_its_error_recorded(
    config, engine, fakes, jobcenter_exports, failing
):
    fakes.for_source(failing).faults = _served_then_failing(FAST_RETRIES["max_retries"])

    result = sync(config, engine)

    assert {o.name: o.status for o in result.outcomes} == {
        name: "failed" if name == failing else "succeeded" for name in SOURCE_NAMES
    }
    recorded = run_sources(engine, result.run_id)[failing]
    assert recorded.status == "failed"
    assert "still failing after 2 retries: HTTP 500" in recorded.error
    assert recorded.new == STORED_BEFORE_THE_FAULT[failing]
    assert len(snapshot(engine).records_of(failing)) == STORED_BEFORE_THE_FAULT[failing]


@pytest.mark.parametrize("failing", [CRM, VEU_VEST])
def test_the_run_after_a_failed_source_ends_with_exactly_the_state_of_a_clean_run(
    config, engine, fakes, jobcenter_exports, failing, clean
):
    fakes.for_source(failing).faults = _served_then_failing(FAST_RETRIES["max_retries"])
    assert not sync(config, engine).ok

    fakes.for_source(failing).faults.clear()
    result = sync(config, engine)

    assert result.ok
    stored_now = outcome(result, failing).counts.new
    assert stored_now == len(clean.records_of(failing)) - STORED_BEFORE_THE_FAULT[failing]
    assert snapshot(engine) == clean


# --- a crash after a batch is committed, before its companies are rebuilt --------------------


class _Crash(BaseException):
    """Stands for the process dying: no handler in the sync catches it."""


def _dirty_companies(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(DirtyCompany)).scalar_one()


def test_a_crash_between_the_batches_and_their_rebuild_leaves_no_approach_missing(
    config, engine, fakes, jobcenter_exports, clean, monkeypatch
):
    rebuild = sync_module.rebuild_companies
    calls = []

    def crash_on_the_first_rebuild(*args):
        calls.append(args)
        if len(calls) == 1:  # every source's batches are stored; the run's rebuild starts
            raise _Crash
        return rebuild(*args)

    monkeypatch.setattr(sync_module, "rebuild_companies", crash_on_the_first_rebuild)
    with pytest.raises(_Crash):
        sync(config, engine)
    monkeypatch.undo()

    crashed = snapshot(engine)
    assert crashed.records_of(SOURCE_NAMES[1])  # stored, with the cursor past them
    assert len(crashed.approaches) < len(clean.approaches)
    assert _dirty_companies(engine) > 0
    result = sync(config, engine)
    assert result.ok
    assert outcome(result, SOURCE_NAMES[1]).counts.new == 0  # nothing re-read to rebuild from
    assert snapshot(engine) == clean
    assert _dirty_companies(engine) == 0


def test_a_failing_rebuild_is_reported_and_its_companies_are_finished_by_the_next_run(
    config, engine, fakes, jobcenter_exports, clean, monkeypatch
):
    def failing_rebuild(*args):
        raise RuntimeError("the rebuild broke")

    monkeypatch.setattr(sync_module, "rebuild_companies", failing_rebuild)
    result = sync(config, engine)
    monkeypatch.undo()

    assert not result.ok
    recorded = run_sources(engine, result.run_id)
    assert set(recorded) == set(SOURCE_NAMES)
    for name in SOURCE_NAMES:  # every source touched companies that were not rebuilt
        assert outcome(result, name).status == "failed"
        assert recorded[name].status == "failed"
        assert recorded[name].error == "RuntimeError: the rebuild broke"
        assert recorded[name].finished_at is not None
    with Session(engine) as session:
        run = session.get(SyncRun, result.run_id)
        assert run.status == "failed"
        assert all(s.last_status == "failed" for s in session.execute(select(Source)).scalars())
        assert all(s.last_success_at is None for s in session.execute(select(Source)).scalars())
    failed = snapshot(engine)
    assert failed.records_of(CRM) and not failed.approaches
    assert _dirty_companies(engine) > 0

    result = sync(config, engine)
    assert result.ok
    assert snapshot(engine) == clean
    assert _dirty_companies(engine) == 0


@pytest.mark.parametrize(
    ("chunk", "after"),
    [(1, sync_module.REBUILD_AFTER), (sync_module.REBUILD_CHUNK, 1)],
    ids=["one-company-per-transaction", "after-every-batch"],
)
def test_how_the_rebuild_is_cut_up_does_not_change_what_is_stored(
    config, engine, fakes, jobcenter_exports, clean, monkeypatch, chunk, after
):
    monkeypatch.setattr(sync_module, "REBUILD_CHUNK", chunk)
    monkeypatch.setattr(sync_module, "REBUILD_AFTER", after)

    assert sync(config, engine).ok

    assert snapshot(engine) == clean


# --- a process killed with SIGKILL ------------------------------------------------------------


def _stored(engine, source_name: str) -> int:
    """The records of ``source_name`` committed so far."""
    with Session(engine) as session:
        query = (
            select(func.count())
            .select_from(SourceRecord)
            .join(Source, Source.id == SourceRecord.source_id)
            .where(Source.name == source_name)
        )
        return session.execute(query).scalar_one()


SLOW_PAGE_SECONDS = 60  # far longer than the test waits: the process is killed meanwhile


def _coordination_command() -> list[str]:
    script = Path(sys.executable).with_name("coordination")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from coordination.cli import main; main()"]


def _wait_until(condition, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"coordination sync ended before it was killed:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail("coordination sync never reached the slow page")
        time.sleep(0.02)


@pytest.fixture
def start_sync_process(tmp_path, db_url, fakes, jobcenter_exports):
    """``start() -> Popen`` of ``coordination sync`` on the test database, configured through a
    TOML file; the process is killed at the end of the test if it still runs."""
    processes: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        config_file = tmp_path / "coordination.toml"
        config_file.write_text(
            toml_text({"sources": source_tables(fakes, jobcenter_exports, QUICK_GIVE_UP)}),
            encoding="utf-8",
        )
        environment = {
            **os.environ,
            **SECRETS,
            "COORDINATION_CONFIG": str(config_file),
            "COORDINATION_DATABASE_URL": db_url,
        }
        process = subprocess.Popen(
            _coordination_command() + ["sync"],
            env=environment,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.mark.parametrize("killed_in", [CRM, VEU_OEST])
def test_a_sync_killed_mid_run_is_completed_by_the_next_run_exactly_as_a_clean_run(
    config, engine, fakes, start_sync_process, killed_in, clean
):
    slow = fakes.for_source(killed_in)
    slow.faults = [("sleep", 0)] * PAGES_SERVED + [("sleep", SLOW_PAGE_SECONDS)]

    process = start_sync_process()
    # The third page is being (slowly) served, and the two before it are stored: the source's
    # reader process asks for a page while the batch before it is stored.
    _wait_until(
        lambda: (
            not slow.faults and _stored(engine, killed_in) == STORED_BEFORE_THE_FAULT[killed_in]
        ),
        process,
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    assert process.returncode == -signal.SIGKILL
    partial = snapshot(engine)
    assert len(partial.records_of(killed_in)) == STORED_BEFORE_THE_FAULT[killed_in]
    assert partial != clean
    result = sync(config, engine)
    assert result.ok
    assert snapshot(engine) == clean
