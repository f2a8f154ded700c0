"""Sync run history (admin)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import func, select
from sqlmodel import Session

from coordination.api.auth import requires
from coordination.api.common import PageArgs, page_schema
from coordination.models import Source, SyncRun, SyncRunSource

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


class SyncRunSchema(Schema):
    id = fields.Integer()
    trigger = fields.String()
    status = fields.String()
    started_at = fields.AwareDateTime()
    finished_at = fields.AwareDateTime(allow_none=True)
    sources = fields.List(fields.Nested(SourceCountsSchema))


SyncRunPage = page_schema(SyncRunSchema, "SyncRunPage")


@blp.route("")
class SyncRuns(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, SyncRunPage)
    @requires("admin")
    def get(self, args):
        """History of sync runs, newest first, with counts per source."""
        engine = current_app.extensions["coordination"]["engine"]
        with Session(engine) as session:
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


def _run(session: Session, run: SyncRun) -> dict:
    rows = session.execute(
        select(SyncRunSource, Source.name)
        .join(Source, Source.id == SyncRunSource.source_id)
        .where(SyncRunSource.sync_run_id == run.id)
    ).all()
    sources = [{"source": name, **entry.model_dump()} for entry, name in rows]
    return {**run.model_dump(), "sources": sources}
