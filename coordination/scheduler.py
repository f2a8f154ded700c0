"""The scheduler: runs the jobs of :mod:`coordination.jobs` on their schedules, exactly once per
scheduled occurrence however many scheduler processes run, on however many machines.

APScheduler 3 keeps its job list in memory in each process (its job stores cannot be shared), so
every process fires every occurrence, and the database decides who runs it:

1. **Claim.** The process inserts a :class:`JobClaim` row keyed on (job id, scheduled fire time
   in UTC) with ``INSERT ... ON CONFLICT DO NOTHING``. Only the process whose row went in runs
   the occurrence; the others log ``outcome=claimed_elsewhere`` and do nothing. The rows are the
   job history (``coordination jobs``, :func:`claims_status`).
2. **Lock.** The winner takes the sync lock (:mod:`coordination.locks`) for the whole job, so the
   job never overlaps a manual sync or a previous night's job that is still running; when the
   lock is held the occurrence is recorded as ``skipped``.
3. **Record.** Status (``succeeded``, ``failed``, ``stopped``, ``skipped``), finish time and
   error go on the claim. A process that dies leaves its claim ``running`` with no finish time;
   :func:`claims_status` shows it as ``abandoned`` once it is older than a limit, its lock died
   with it, and the next occurrence runs normally.

Schedules: the cron expression is read on the wall clock of ``[schedule].timezone``
(:class:`WallClockCronTrigger`), so "0 2 * * *" runs at 02:00 Danish time all year and exactly
once on both daylight-saving nights. A missed occurrence (the process was down or busy) is run
once if it is less than the misfire grace time late, also right after a restart.

SIGTERM or SIGINT sets the stop event: a running sync finishes the batch it is storing, keeps its
cursor, the claim is recorded as ``stopped``, and the process exits. A second signal kills it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from coordination.config import Config
from coordination.db import make_engine, session_scope
from coordination.jobs import JOBS, Job, JobContext
from coordination.locks import holder_description, sync_lock
from coordination.models import JobClaim, utcnow

log = logging.getLogger("coordination.scheduler")

UTC = dt.UTC
# A night missed by less than this (process down, machine suspended) is caught up once.
MISFIRE_GRACE = dt.timedelta(hours=6)
# A claim still "running" after this long, with no finish, belongs to a process that died.
ABANDONED_AFTER = dt.timedelta(hours=12)
# Fixed anchor for --every-seconds: every process computes the same fire times from it.
INTERVAL_ANCHOR = dt.datetime(2020, 1, 1, tzinfo=UTC)


# --- triggers ---------------------------------------------------------------------------------


class WallClockCronTrigger(BaseTrigger):
    """A crontab expression on the wall clock of ``timezone``; each wall-clock time fires once.

    APScheduler's own CronTrigger (3.11) fires a time in the hour that is repeated when summer
    time ends twice and then keeps returning that same time, which hangs its scheduler loop.
    This trigger does the cron arithmetic on naive wall-clock time and maps each matching time to
    one instant: a repeated time to its first occurrence, a time that does not exist (the hour
    skipped when summer time starts) to the same time on the pre-change offset, i.e. one hour
    later on the new clock ("02:30" becomes 03:30 summer time). Fire times are returned in UTC
    and strictly increase.
    """

    __slots__ = ("crontab", "timezone", "_wall")

    def __init__(self, crontab: str, timezone: dt.tzinfo) -> None:
        self.crontab = crontab
        self.timezone = timezone
        # In UTC there is no daylight saving: the cron fields are matched on the plain clock.
        self._wall = CronTrigger.from_crontab(crontab, timezone=UTC)

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        earliest = previous_fire_time + dt.timedelta(microseconds=1) if previous_fire_time else now
        earliest = earliest.astimezone(UTC)
        wall = earliest.astimezone(self.timezone).replace(tzinfo=UTC, fold=0)
        # Only wall times in a skipped or repeated hour can map to instants before ``earliest``,
        # so this takes a few steps at most.
        for _ in range(1000):
            candidate = self._wall.get_next_fire_time(None, wall)
            if candidate is None:
                return None
            instant = candidate.replace(tzinfo=self.timezone, fold=0).astimezone(UTC)
            if instant >= earliest:
                # In UTC: an ambiguous local time never compares equal to another zone's.
                return instant
            wall = candidate + dt.timedelta(microseconds=1)
        return None

    def __str__(self) -> str:
        return f"cron[{self.crontab!r} on the wall clock of {self.timezone}]"

    def __repr__(self) -> str:
        return f"<WallClockCronTrigger ({self.crontab!r}, timezone={str(self.timezone)!r})>"


def aligned_interval_trigger(seconds: int) -> IntervalTrigger:
    """Every ``seconds`` seconds at wall-clock multiples of it (for tests: every process computes
    the same fire times)."""
    return IntervalTrigger(seconds=seconds, start_date=INTERVAL_ANCHOR, timezone=UTC)


def job_trigger(job: Job, config: Config, every_seconds: int | None = None) -> BaseTrigger:
    """The job's trigger: its cron setting on the configured time zone, or the testing interval."""
    if every_seconds:
        return aligned_interval_trigger(every_seconds)
    return WallClockCronTrigger(job.cron(config), ZoneInfo(config.schedule.timezone))


