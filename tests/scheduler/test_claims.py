"""Job claims: each scheduled occurrence runs in exactly one process, and the claims are the
job history (with abandoned runs visible as such)."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlmodel import Session

from coordination.db import make_engine, session_scope
from coordination.jobs import (
    NIGHTLY_SYNC,
    Job,
    JobContext,
    Step,
    reevaluate_all_flags,
    warm_report_cache,
)
from coordination.locks import sync_lock
from coordination.models import Approach, Company, Flag, JobClaim, SyncRun, utcnow
from coordination.scheduler import claim_occurrence, claims_status, run_occurrence
from coordination.sync import SyncResult
from coordination.timeutil import local_today
from tests.scheduler import csv_source, jobcenter_row, make_config, write_export

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
FIRE = dt.datetime(2026, 3, 3, 1, 0, tzinfo=dt.UTC)  # 02:00 in Copenhagen


def claim(engine, fire_time=FIRE, job_id="nightly-sync", by="host-a:1") -> bool:
    with session_scope(engine) as session:
        return claim_occurrence(session, job_id, fire_time, by)


def claims(engine) -> list[JobClaim]:
    with Session(engine) as session:
        return list(session.execute(select(JobClaim).order_by(JobClaim.fire_time)).scalars())


class Recorder:
    """Steps that write down that they ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def step(self, name: str, problem: str | None = None, error: Exception | None = None) -> Step:
        def run(context: JobContext) -> str | None:
            self.ran.append(name)
            if error is not None:
                raise error
            return problem

        return Step(name, run)


@pytest.fixture
def config(db_url):
    return make_config(db_url)


# --- claiming ---------------------------------------------------------------------------------


def test_the_first_claim_of_an_occurrence_wins_and_the_second_loses(engine):
    assert claim(engine, by="host-a:1") is True
    assert claim(engine, by="host-b:2") is False
    [row] = claims(engine)
    assert row.claimed_by == "host-a:1"
    assert row.status == "running"


def test_the_same_instant_written_in_danish_time_is_the_same_occurrence(engine):
    assert claim(engine, FIRE)
    assert not claim(engine, FIRE.astimezone(COPENHAGEN))
    assert len(claims(engine)) == 1


def test_other_fire_times_and_other_jobs_are_other_occurrences(engine):
    assert claim(engine, FIRE)
    assert claim(engine, FIRE + dt.timedelta(days=1))
    assert claim(engine, FIRE, job_id="another-job")
    assert len(claims(engine)) == 3


def test_concurrent_claims_of_one_occurrence_have_exactly_one_winner(db_url):
    engines = [make_engine(db_url) for _ in range(6)]
    start = threading.Barrier(len(engines))
    results: list[bool] = []

    def contend(index: int) -> None:
        start.wait()
        results.append(claim(engines[index], by=f"host:{index}"))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for engine in engines:
        engine.dispose()
    assert sorted(results) == [False] * 5 + [True]


# --- the history ------------------------------------------------------------------------------


def test_an_old_claim_that_never_finished_is_listed_as_abandoned(engine):
    now = dt.datetime.now(dt.UTC)
    with session_scope(engine) as session:
        session.add(
            JobClaim(
                job_id="nightly-sync",
                fire_time=now - dt.timedelta(days=1),
                claimed_by="dead-host:99",
                claimed_at=now - dt.timedelta(days=1),
            )
        )
        session.add(
            JobClaim(
                job_id="nightly-sync",
                fire_time=now - dt.timedelta(minutes=5),
                claimed_by="live-host:7",
                claimed_at=now - dt.timedelta(minutes=5),
            )
        )
    with Session(engine) as session:
        views = claims_status(session, now=now, abandoned_after=dt.timedelta(hours=12))
    assert [(v.claimed_by, v.status) for v in views] == [
        ("live-host:7", "running"),
        ("dead-host:99", "abandoned"),
    ]
    assert views[1].finished_at is None


def test_a_finished_claim_keeps_its_status_however_old(engine, config):
    job = Job("old-job", "a job", "sync_cron", steps=())
    fire = dt.datetime(2025, 1, 1, 1, 0, tzinfo=dt.UTC)
    run_occurrence(job, fire, config, engine, threading.Event(), "host-a:1")
    with Session(engine) as session:
        [view] = claims_status(session, abandoned_after=dt.timedelta(seconds=1))
    assert view.status == "succeeded"
    assert view.fire_time == fire


