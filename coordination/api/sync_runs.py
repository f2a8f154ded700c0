"""Sync runs (admin): history, starting a run, and the staleness of each source."""

from __future__ import annotations

import dataclasses

from flask import current_app, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates
from sqlalchemy import func, select
from sqlmodel import Session

from coordination.api.approaches import documented_errors
from coordination.api.auth import requires
from coordination.api.common import PageArgs, audit, config, engine, page_schema, unit_of_work
from coordination.models import Source, SyncRun, SyncRunSource
from coordination.services import SyncAlreadyRunning, source_health, start_sync_in_background

blp = Blueprint("sync-runs", __name__, url_prefix="/api/v1/sync-runs", description="Sync runs")


class SourceCountsSchema(Schema):
    source = fields.String()
    status = fields.String()
    fetched = fields.Integer()
    new = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    quarantined = fields.Integer()
    removed = fields.Integer()
    error = fields.String(allow_none=True)
    started_at = fields.AwareDateTime()
    finished_at = fields.AwareDateTime(allow_none=True)
    duration_seconds = fields.Float(allow_none=True, metadata={"description": "null while running"})


class SyncRunSchema(Schema):
    id = fields.Integer()
    trigger = fields.String(metadata={"description": "cli | api | scheduler | demo"})
    status = fields.String(metadata={"description": "running | succeeded | failed"})
    started_at = fields.AwareDateTime()
    finished_at = fields.AwareDateTime(allow_none=True)
    duration_seconds = fields.Float(allow_none=True, metadata={"description": "null while running"})
    error = fields.String(
        allow_none=True, metadata={"description": "the errors of the sources that did not succeed"}
    )
    sources = fields.List(fields.Nested(SourceCountsSchema))


SyncRunPage = page_schema(SyncRunSchema, "SyncRunPage")
MAX_ID = 2**31 - 1  # larger ids cannot exist, and SQLite cannot even bind some of them


class StartSyncSchema(Schema):
    sources = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        load_default=None,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Only these configured sources (default: all of them)."},
    )

    @validates("sources")
    def _configured(self, names, **_kwargs) -> None:
        if names is None:
            return
        known = {source.name for source in config().sources}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValidationError(f"not configured source(s): {', '.join(unknown)}")


class SourceHealthSchema(Schema):
    name = fields.String(required=True)
    kind = fields.String(required=True)
    organisation = fields.String(required=True)
    last_success_at = fields.AwareDateTime(allow_none=True, required=True)
    last_status = fields.String(
        allow_none=True, required=True, metadata={"description": "succeeded | failed | stopped"}
    )
    stale = fields.Boolean(
        required=True,
        metadata={"description": "failed on its last run, or no success for over 48 hours"},
    )
    stale_reason = fields.String(allow_none=True, required=True)


SourceHealthPage = page_schema(SourceHealthSchema, "SourceHealthPage")


@blp.route("")
class SyncRuns(MethodView):
    @requires("admin")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, SyncRunPage)
    @documented_errors(401, 403)
    def get(self, args):
        """History of sync runs, newest first, with counts per source."""
        with Session(engine()) as session:
            total = session.execute(select(func.count()).select_from(SyncRun)).scalar_one()
            runs = session.execute(
                select(SyncRun)
                .order_by(SyncRun.id.desc())
                .offset((args["page"] - 1) * args["page_size"])
                .limit(args["page_size"])
            ).scalars()
            items = [_run(session, run) for run in runs]
        return {
            "items": items,
            "page": args["page"],
            "page_size": args["page_size"],
            "total": total,
        }

    @requires("admin")
    @blp.arguments(StartSyncSchema, required=False)
    @blp.response(202, SyncRunSchema)
    @blp.alt_response(409, description="A sync run is already in progress (the sync lock is held).")
    @documented_errors(401, 403)
    def post(self, args):
        """Start a sync run in the background; answers at once with the run (status running).

        Follow it with ``GET /api/v1/sync-runs/{id}``. Refused with 409 while another run (from
        the scheduler, the command line or this API, on any machine) is in progress."""
        names = args.get("sources")
        names = list(dict.fromkeys(names)) if names else None  # each source once
        try:
            background = start_sync_in_background(config(), engine(), names, trigger="api")
        except SyncAlreadyRunning as exc:
            abort(409, message=str(exc))
        # Kept so that tests and a shutting-down worker can wait for them; finished ones go.
        extension = current_app.extensions["coordination"]
        running = [b for b in extension.get("background_syncs", []) if b.thread.is_alive()]
        extension["background_syncs"] = [*running, background]
        with unit_of_work() as session:
            audit(
                session,
                "sync.start",
                f"sync-run:{background.run_id}",
                sources=names or "all",
            )
            run = session.get(SyncRun, background.run_id)
            body = _run(session, run)
        location = url_for("sync-runs.SyncRunById", run_id=background.run_id)
        return body, 202, {"Location": location}


@blp.route("/<int:run_id>")
class SyncRunById(MethodView):
    @requires("admin")
    @blp.response(200, SyncRunSchema)
    @blp.alt_response(404, description="No such sync run.")
    @documented_errors(401, 403)
    def get(self, run_id):
        """One sync run with its counts per source."""
        with Session(engine()) as session:
            run = session.get(SyncRun, run_id) if run_id <= MAX_ID else None
            if run is None:
                abort(404, message=f"no sync run {run_id}")
            return _run(session, run)


@blp.route("/sources")
class SourceStaleness(MethodView):
    @requires("admin")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, SourceHealthPage)
    @documented_errors(401, 403)
    def get(self, args):
        """Every configured source with its last successful sync and whether it is stale (it
        failed on its last run, has not succeeded for more than 48 hours, or never has)."""
        with Session(engine()) as session:
            health = source_health(session, config())
        start = (args["page"] - 1) * args["page_size"]
        items = [
            {**dataclasses.asdict(entry), "stale": entry.stale}
            for entry in health[start : start + args["page_size"]]
        ]
        return {
            "items": items,
            "page": args["page"],
            "page_size": args["page_size"],
            "total": len(health),
        }


def _run(session: Session, run: SyncRun) -> dict:
    rows = session.execute(
        select(SyncRunSource, Source.name)
        .join(Source, Source.id == SyncRunSource.source_id)
        .where(SyncRunSource.sync_run_id == run.id)
        .order_by(SyncRunSource.id)
    ).all()
    sources = [
        {"source": name, **entry.model_dump(), "duration_seconds": _duration(entry)}
        for entry, name in rows
    ]
    errors = [f"{s['source']}: {s['error']}" for s in sources if s["error"]]
    return {
        **run.model_dump(),
        "duration_seconds": _duration(run),
        "error": "; ".join(errors) or None,
        "sources": sources,
    }


def _duration(entry: SyncRun | SyncRunSource) -> float | None:
    if entry.finished_at is None:
        return None
    return round((entry.finished_at - entry.started_at).total_seconds(), 3)