def latest_fire_time(
    trigger: BaseTrigger, now: dt.datetime, window: dt.timedelta
) -> dt.datetime | None:
    """The last fire time in ``(now - window, now]``, or None (used to catch up after a restart)."""
    latest = None
    fire_time = trigger.get_next_fire_time(None, now - window + dt.timedelta(microseconds=1))
    for _ in range(100_000):
        if fire_time is None or fire_time > now:
            break
        latest = fire_time
        fire_time = trigger.get_next_fire_time(fire_time, now)
    return latest


# --- claims -----------------------------------------------------------------------------------


def claim_occurrence(
    session: Session, job_id: str, fire_time: dt.datetime, claimed_by: str
) -> bool:
    """Insert the claim of one occurrence; True for the one caller whose row went in.

    The same statement on SQLite and PostgreSQL; a concurrent claim of the same key waits for
    the first transaction and then does nothing."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(JobClaim)
        .values(
            job_id=job_id,
            fire_time=fire_time.astimezone(UTC),
            claimed_by=claimed_by,
            claimed_at=utcnow(),
            status="running",
        )
        .on_conflict_do_nothing(index_elements=["job_id", "fire_time"])
        .returning(JobClaim.job_id)
    )
    return session.execute(statement).first() is not None


def finish_claim(
    session: Session, job_id: str, fire_time: dt.datetime, status: str, error: str | None
) -> None:
    session.execute(
        update(JobClaim)
        .where(JobClaim.job_id == job_id, JobClaim.fire_time == fire_time.astimezone(UTC))
        .values(status=status, error=error, finished_at=utcnow())
    )


@dataclasses.dataclass(frozen=True)
class ClaimView:
    """One occurrence of a job as the history shows it."""

    job_id: str
    fire_time: dt.datetime
    claimed_by: str
    claimed_at: dt.datetime
    finished_at: dt.datetime | None
    status: str  # running | succeeded | failed | stopped | skipped | abandoned
    error: str | None


def claims_status(
    session: Session,
    now: dt.datetime | None = None,
    abandoned_after: dt.timedelta = ABANDONED_AFTER,
    limit: int = 50,
    job_id: str | None = None,
) -> list[ClaimView]:
    """The latest occurrences, newest first; one still running, unfinished, claimed more than
    ``abandoned_after`` ago shows as ``abandoned`` (its process died)."""
    now = now or dt.datetime.now(UTC)
    query = select(JobClaim).order_by(JobClaim.fire_time.desc(), JobClaim.job_id).limit(limit)
    if job_id is not None:
        query = query.where(JobClaim.job_id == job_id)
    views = []
    for claim in session.execute(query).scalars():
        claimed_at = _aware(claim.claimed_at)
        status = claim.status
        if status == "running" and claim.finished_at is None and now - claimed_at > abandoned_after:
            status = "abandoned"
        views.append(
            ClaimView(
                job_id=claim.job_id,
                fire_time=_aware(claim.fire_time),
                claimed_by=claim.claimed_by,
                claimed_at=claimed_at,
                finished_at=_aware(claim.finished_at),
                status=status,
                error=claim.error,
            )
        )
    return views


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


# --- one occurrence ---------------------------------------------------------------------------


def run_occurrence(
    job: Job,
    fire_time: dt.datetime,
    config: Config,
    engine: Engine,
    stop: threading.Event,
    claimed_by: str | None = None,
) -> str:
    """Claim, lock and run one occurrence of ``job``; returns its status, or
    ``"claimed_elsewhere"`` when another process claimed it first. Never raises for a failing
    step: the failure is logged and recorded on the claim."""
    claimed_by = claimed_by or holder_description()
    fire_utc = fire_time.astimezone(UTC)
    stamp = fire_utc.isoformat()
    with session_scope(engine) as session:
        won = claim_occurrence(session, job.id, fire_utc, claimed_by)
    if not won:
        log.info("job=%s fire_time=%s event=skip outcome=claimed_elsewhere", job.id, stamp)
        return "claimed_elsewhere"
    log.info("job=%s fire_time=%s event=start claimed_by=%s", job.id, stamp, claimed_by)
    started = time.monotonic()
    try:
        status, error = _run_locked(job, config, engine, stop)
    except Exception as exc:  # e.g. the database went away: record it rather than vanish
        log.exception("job=%s fire_time=%s failed", job.id, stamp)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    with session_scope(engine) as session:
        finish_claim(session, job.id, fire_utc, status, error)
    log.info(
        "job=%s fire_time=%s event=end status=%s seconds=%.1f%s",
        job.id,
        stamp,
        status,
        time.monotonic() - started,
        f" error={error!r}" if error else "",
    )
    return status


def _run_locked(
    job: Job, config: Config, engine: Engine, stop: threading.Event
) -> tuple[str, str | None]:
    lock = sync_lock(engine)
    if not lock.try_acquire():
        holder = lock.holder()
        held_by = f" ({holder})" if holder else ""
        return "skipped", f"another sync run holds the sync lock{held_by}"
    try:
        return _run_steps(job, JobContext(config, engine, stop, lock))
    finally:
        lock.release()


def _run_steps(job: Job, context: JobContext) -> tuple[str, str | None]:
    problems = []
    for index, step in enumerate(job.steps):
        if context.stop.is_set():
            not_run = ", ".join(s.name for s in job.steps[index:])
            return "stopped", f"stopped on request; not run: {not_run}"
        try:
            problem = step.run(context)
        except Exception as exc:  # recorded on the claim; the next occurrence runs as usual
            log.exception("job=%s step=%s failed", job.id, step.name)
            return "failed", f"step {step.name}: {type(exc).__name__}: {exc}"
        if problem:
            problems.append(f"{step.name}: {problem}")
    if problems:
        return "failed", "; ".join(problems)
    return "succeeded", None


# --- the APScheduler side ---------------------------------------------------------------------

_occurrence = threading.local()


def scheduled_fire_time() -> dt.datetime:
    """Inside a job run by :class:`OccurrenceExecutor`: the fire time being served."""
    fire_time = getattr(_occurrence, "fire_time", None)
    if fire_time is None:
        raise RuntimeError("not inside a scheduled job run")
    return fire_time


class OccurrenceExecutor(BasePoolExecutor):
    """APScheduler's thread pool executor, except that each run knows its scheduled fire time
    (APScheduler 3 does not pass it to the job; the claim is keyed on it)."""

    def __init__(self, max_workers: int = 4) -> None:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="job")
        super().__init__(pool)

    def _do_submit_job(self, job, run_times):
        # As APScheduler's BasePoolExecutor does, with the fire time set for the job to read.
        def run_each():
            events = []
            for run_time in run_times:
                _occurrence.fire_time = run_time
                try:
                    events += run_job(job, job._jobstore_alias, [run_time], self._logger.name)
                finally:
                    _occurrence.fire_time = None
            return events

        def done(future):
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(run_each).add_done_callback(done)


class JobScheduler:
    """The scheduler of one process. ``start()``/``shutdown()``, or ``run_until_stopped()`` in the
    ``coordination scheduler`` command (which also handles SIGTERM and SIGINT)."""

    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        jobs: Sequence[Job] = JOBS,
        every_seconds: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.engine = engine or make_engine(config.database_url)
        self.jobs = {job.id: job for job in jobs}
        self.every_seconds = every_seconds
        # With the testing interval a late tick is simply dropped: the next one is due soon.
        self.misfire_grace = dt.timedelta(seconds=every_seconds) if every_seconds else MISFIRE_GRACE
        self.stop = stop or threading.Event()
        self.claimed_by = holder_description()
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        zone = ZoneInfo(self.config.schedule.timezone)
        scheduler = BackgroundScheduler(
            executors={"default": OccurrenceExecutor(max_workers=max(1, len(self.jobs)))},
            timezone=zone,
        )
        now = dt.datetime.now(UTC)
        for job in self.jobs.values():
            trigger = job_trigger(job, self.config, self.every_seconds)
            options = {}
            missed = latest_fire_time(trigger, now, self.misfire_grace)
            if missed is not None:
                options["next_run_time"] = missed  # claimed already when it ran: a no-op
            scheduler.add_job(
                self._fire,
                trigger=trigger,
                args=[job.id],
                id=job.id,
                name=job.description,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(self.misfire_grace.total_seconds()),
                replace_existing=True,
                **options,
            )
            log.info("job=%s event=scheduled trigger=%s", job.id, trigger)
        scheduler.start()
        self._scheduler = scheduler
        log.info("event=scheduler_started process=%s jobs=%s", self.claimed_by, ",".join(self.jobs))

    def shutdown(self) -> None:
        """Ask running jobs to stop after their current batch, and wait for them."""
        self.stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        log.info("event=scheduler_stopped process=%s", self.claimed_by)

    def run_until_stopped(self) -> None:
        """Run until SIGTERM or SIGINT (main thread only)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.start()
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self.shutdown()

    def _on_signal(self, signum, _frame) -> None:
        log.info("event=stop_requested signal=%s", signal.Signals(signum).name)
        self.stop.set()
        # A second signal ends the process at once.
        for other in (signal.SIGTERM, signal.SIGINT):
            signal.signal(other, signal.SIG_DFL)

    def _fire(self, job_id: str) -> None:
        if self.stop.is_set():
            return
        run_occurrence(
            self.jobs[job_id],
            scheduled_fire_time(),
            self.config,
            self.engine,
            self.stop,
            self.claimed_by,
        )