# --- running one occurrence -------------------------------------------------------------------


def test_an_occurrence_runs_its_steps_in_order_and_is_recorded_as_succeeded(engine, config):
    recorder = Recorder()
    job = Job("test-job", "a job", "sync_cron", (recorder.step("one"), recorder.step("two")))
    status = run_occurrence(job, FIRE, config, engine, threading.Event(), "host-a:1")
    assert status == "succeeded"
    assert recorder.ran == ["one", "two"]
    [row] = claims(engine)
    assert (row.job_id, row.status, row.error) == ("test-job", "succeeded", None)
    assert row.finished_at is not None


def test_an_occurrence_claimed_elsewhere_does_not_run_here(engine, config):
    recorder = Recorder()
    job = Job("test-job", "a job", "sync_cron", (recorder.step("one"),))
    claim(engine, FIRE, job_id="test-job", by="host-b:2")
    status = run_occurrence(job, FIRE, config, engine, threading.Event(), "host-a:1")
    assert status == "claimed_elsewhere"
    assert recorder.ran == []
    [row] = claims(engine)
    assert (row.claimed_by, row.status) == ("host-b:2", "running")


def test_an_occurrence_is_skipped_while_another_sync_holds_the_lock(engine, config):
    recorder = Recorder()
    job = Job("test-job", "a job", "sync_cron", (recorder.step("one"),))
    with sync_lock(engine):
        status = run_occurrence(job, FIRE, config, engine, threading.Event(), "host-a:1")
    assert status == "skipped"
    assert recorder.ran == []
    [row] = claims(engine)
    assert row.status == "skipped"
    assert "holds the sync lock" in row.error


def test_a_step_that_raises_fails_the_occurrence_and_the_rest_does_not_run(engine, config):
    recorder = Recorder()
    boom = RuntimeError("disk full")
    job = Job(
        "test-job", "a job", "sync_cron", (recorder.step("one", error=boom), recorder.step("two"))
    )
    status = run_occurrence(job, FIRE, config, engine, threading.Event(), "host-a:1")
    assert status == "failed"
    assert recorder.ran == ["one"]
    [row] = claims(engine)
    assert row.error == "step one: RuntimeError: disk full"


def test_a_step_problem_fails_the_occurrence_but_later_steps_still_run(engine, config):
    recorder = Recorder()
    steps = (recorder.step("sync", problem="sources failed: veu"), recorder.step("flags"))
    job = Job("test-job", "a job", "sync_cron", steps)
    status = run_occurrence(job, FIRE, config, engine, threading.Event(), "host-a:1")
    assert status == "failed"
    assert recorder.ran == ["sync", "flags"]
    assert claims(engine)[0].error == "sync: sources failed: veu"


def test_a_stop_request_during_a_step_leaves_the_remaining_steps_unrun(engine, config):
    stop = threading.Event()
    ran = []

    def interrupted(context: JobContext) -> None:
        ran.append("sync")
        stop.set()  # as SIGTERM does while the sync runs

    job = Job(
        "test-job", "a job", "sync_cron", (Step("sync", interrupted), Step("flags", ran.append))
    )
    status = run_occurrence(job, FIRE, config, engine, stop, "host-a:1")
    assert status == "stopped"
    assert ran == ["sync"]
    assert claims(engine)[0].error == "stopped on request; not run: flags"


def test_the_lock_is_free_again_after_an_occurrence(engine, config):
    job = Job("test-job", "a job", "sync_cron", steps=())
    run_occurrence(job, FIRE, config, engine, threading.Event(), "host-a:1")
    lock = sync_lock(engine)
    assert lock.try_acquire()
    lock.release()


# --- the nightly job --------------------------------------------------------------------------


def test_the_nightly_job_syncs_reevaluates_flags_applies_retention_then_caches_reports():
    steps = ["sync", "flags", "retention", "reports"]
    assert [step.name for step in NIGHTLY_SYNC.steps] == steps


