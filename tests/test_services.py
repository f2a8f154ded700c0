"""The service layer's run bookkeeping."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from coordination.db import session_scope
from coordination.models import SyncRun
from coordination.services import run_sync


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(engine, service_config):
    with session_scope(engine) as session:
        session.add(SyncRun(trigger="cli", status="running"))

    result = run_sync(service_config, engine=engine)

    with Session(engine) as session:
        statuses = dict(session.execute(select(SyncRun.id, SyncRun.status)).all())
    assert statuses == {1: "interrupted", result.run_id: "succeeded"}
