"""The demo builds a working service from nothing: deliveries, fake servers, sync, tokens."""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack

from sqlalchemy import func, select
from sqlmodel import Session

from coordination import create_app
from coordination.db import make_engine
from coordination.demo.run import prepare_demo
from coordination.models import Approach, Flag, QuarantinedRecord, SyncRunSource


def test_demo_syncs_every_source_and_serves_a_prior_contact_check(tmp_path):
    with ExitStack() as stack:
        setup = prepare_demo(tmp_path / "demo", stack, today=dt.date(2026, 11, 27))
        engine = make_engine(setup.config.database_url)
        with Session(engine) as session:
            statuses = session.execute(select(SyncRunSource.status)).scalars().all()
            assert statuses == ["succeeded"] * 6
            assert session.execute(select(func.count()).select_from(QuarantinedRecord)).scalar()
            joint = select(func.count()).select_from(Approach).where(Approach.joint.is_(True))
            assert session.execute(joint).scalar_one() > 0
            assert session.execute(select(func.count()).select_from(Flag)).scalar_one() > 0
        engine.dispose()

        client = create_app({"COORDINATION": setup.config}).test_client()
        headers = {"Authorization": f"Bearer {setup.tokens['admin']}"}
        runs = client.get("/api/v1/sync-runs", headers=headers).json
        assert runs["total"] == 1
        assert {s["source"] for s in runs["items"][0]["sources"]} == {
            "vaeksthus-midt",
            "jobcenter-aarhus",
            "jobcenter-herning",
            "jobcenter-randers",
            "veu-oestjylland",
            "veu-vestjylland",
        }
