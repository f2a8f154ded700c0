"""Real ``coordination scheduler`` processes on one database, firing every 2 seconds
(``--every-seconds``): each tick runs once whatever the number of processes, a killed lock
holder is replaced on the next tick, and SIGTERM in the middle of a sync loses nothing."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from coordination.demo.fakes import FakeVeuApi
from coordination.models import JobClaim, SourceRecord, SyncRun, SyncRunSource
from coordination.scheduler import claims_status
from coordination.services import run_sync
from tests.scheduler import (
    csv_source,
    jobcenter_row,
    make_config,
    scheduler_processes,
    veu_contact,
    veu_source,
    wait_for,
    write_config_file,
    write_export,
)

pytestmark = pytest.mark.integration

LOG_LINE = re.compile(r"job=nightly-sync fire_time=(\S+) event=(start|skip)")


def all_claims(engine) -> list[JobClaim]:
    with Session(engine) as session:
        return list(session.execute(select(JobClaim).order_by(JobClaim.fire_time)).scalars())


def count(engine, model, *where) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(model)
        return session.execute(query.where(*where) if where else query).scalar_one()


def logged_fire_times(log: str) -> dict[str, str]:
    """fire time -> "start" (ran it) or "skip" (claimed elsewhere), from a scheduler's log."""
    return {fire_time: event for fire_time, event in LOG_LINE.findall(log)}


def pid_of(claim: JobClaim) -> int:
    return int(claim.claimed_by.rsplit(":", 1)[1])


def test_two_scheduler_processes_run_each_tick_exactly_once(engine, db_url, tmp_path):
    folder = tmp_path / "drop"
    write_export(folder, "virksomhedskontakter_1.csv", [jobcenter_row("1", "Ørsted Smedie ApS")])
    config_path = write_config_file(tmp_path / "config.toml", [csv_source(folder)])
    with scheduler_processes(2, tmp_path, config_path, db_url) as processes:
        wait_for(
            lambda: all("event=scheduler_started" in p.log() for p in processes),
            15,
            "both schedulers to start",
        )
        both_running = dt.datetime.now(dt.UTC)

        def ticks_since_both_ran() -> list[JobClaim]:
            claims = [c for c in all_claims(engine) if c.fire_time > both_running]
            return claims if len(claims) >= 3 and all(c.finished_at for c in claims) else []

        wait_for(ticks_since_both_ran, 15, "three ticks with both schedulers up")
        for process in processes:
            process.terminate()
        assert [process.wait(10) for process in processes] == [0, 0]
        logs = [logged_fire_times(process.log()) for process in processes]

    claims = all_claims(engine)
    # A tick that found the previous tick's sync still running is "skipped"; every other tick
    # ran one sync.
    ran = [c for c in claims if c.status != "skipped"]
    assert {c.status for c in ran} == {"succeeded"}
    assert count(engine, SyncRun, SyncRun.trigger == "scheduler") == len(ran)
    assert count(engine, SourceRecord) == 1
    # Each tick was started by exactly one process; the other found it claimed.
    for claim in claims:
        stamp = claim.fire_time.isoformat()
        assert [log.get(stamp) for log in logs].count("start") == 1
    contested = [t for t in logs[0] if t in logs[1]]
    assert contested, "both processes fired the same ticks"
    assert all(sorted([logs[0][t], logs[1][t]]) == ["skip", "start"] for t in contested)


def test_killing_the_lock_holder_lets_the_other_process_take_over(engine, db_url, tmp_path):
    with FakeVeuApi([veu_contact("veu-1", "Åbyhøj Maskinfabrik", "2026-03-04T10:00:00Z")]) as veu:
        veu.faults = [("sleep", 30)]  # the first sync hangs on its first request
        config_path = write_config_file(tmp_path / "config.toml", [veu_source(veu.base_url)])
        with scheduler_processes(2, tmp_path, config_path, db_url) as processes:
            wait_for(lambda: veu.request_count >= 1, 15, "a scheduler's sync to hang")
            # The first claimed tick is the one whose sync hangs (later ones are skipped).
            holder_claim = all_claims(engine)[0]
            assert holder_claim.status == "running"
            holder = next(p for p in processes if p.pid == pid_of(holder_claim))
            survivor = next(p for p in processes if p is not holder)
            # While the holder's sync runs, the next tick is claimed by the other, not overlapped.
            wait_for(
                lambda: any(c.status == "skipped" for c in all_claims(engine)),
                10,
                "a tick skipped because the lock is held",
            )
            holder.kill()
            holder.wait(10)
            taken_over = wait_for(
                lambda: [c for c in all_claims(engine) if c.status == "succeeded"],
                15,
                "the other scheduler to run a tick",
            )
            survivor.terminate()
            assert survivor.wait(10) == 0

    assert pid_of(taken_over[0]) == survivor.pid
    assert taken_over[0].fire_time > holder_claim.fire_time
    assert count(engine, SourceRecord) == 1
    with Session(engine) as session:
        views = claims_status(session, abandoned_after=dt.timedelta(0))
    dead = next(v for v in views if v.fire_time == holder_claim.fire_time)
    assert (dead.status, dead.finished_at) == ("abandoned", None)


def test_sigterm_in_the_middle_of_a_sync_loses_nothing(engine, db_url, tmp_path):
    contacts = [
        veu_contact(f"veu-{n}", f"Virksomhed nr. {n} ApS", f"2026-03-04T10:0{n}:00Z")
        for n in range(8)
    ]
    with FakeVeuApi(contacts) as veu:
        veu.faults = [("sleep", 0.5)] * 4  # four pages of two, each a little slow
        source = veu_source(veu.base_url, page_size=2)
        config_path = write_config_file(tmp_path / "config.toml", [source])
        with scheduler_processes(1, tmp_path, config_path, db_url) as [process]:
            wait_for(lambda: count(engine, SourceRecord) > 0, 20, "the first batch to be stored")
            process.terminate()
            assert process.wait(15) == 0

        [claim] = all_claims(engine)
        assert claim.status == "stopped"
        [interrupted] = all_source_runs(engine)
        assert interrupted.status == "stopped"
        stored_before = count(engine, SourceRecord)
        assert 0 < stored_before < len(contacts)

        veu.faults.clear()
        result = run_sync(make_config(db_url, [source]), engine=engine, stop=threading.Event())

    assert result.ok
    [resumed] = result.outcomes
    assert resumed.counts.new == len(contacts) - stored_before
    assert resumed.counts.unchanged == stored_before
    with Session(engine) as session:
        ids = session.execute(select(SourceRecord.external_id)).scalars().all()
    assert sorted(ids) == sorted(c["id"] for c in contacts)


def all_source_runs(engine) -> list[SyncRunSource]:
    with Session(engine) as session:
        return list(session.execute(select(SyncRunSource).order_by(SyncRunSource.id)).scalars())
