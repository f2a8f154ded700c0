"""``coordination sync --rebuild-all``: after a change of ``joint_date_tolerance_days`` a sync
re-derives only the stretches of history its own changes touch; ``--rebuild-all`` regroups every
company's records with the new setting first, and re-evaluates every company's flags (the
sample deliveries are too old to raise a flag today; that every company was evaluated shows in
``dirtycompany``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlmodel import Session

from coordination.approach_building import rebuild_approaches
from coordination.cli import main
from coordination.models import ApproachRecord, Company, DirtyCompany
from tests.integration.conftest import QUICK_GIVE_UP, SECRETS, source_tables, toml_text

pytestmark = pytest.mark.integration

WIDER = 30  # days: joins records the default (1 day) keeps apart in the sample deliveries


@pytest.fixture
def run_cli(tmp_path, db_url, fakes, jobcenter_exports, disposed_engines):
    """``run_cli(tolerance, *args)``: ``coordination <args>`` on the six sample sources with
    ``joint_date_tolerance_days = tolerance``."""
    config_file = tmp_path / "coordination.toml"
    sources = source_tables(fakes, jobcenter_exports, QUICK_GIVE_UP)
    environment = SECRETS | {
        "COORDINATION_CONFIG": str(config_file),
        "COORDINATION_DATABASE_URL": db_url,
    }

    def run(tolerance: int, *args: str):
        raw = {"rules": {"joint_date_tolerance_days": tolerance}, "sources": sources}
        config_file.write_text(toml_text(raw), encoding="utf-8")
        return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)

    return run


def _groups(session: Session) -> set[frozenset[int]]:
    """The stored approaches as sets of their source record ids."""
    members: dict[int, set[int]] = {}
    rows = session.execute(select(ApproachRecord.approach_id, ApproachRecord.source_record_id))
    for approach_id, record_id in rows:
        members.setdefault(approach_id, set()).add(record_id)
    return {frozenset(m) for m in members.values()}


def _groups_of_a_whole_rebuild(engine, tolerance: int) -> set[frozenset[int]]:
    with Session(engine) as session:
        companies = session.scalars(select(Company.id)).all()
        rebuild_approaches(session, companies, tolerance)
        groups = _groups(session)
        session.rollback()
    return groups


def test_rebuild_all_regroups_every_company_with_the_changed_tolerance(run_cli, engine):
    assert run_cli(1, "sync").exit_code == 0
    with Session(engine) as session:
        before = _groups(session)
    wanted = _groups_of_a_whole_rebuild(engine, WIDER)
    assert wanted != before  # the sample deliveries have records the wider tolerance joins

    assert run_cli(WIDER, "sync").exit_code == 0  # nothing changed in the sources
    with Session(engine) as session:
        assert _groups(session) == before

    result = run_cli(WIDER, "sync", "--rebuild-all")

    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        assert _groups(session) == wanted
        # Companies leave dirtycompany only in the transaction that evaluates their flags.
        assert session.scalar(select(func.count()).select_from(DirtyCompany)) == 0
