"""The scheduler's jobs, as data: each job has a stable id, the ``[schedule]`` setting that holds
its cron expression, and the steps it runs in order.

Ids are stable because they key the run history (``JobClaim``): renaming one makes the scheduler
treat the renamed job as new. Steps run one after the other in the scheduler's process while it
holds the sync lock. A step returns None when it went well or a short description of a problem
that does not stop the job (e.g. one source failed); an exception stops the job. After each step
the job stops if a stop was requested (SIGTERM).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from coordination.config import Config, Rules
from coordination.db import session_scope
from coordination.flagging import companies_due, evaluate_companies, unchanged_since
from coordination.locks import SyncLock
from coordination.models import JobClaim
from coordination.timeutil import local_today

if TYPE_CHECKING:  # the sync and its connectors load when the sync step runs
    from coordination.sync import SyncResult

# Stable: it keys the run history (JobClaim), which the nightly flags step reads.
NIGHTLY_SYNC_ID = "nightly-sync"


@dataclasses.dataclass(frozen=True)
class JobContext:
    """What a step may use: the configuration, the database, the stop request, the held lock,
    and what earlier steps of the same run left for later ones (``results``, by step name)."""

    config: Config
    engine: Engine
    stop: threading.Event
    lock: SyncLock
    results: dict = dataclasses.field(default_factory=dict)


StepFunction = Callable[[JobContext], str | None]


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    run: StepFunction


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    description: str
    schedule_setting: str  # the [schedule] key with the job's cron expression
    steps: tuple[Step, ...]

    def cron(self, config: Config) -> str:
        return getattr(config.schedule, self.schedule_setting)


def sync_all_sources(context: JobContext) -> str | None:
    """Sync every configured source (under the job's lock); name the sources that failed."""
    from coordination.services import run_sync

    result = run_sync(
        context.config,
        trigger="scheduler",
        stop=context.stop,
        engine=context.engine,
        held_lock=context.lock,
    )
    context.results["sync"] = result
    failed = [o.name for o in result.outcomes if o.status == "failed"]
    return f"sync run {result.run_id}: sources failed: {', '.join(failed)}" if failed else None


def reevaluate_all_flags(context: JobContext) -> str | None:
    """Apply the coordination rules again to every company whose evaluation can have changed
    since the last successful nightly run without new records arriving (planned approaches
    start to count on their date); the result is that of evaluating all companies."""
    rules, timezone = context.config.rules, context.config.schedule.timezone
    today = local_today(timezone)
    with session_scope(context.engine) as session:
        since = last_success_day(session, NIGHTLY_SYNC_ID, timezone)
        due = flags_due(session, today, since, context.results.get("sync"), rules)
        evaluate_companies(session, due, rules, today)
    return None


def flags_due(
    session: Session,
    today: dt.date,
    since: dt.date | None,
    sync: SyncResult | None,
    rules: Rules,
) -> list[int]:
    """The companies due (``companies_due``) but those the job's ``sync`` step has just
    evaluated for ``today`` and that nothing has changed since (``unchanged_since``):
    evaluating them again would store what is stored."""
    if sync is None or sync.evaluated_on is None:
        return companies_due(session, today, since, rules)
    done = unchanged_since(session, sync.evaluated, sync.evaluated_on, sync.evaluated_at, today)
    return companies_due(session, today, since, rules, leave_out=done)


def last_success_day(session: Session, job_id: str, timezone: str) -> dt.date | None:
    """The local day on which the last successful run of ``job_id`` started (None: never).
    A successful run has applied the rules to all companies due on that day."""
    started = session.execute(
        select(func.max(JobClaim.claimed_at)).where(
            JobClaim.job_id == job_id, JobClaim.status == "succeeded"
        )
    ).scalar_one()
    if started is None:
        return None
    if started.tzinfo is None:  # SQLite hands back naive UTC
        started = started.replace(tzinfo=dt.UTC)
    return started.astimezone(ZoneInfo(timezone)).date()


def apply_retention_policy(context: JobContext) -> str | None:
    """Anonymise personal data past its retention period and drop old audit entries."""
    from coordination.privacy import apply_retention

    with session_scope(context.engine) as session:
        apply_retention(session, context.config)
    return None


def warm_report_cache(context: JobContext) -> None:
    """Cache the report pages' first views, counted from the facts as the night left them (the
    log of the day's fact changes is emptied first)."""
    from coordination.reports.facts import forget_fact_changes
    from coordination.web.queries import warm_report_pages

    with session_scope(context.engine) as session:
        forget_fact_changes(session)
        warm_report_pages(
            session, context.config.rules, local_today(context.config.schedule.timezone)
        )


# Steps that follow the nightly sync and flag re-evaluation, in order: add later nightly work
# here as Step(<name>, <function(JobContext) -> problem or None>). The report cache comes last:
# every step before it may change the report facts.
NIGHTLY_FOLLOW_UP_STEPS: tuple[Step, ...] = (
    Step("retention", apply_retention_policy),
    Step("reports", warm_report_cache),
)

NIGHTLY_SYNC = Job(
    id=NIGHTLY_SYNC_ID,
    description="sync all sources, re-evaluate all flags, apply the retention policy, "
    "cache the report pages",
    schedule_setting="sync_cron",
    steps=(
        Step("sync", sync_all_sources),
        Step("flags", reevaluate_all_flags),
        *NIGHTLY_FOLLOW_UP_STEPS,
    ),
)

JOBS: tuple[Job, ...] = (NIGHTLY_SYNC,)


def job_by_id(job_id: str) -> Job:
    for job in JOBS:
        if job.id == job_id:
            return job
    raise KeyError(job_id)
