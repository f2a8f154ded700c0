"""Service layer: the operations the CLI, the API, the scheduler and tests share."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import Session

from connectors.base import load_registry
from coordination.config import Config
from coordination.db import make_engine, session_scope
from coordination.locks import SyncAlreadyRunning, SyncLock, sync_lock
from coordination.models import Source
from coordination.progress import progress_reporter
from coordination.sync import SyncEngine, SyncResult, mark_all_for_rebuild

__all__ = [
    "STALE_AFTER",
    "BackgroundSync",
    "SourceHealth",
    "SyncAlreadyRunning",
    "run_sync",
    "source_health",
    "stale_reason",
    "start_sync_in_background",
]

log = logging.getLogger(__name__)

# A source that has not succeeded for longer than this is stale (issue 6).
STALE_AFTER = dt.timedelta(hours=48)
# How long the API waits for a background run to be recorded before giving up on the answer.
RUN_START_TIMEOUT_SECONDS = 60.0


def run_sync(
    config: Config,
    source_names: Sequence[str] | None = None,
    trigger: str = "cli",
    interactive: bool = False,
    stop: threading.Event | None = None,
    engine=None,
    held_lock: SyncLock | None = None,
    rebuild_all: bool = False,
) -> SyncResult:
    """Sync ``source_names`` (default: all configured sources) once, under the sync lock.

    Raises :class:`SyncAlreadyRunning` at once, before anything is written, when another run
    (from any process or machine) holds the lock. A caller that already holds the lock (the
    scheduler, the API's background run) passes it as ``held_lock``. Setting ``stop`` makes the
    run finish the batch it is storing, keep its cursor and return. ``rebuild_all`` first
    rebuilds every company's approaches whole and re-evaluates its flags (after a change of the
    configuration they depend on; see :func:`coordination.sync.mark_all_for_rebuild`).
    """
    if engine is None:  # our own engine: closed again so no connection outlives the run
        own = make_engine(config.database_url)
        try:
            return run_sync(
                config, source_names, trigger, interactive, stop, own, held_lock, rebuild_all
            )
        finally:
            own.dispose()
    if held_lock is not None:
        if not held_lock.held:
            raise RuntimeError("run_sync was given a sync lock that is not held")
        return _run(config, engine, source_names, trigger, interactive, stop, rebuild_all)
    with sync_lock(engine):
        return _run(config, engine, source_names, trigger, interactive, stop, rebuild_all)


def _run(
    config, engine, source_names, trigger, interactive, stop, rebuild_all=False, on_started=None
) -> SyncResult:
    mark_interrupted_runs(engine)
    if rebuild_all:
        with session_scope(engine) as session:
            log.info("rebuilding all %d companies before the sync", mark_all_for_rebuild(session))
    classifier = _classifier(engine)
    sync_engine = SyncEngine(engine, config, load_registry(), classifier=classifier, stop=stop)
    with progress_reporter(interactive) as progress:
        return sync_engine.run(
            source_names, trigger=trigger, progress=progress, on_started=on_started
        )


def mark_interrupted_runs(engine) -> None:
    """Runs still marked running while we hold the sync lock died with their process (SIGKILL,
    power loss): say so, instead of showing them as running for ever."""
    from sqlalchemy import update

    from coordination.db import session_scope
    from coordination.models import SyncRun, SyncRunSource, utcnow

    with session_scope(engine) as session:
        now = utcnow()
        for table in (SyncRun, SyncRunSource):
            session.execute(
                update(table)
                .where(table.status == "running")
                .values(status="interrupted", finished_at=now)
            )


def _classifier(engine):
    """The need classifier for one run: people's mappings are loaded once, at its start."""
    from sqlmodel import Session

    from coordination.needs.classifier import TaxonomyClassifier
    from coordination.needs.review import MappingOverrides

    with Session(engine) as session:
        return TaxonomyClassifier(overrides=MappingOverrides.load(session))


# --- a run in the background (the API answers 202 with the run's id) --------------------------


@dataclasses.dataclass
class BackgroundSync:
    """A sync run going on in a thread of this process."""

    run_id: int
    thread: threading.Thread
    stop: threading.Event

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)


def start_sync_in_background(
    config: Config,
    engine,
    source_names: Sequence[str] | None = None,
    trigger: str = "api",
) -> BackgroundSync:
    """Take the sync lock now, run the sync in a thread, return once the run is recorded.

    Raises :class:`SyncAlreadyRunning` when the lock is held. The thread releases the lock when
    the run ends, whatever the outcome; ``stop`` on the answer stops it after its current batch.
    """
    lock = sync_lock(engine)
    if not lock.try_acquire():
        raise SyncAlreadyRunning(lock.holder())
    started: concurrent.futures.Future[int] = concurrent.futures.Future()
    stop = threading.Event()

    def announce(run_id: int) -> None:
        if not started.done():
            started.set_result(run_id)

    def work() -> None:
        try:
            result = _run(config, engine, source_names, trigger, False, stop, on_started=announce)
            announce(result.run_id)
        except BaseException as exc:
            log.exception("background sync run failed")
            if not started.done():
                started.set_exception(exc)
        finally:
            lock.release()

    thread = threading.Thread(target=work, name=f"sync-{trigger}", daemon=True)
    try:
        thread.start()
    except BaseException:
        lock.release()
        raise
    return BackgroundSync(started.result(RUN_START_TIMEOUT_SECONDS), thread, stop)


# --- source staleness -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceHealth:
    name: str
    kind: str
    organisation: str
    last_success_at: dt.datetime | None
    last_status: str | None
    stale_reason: str | None

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None


def stale_reason(
    last_status: str | None, last_success_at: dt.datetime | None, now: dt.datetime
) -> str | None:
    """Why a source is stale (failed last run, no success for 48 hours, never succeeded),
    or None when it is current."""
    if last_status == "failed":
        return "its last run failed"
    if last_success_at is None:
        return "it has never been synced successfully"
    if now - _aware(last_success_at) > STALE_AFTER:
        hours = int(STALE_AFTER.total_seconds() // 3600)
        return f"no successful sync for more than {hours} hours"
    return None


def source_health(
    session: Session, config: Config, now: dt.datetime | None = None
) -> list[SourceHealth]:
    """Every configured source, in configuration order, with its last sync and staleness."""
    now = now or dt.datetime.now(dt.UTC)
    names = [sc.name for sc in config.sources]
    stored = {
        source.name: source
        for source in session.execute(select(Source).where(Source.name.in_(names))).scalars()
    }
    health = []
    for sc in config.sources:
        source = stored.get(sc.name)
        last_success = _aware(source.last_success_at) if source else None
        last_status = source.last_status if source else None
        health.append(
            SourceHealth(
                name=sc.name,
                kind=sc.kind,
                organisation=sc.organisation,
                last_success_at=last_success,
                last_status=last_status,
                stale_reason=stale_reason(last_status, last_success, now),
            )
        )
    return health


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands datetimes back without their zone; the service stores UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment
