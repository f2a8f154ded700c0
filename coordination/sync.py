"""The sync engine: runs connectors, stores their batches, and drives the pipeline stages.

Per batch, in ONE transaction: the records, their quarantine, the identity links, the touched
companies (``dirtycompany``) and the connector's new cursor. After the last source of the run
(and on the way when the run has touched very many companies) each touched company's display
fields and approaches are rebuilt once, in chunks, each chunk marking its companies rebuilt in
the same transaction: a company with records in many batches, or from many sources, is rebuilt
once per run, not once per batch or per source (only the approaches the run's changes can
affect are re-derived: ``approach_building.plan_rebuild``). The sources' outcomes are recorded
after that rebuild (a source whose companies could not be rebuilt is recorded as failed). At
the end of the run the coordination rules are applied to every touched company, and the
companies leave ``dirtycompany`` in that transaction. A crash at any point therefore loses
nothing and duplicates nothing: the next run first rebuilds the companies still in
``dirtycompany`` whole (and evaluates them at its end), then re-reads from the last committed
cursor, and re-read records are recognised by their content hash. One failing source does not
stop the others.

A source's first read (its whole history) goes through a reader process
(``coordination.sync_reader``): its connector and the database-free half of storing a batch
(``ingest.read_batch``) run there one batch ahead, on the second core, while this process
stores the batch before; the cursor still commits here, with its batch. Later reads (a night's
delta) are read in this process, where a reader's start would cost more than it saves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing

from sqlalchemy import ARRAY, Engine, Integer, bindparam, delete, false, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from connectors.base import Connector, ConnectorError
from coordination.approach_building import Window, plan_rebuild, rebuild_approaches
from coordination.config import Config, ConfigError, SourceConfig
from coordination.db import int_list, session_scope
from coordination.flagging import evaluate_companies
from coordination.gc_relaxed import relaxed_gc
from coordination.identity.normalise import normalise_organisation_name
from coordination.ingest import BatchCounts, NeedClassifier, finish_batch, prepare_read
from coordination.linking import IdentityStage, refresh_companies
from coordination.models import (
    Company,
    DirtyCompany,
    Organisation,
    Source,
    SyncRun,
    SyncRunSource,
    utcnow,
)
from coordination.reports.facts import refresh_report_facts
from coordination.sync_reader import read_batches, start_fork_server
from coordination.timeutil import local_today

log = logging.getLogger(__name__)

# Companies rebuilt per transaction: bounds the transaction and the records held in memory.
REBUILD_CHUNK = 500
# A run that has touched this many companies not yet rebuilt rebuilds them before it goes on.
REBUILD_AFTER = 50_000
# A long rebuild logs how far it has come every this many companies.
REBUILD_PROGRESS_EVERY = 50 * REBUILD_CHUNK

_DIRTY = DirtyCompany.__table__
_REBUILT = update(_DIRTY).where(_DIRTY.c.company_id.in_(int_list())).values(rebuilt=True)
_EVALUATED = delete(_DIRTY).where(_DIRTY.c.rebuilt.is_(True))


@dataclasses.dataclass
class SourceOutcome:
    name: str
    status: str  # succeeded | failed | stopped
    counts: BatchCounts
    error: str | None = None
    seconds: float = 0.0
    # the companies the source touched (for a failed rebuild) and its sync-run entry
    touched: set[int] = dataclasses.field(default_factory=set, repr=False)
    entry_id: int | None = dataclasses.field(default=None, repr=False)
    source_id: int | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class SyncResult:
    run_id: int
    outcomes: list[SourceOutcome]
    flags_raised: int = 0
    # The companies the run's end evaluated, the day it evaluated them for, and when (UTC) it
    # began to: the nightly flags step leaves them out where nothing has changed since.
    evaluated: frozenset[int] = frozenset()
    evaluated_on: dt.date | None = None
    evaluated_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return all(o.status == "succeeded" for o in self.outcomes)


# progress(source_name, counts_so_far) is called when a source starts (all counts 0) and after
# every stored batch
Progress = Callable[[str, BatchCounts], None]


def register_sources(session: Session, config: Config) -> dict[str, int]:
    """Make sure every configured source and its organisation exist; return source ids."""
    ids: dict[str, int] = {}
    for sc in config.sources:
        organisation = session.execute(
            select(Organisation).where(Organisation.name == sc.organisation)
        ).scalar_one_or_none()
        if organisation is None:
            organisation = Organisation(
                name=sc.organisation,
                name_key=normalise_organisation_name(sc.organisation),
                type=sc.organisation_type,
                municipality_code=sc.municipality_code,
            )
            session.add(organisation)
            session.flush()
        else:
            organisation.type = sc.organisation_type
            organisation.municipality_code = sc.municipality_code
        source = session.execute(select(Source).where(Source.name == sc.name)).scalar_one_or_none()
        if source is None:
            source = Source(name=sc.name, kind=sc.kind, organisation_id=organisation.id)
            session.add(source)
            session.flush()
        else:
            source.kind = sc.kind
            source.organisation_id = organisation.id
        ids[sc.name] = source.id
    return ids


class SyncEngine:
    def __init__(
        self,
        engine: Engine,
        config: Config,
        registry: Mapping[str, type[Connector]],
        classifier: NeedClassifier | None = None,
        stop: threading.Event | None = None,
        reader_process: bool = True,
    ) -> None:
        """``reader_process``: a source's first read runs its connector and the database-free
        half of storing in a child process, alongside the storing of the batch before
        (``coordination.sync_reader``); False reads in this process, as a connector that
        shares state with its caller needs."""
        self.engine = engine
        self.reader_process = reader_process
        self.config = config
        self.registry = registry
        self.classifier = classifier or NeedClassifier()
        self.stop = stop or threading.Event()

    @relaxed_gc
    def run(
        self,
        source_names: Sequence[str] | None = None,
        trigger: str = "cli",
        progress: Progress | None = None,
        on_started: Callable[[int], None] | None = None,
    ) -> SyncResult:
        """Sync the chosen sources once. ``on_started(run_id)`` is called as soon as the run is
        recorded (the API answers 202 with that id while the run goes on)."""
        sources = self._chosen(source_names)
        with session_scope(self.engine) as session:
            source_ids = register_sources(session, self.config)
            run = SyncRun(trigger=trigger)
            session.add(run)
            session.flush()
            run_id = run.id
            states = [session.get(Source, source_ids[sc.name]).state for sc in sources]
        if self.reader_process:
            # Booting now (about 1 s of imports), the readers' fork server is ready when the
            # first source's reader is due, not a second after it.
            start_fork_server(self.registry, states)
        if on_started is not None:
            on_started(run_id)
        # Before the index is read: an interrupted run may have left display names behind.
        touched = self._catch_up()
        # The day each rebuilt company changed from (None: unknown, its facts derived whole).
        since: dict[int, dt.date | None] = dict.fromkeys(touched)
        with Session(self.engine) as session:
            stage = IdentityStage(session)
        outcomes = []
        pending: set[int] = set()  # committed in dirtycompany, not yet rebuilt
        # the records stored new or changed by this run, or moved to another company
        changed: set[int] = set()
        for sc in sources:
            if self.stop.is_set():
                break
            outcome = self._sync_source(
                run_id, sc, source_ids[sc.name], stage, touched, pending, changed, since, progress
            )
            outcomes.append(outcome)
        # Once per run: a company touched by several sources is rebuilt once.
        try:
            self._rebuild(pending, changed, since)
        except Exception as exc:  # the companies stay in dirtycompany for the next run
            log.exception("rebuilding the touched companies failed")
            for o in outcomes:
                if o.status == "succeeded" and o.touched & pending:
                    o.status, o.error = "failed", f"{type(exc).__name__}: {exc}"
        self._finish(outcomes)
        # The end of the run: every company whose approaches may have changed is evaluated.
        today, evaluated_at = local_today(self.config.schedule.timezone), utcnow()
        with session_scope(self.engine) as session:
            raised = evaluate_companies(session, touched, self.config.rules, today)
            session.execute(_EVALUATED)  # every company marked rebuilt is in ``touched``
            refresh_report_facts(session, touched, _dated(session, since))
            run = session.get(SyncRun, run_id)
            run.status = _run_status(outcomes, len(sources))
            run.finished_at = utcnow()
        return SyncResult(run_id, outcomes, raised, frozenset(touched), today, evaluated_at)

    def _chosen(self, source_names: Sequence[str] | None) -> list[SourceConfig]:
        """The configured sources to run, in the order asked for; all when none is named.
        An unknown name is refused before anything runs, naming the sources that exist."""
        if not source_names:
            return list(self.config.sources)
        configured = {sc.name: sc for sc in self.config.sources}
        unknown = [name for name in source_names if name not in configured]
        if unknown:
            known = ", ".join(configured) or "none"
            raise ConfigError(
                "sources", f"no source named {unknown[0]!r} (configured sources: {known})"
            )
        return [configured[name] for name in dict.fromkeys(source_names)]

    def _sync_source(
        self,
        run_id: int,
        sc: SourceConfig,
        source_id: int,
        stage: IdentityStage,
        touched: set[int],
        pending: set[int],
        changed: set[int],
        since: dict[int, dt.date | None],
        progress: Progress | None,
    ) -> SourceOutcome:
        """Fetch, store and link one source; its companies join ``pending`` (rebuilt by the
        run) and ``touched``. Its outcome is recorded by the run after the rebuild."""
        started = time.monotonic()
        counts = BatchCounts()
        with session_scope(self.engine) as session:
            entry = SyncRunSource(sync_run_id=run_id, source_id=source_id)
            session.add(entry)
            session.flush()
            entry_id = entry.id
            state = session.get(Source, source_id).state
        status, error = "succeeded", None
        if progress:
            # Shown at once (a slow first page would otherwise leave the source invisible), and
            # the display measures the source's rate from here.
            progress(sc.name, counts)
        mine: set[int] = set()
        try:
            batches = read_batches(
                sc, self.registry, state, source_id, in_process=not self.reader_process
            )
            with closing(batches):  # a source left early ends its reader process
                for batch in batches:
                    affected = self._store(sc, source_id, batch, stage, counts, pending, changed)
                    pending |= affected
                    touched |= affected
                    mine |= affected
                    if len(pending) >= REBUILD_AFTER:
                        self._rebuild(pending, changed, since)
                    if progress:
                        progress(sc.name, counts)
                    if self.stop.is_set():
                        status, error = "stopped", "stopped on request before the source was done"
                        break
        except ConnectorError as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug or a database error: record it, go on with the others
            log.exception("source %s failed", sc.name)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        return SourceOutcome(
            sc.name, status, counts, error, time.monotonic() - started, mine, entry_id, source_id
        )

    def _store(
        self, sc, source_id, batch, stage, counts: BatchCounts, pending, changed: set[int]
    ) -> set[int]:
        """Store one batch and link its records; returns the companies it touched (they are
        in dirtycompany once this returns)."""
        # The index mirrors committed companies only; rebuild it if this transaction fails.
        try:
            with session_scope(self.engine) as session:
                # Linked before the new records are inserted: they go in with their companies.
                prepared = prepare_read(session, source_id, batch)
                linked = stage.resolve(session, prepared.rows_to_link, stale=pending)
                stored = finish_batch(
                    session, prepared, self.classifier, sc.kind, sc.name, linked.company_of
                )
                stage.write_links(session, linked, stored.ids_by_external)
                affected = linked.affected | stored.previous_company_ids
                _mark_dirty(session, affected - pending)
                session.get(Source, source_id).state = batch.state
        except BaseException:
            with Session(self.engine) as session:
                stage.__init__(session)
            raise
        counts.add(stored.counts)
        changed.update(stored.changed_record_ids)
        changed.update(stage.moved)  # an absorbed company's records: moved, not relinked
        return affected

    def _catch_up(self) -> set[int]:
        """Rebuild the companies left in dirtycompany (by an interrupted run, or all of them
        by :func:`mark_all_for_rebuild`) whole; returns all it left (they are evaluated at the
        end of this run)."""
        with Session(self.engine) as session:
            left = dict(session.execute(select(_DIRTY.c.company_id, _DIRTY.c.rebuilt)).all())
        if left:
            log.info("rebuilding %d companies left in dirtycompany whole", len(left))
            self._rebuild({cid for cid, rebuilt in left.items() if not rebuilt})
        return set(left)

    def _rebuild(
        self,
        pending: set[int],
        changed: set[int] | None = None,
        since: dict[int, dt.date | None] | None = None,
    ) -> None:
        """Rebuild ``pending`` in chunks, one transaction each; rebuilt ones leave the set.
        With ``changed`` (every record this run stored new or changed, or moved to another
        company) only the approaches those changes can affect are re-derived
        (``plan_rebuild``); without it (the companies an interrupted run left, whose changes are
        not known) the companies are rebuilt whole. ``since`` gets the first day of each
        company's window (the report facts are refreshed from there), None for one rebuilt
        whole; a company planned again keeps the earlier day."""
        ids = sorted(pending)
        tolerance = self.config.rules.joint_date_tolerance_days
        windows = None
        if changed is not None and ids:
            # All planned before any is rebuilt: a rebuild relinks the records that moved.
            with Session(self.engine) as session:
                windows = plan_rebuild(session, ids, changed, tolerance)
        if since is not None:
            _note_since(since, ids, windows or {})
        for start in range(0, len(ids), REBUILD_CHUNK):
            chunk = ids[start : start + REBUILD_CHUNK]
            with session_scope(self.engine) as session:
                rebuild_companies(session, chunk, tolerance, windows)
            pending.difference_update(chunk)
            if start and start % REBUILD_PROGRESS_EVERY == 0:  # a rebuild of all takes minutes
                log.info("rebuilt %d of %d companies", start, len(ids))
        if changed is not None:
            # Every changed record's company is rebuilt now: their changes are in the stored
            # approaches, so the set need not grow with the whole run (1,000,000 ids ~ 60 MB).
            changed.clear()

    def _finish(self, outcomes: list[SourceOutcome]) -> None:
        """Record the sources' outcomes, all in one transaction (one commit, not one per
        source: a nightly run has about 25 sources, most of which deliver nothing)."""
        with session_scope(self.engine) as session:
            for outcome in outcomes:
                status, error, counts = outcome.status, outcome.error, outcome.counts
                entry = session.get(SyncRunSource, outcome.entry_id)
                entry.status = status
                entry.error = error
                entry.finished_at = utcnow()
                for field in dataclasses.fields(counts):
                    setattr(entry, field.name, getattr(counts, field.name))
                source = session.get(Source, outcome.source_id)
                source.last_status = status
                if status == "succeeded":
                    source.last_success_at = utcnow()
        for outcome in outcomes:
            counts, error = outcome.counts, outcome.error
            log.info(
                "source=%s status=%s fetched=%d new=%d updated=%d unchanged=%d quarantined=%d%s",
                outcome.name,
                outcome.status,
                counts.fetched,
                counts.new,
                counts.updated,
                counts.unchanged,
                counts.quarantined,
                f" error={error!r}" if error else "",
            )


def _dated(session: Session, since: dict[int, dt.date | None]) -> dict[int, dt.date]:
    """The companies whose report facts are refreshed from a day on, not over their whole
    history. On SQLite none: there the dated statements are no faster (the nightly delta on
    223,171 records, both on copies of one database: 3.1 s against 3.0 s for the report facts;
    on both, 2.2-2.5 s is the statement that derives and compares the need facts)."""
    if session.get_bind().dialect.name != "postgresql":
        return {}
    return {company_id: day for company_id, day in since.items() if day is not None}


def _note_since(since: dict[int, dt.date | None], ids: list[int], windows) -> None:
    for company_id in ids:
        window = windows.get(company_id)
        if window is None or (company_id in since and since[company_id] is None):
            since[company_id] = None  # rebuilt whole (now or before in the run)
        elif window.since is not None:  # None: nothing of it changed
            earlier = since.get(company_id)
            since[company_id] = window.since if earlier is None else min(earlier, window.since)
        else:
            since.setdefault(company_id, dt.date.max)


def rebuild_companies(
    session: Session,
    company_ids: list[int],
    tolerance_days: int,
    windows: Mapping[int, Window] | None = None,
) -> None:
    """Display fields and approaches of ``company_ids`` follow their records (the approaches
    in their ``windows`` where they have one); they are marked rebuilt in dirtycompany in the
    same transaction."""
    refresh_companies(session, company_ids)
    rebuild_approaches(session, company_ids, tolerance_days, windows)
    session.execute(_REBUILT, {"ids": list(company_ids)})


def mark_all_for_rebuild(session: Session) -> int:
    """Put every company in dirtycompany, so that the next sync run rebuilds all of them whole
    and re-evaluates them before it reads any source. Needed after a configuration change the
    stored approaches depend on (``joint_date_tolerance_days``, a source's organisation): a
    sync otherwise re-derives only the stretches of history its own changes touch. Returns the
    number of companies."""
    session.execute(delete(_DIRTY))
    done = session.execute(
        _DIRTY.insert().from_select(["company_id", "rebuilt"], select(Company.id, false()))
    )
    return done.rowcount or 0


def _mark_dirty(session: Session, company_ids: set[int]) -> None:
    if not company_ids:
        return
    if session.get_bind().dialect.name == "postgresql":  # one statement, not one per company
        session.execute(_MARK_DIRTY_PG, {"ids": sorted(company_ids)})
        return
    statement = sqlite.insert(_DIRTY).on_conflict_do_update(
        index_elements=[_DIRTY.c.company_id], set_={"rebuilt": False}
    )
    rows = [{"company_id": cid, "rebuilt": False} for cid in sorted(company_ids)]
    session.execute(statement, rows)


_MARK_DIRTY_PG = (
    postgresql.insert(_DIRTY)
    .from_select(
        ["company_id", "rebuilt"],
        select(func.unnest(bindparam("ids", type_=ARRAY(Integer))), false()),
    )
    .on_conflict_do_update(index_elements=[_DIRTY.c.company_id], set_={"rebuilt": False})
)


def _run_status(outcomes: list[SourceOutcome], planned: int) -> str:
    if len(outcomes) < planned or any(o.status == "stopped" for o in outcomes):
        return "stopped"
    return "succeeded" if all(o.status == "succeeded" for o in outcomes) else "failed"