def test_the_nightly_reports_step_caches_the_report_pages_and_empties_the_change_log(
    engine, config
):
    from coordination.models import ReportCache, ReportFactChange
    from coordination.reports.facts import mark_facts_changed, refresh_report_facts

    with session_scope(engine) as session:
        refresh_report_facts(session)
        mark_facts_changed(session)
    warm_report_cache(JobContext(config, engine, threading.Event(), sync_lock(engine)))
    with Session(engine) as session:
        kinds = set(session.execute(select(ReportCache.kind)).scalars())
        changes = session.execute(select(ReportFactChange.id)).scalars().all()
    assert kinds == {"needs-page", "coordination-facts", "coordination-checks"}
    assert len(changes) == 1


def test_the_nightly_job_syncs_every_source_as_the_scheduler(engine, db_url, tmp_path):
    folder = tmp_path / "drop"
    write_export(folder, "virksomhedskontakter_1.csv", [jobcenter_row("1", "Ærø Smed ApS")])
    config = make_config(db_url, [csv_source(folder)])
    status = run_occurrence(NIGHTLY_SYNC, FIRE, config, engine, threading.Event(), "host-a:1")
    assert status == "succeeded"
    with Session(engine) as session:
        [run] = session.execute(select(SyncRun)).scalars()
    assert (run.trigger, run.status) == ("scheduler", "succeeded")


def test_the_flag_step_evaluates_every_company_not_only_those_a_sync_touched(engine, config):
    today = dt.date.today()
    with session_scope(engine) as session:
        company = Company(name="Bøgh & Søn ApS", name_key="bogh son")
        session.add(company)
        session.flush()
        visits = [(30, "Jobcenter Århus"), (20, "VEU-center Østjylland"), (10, "Jobcenter Århus")]
        for key, (days_ago, organisation) in enumerate(visits, start=1):
            session.add(
                Approach(
                    group_key=key,
                    company_id=company.id,
                    date=today - dt.timedelta(days=days_ago),
                    organisations=[organisation],
                )
            )
    with sync_lock(engine) as lock:
        reevaluate_all_flags(JobContext(config, engine, threading.Event(), lock))
    with Session(engine) as session:
        [flag] = session.execute(select(Flag)).scalars()
    assert flag.status == "open"
    assert sorted(flag.organisations) == ["Jobcenter Århus", "VEU-center Østjylland"]


def test_the_flag_step_leaves_out_the_companies_the_jobs_sync_has_just_evaluated(
    engine, config, monkeypatch
):
    import coordination.jobs as jobs

    today = local_today(config.schedule.timezone)
    with session_scope(engine) as session:
        ids = []
        for key in range(1, 5):  # an approach dated today makes each company due
            company = Company(name=f"Firma {key} ApS", name_key=f"firma {key}")
            session.add(company)
            session.flush()
            session.add(
                Approach(group_key=key, company_id=company.id, date=today, organisations=["A"])
            )
            ids.append(company.id)
    synced = SyncResult(1, [], 0, frozenset(ids[:2]), today, utcnow())
    monkeypatch.setattr("coordination.services.run_sync", lambda *args, **kwargs: synced)
    evaluated = []
    monkeypatch.setattr(
        jobs, "evaluate_companies", lambda session, due, *args: evaluated.append(sorted(due))
    )
    with sync_lock(engine) as lock:
        context = JobContext(config, engine, threading.Event(), lock)
        for step in NIGHTLY_SYNC.steps[:2]:
            step.run(context)
    assert evaluated == [ids[2:]]


def test_the_jobs_command_lists_runs_with_abandoned_ones_marked(engine, db_url, monkeypatch):
    from click.testing import CliRunner

    from coordination.cli import main

    long_ago = dt.datetime(2026, 3, 3, 1, 0, tzinfo=dt.UTC)
    with session_scope(engine) as session:
        session.add(
            JobClaim(
                job_id="nightly-sync",
                fire_time=long_ago,
                claimed_by="dead-host:99",
                claimed_at=long_ago,
            )
        )
    monkeypatch.setenv("COORDINATION_DATABASE_URL", db_url)
    monkeypatch.delenv("COORDINATION_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["jobs"])
    assert result.exit_code == 0, result.output
    assert "2026-03-03T02:00:00+01:00  abandoned  dead-host:99" in result.output
