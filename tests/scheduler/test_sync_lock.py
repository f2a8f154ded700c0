"""The sync lock: one sync at a time per database, and a dead holder never keeps it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from coordination.locks import sync_lock
from coordination.models import SourceRecord, SyncRun
from coordination.services import SyncAlreadyRunning, run_sync
from tests.scheduler import csv_source, jobcenter_row, make_config, wait_for, write_export


@pytest.fixture
def drop_folder(tmp_path):
    folder = tmp_path / "drop"
    write_export(folder, "virksomhedskontakter_20260303.csv", [jobcenter_row("1", "Bøgh ApS")])
    return folder


def count(engine, model) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_second_holder_is_refused_while_the_lock_is_held(engine):
    first, second = sync_lock(engine), sync_lock(engine)
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
    finally:
        first.release()
    assert second.try_acquire()
    second.release()


def test_the_lock_as_a_context_manager_refuses_with_sync_already_running(engine):
    first, second = sync_lock(engine), sync_lock(engine)
    with first, pytest.raises(SyncAlreadyRunning, match="already in progress"), second:
        pass


def test_run_sync_is_refused_while_another_run_holds_the_lock(engine, db_url, drop_folder):
    config = make_config(db_url, [csv_source(drop_folder)])
    with sync_lock(engine), pytest.raises(SyncAlreadyRunning):
        run_sync(config, engine=engine)
    assert count(engine, SyncRun) == 0
    assert count(engine, SourceRecord) == 0


def test_run_sync_gives_the_lock_back_when_it_is_done(engine, db_url, drop_folder):
    config = make_config(db_url, [csv_source(drop_folder)])
    result = run_sync(config, engine=engine)
    assert result.ok
    assert count(engine, SourceRecord) == 1
    lock = sync_lock(engine)
    assert lock.try_acquire()
    lock.release()


def test_run_sync_with_the_lock_already_held_by_the_caller_runs(engine, db_url, drop_folder):
    config = make_config(db_url, [csv_source(drop_folder)])
    with sync_lock(engine) as held:
        result = run_sync(config, engine=engine, held_lock=held)
    assert result.ok
    assert count(engine, SourceRecord) == 1


def test_a_killed_holder_process_releases_the_lock(engine, db_url):
    holder = textwrap.dedent(
        f"""
        import time
        from coordination.db import make_engine
        from coordination.locks import sync_lock
        lock = sync_lock(make_engine({db_url!r}))
        assert lock.try_acquire()
        print("held", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert process.stdout.readline().strip() == "held"
        assert not sync_lock(engine).try_acquire()
        process.kill()
        process.wait(10)
        lock = sync_lock(engine)
        # The kernel (SQLite's file lock) or the server (PostgreSQL's connection) frees it.
        wait_for(lock.try_acquire, 10, "the dead holder's lock to be released")
        lock.release()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stdout.close()
