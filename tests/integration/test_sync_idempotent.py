"""Running the sync again over the same deliveries changes nothing.

One fixture syncs the samples and the realistic jobcenter exports twice and keeps what both runs
reported and what the database held after each.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from coordination.models import Approach, Company, Flag, SyncRunSource
from coordination.sync import SyncResult
from tests.integration.conftest import (
    CRM,
    SOURCE_NAMES,
    VEU_OEST,
    VEU_VEST,
    StoredState,
    outcome,
    run_sources,
    sample_world,
    snapshot,
    sync,
    write_jobcenter_exports,
)

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Run:
    result: SyncResult
    recorded: dict[str, SyncRunSource]
    state: StoredState
    ids: dict[str, object]


def _ids(engine) -> dict[str, object]:
    with Session(engine) as session:
        return {
            "approaches": set(session.scalars(select(Approach.id))),
            "companies": set(session.scalars(select(Company.id))),
            "flags": session.scalar(select(func.count()).select_from(Flag)),
        }


@pytest.fixture(scope="module")
def two_runs(_migrated_url, tmp_path_factory) -> tuple[Run, Run]:
    with sample_world(_migrated_url, tmp_path_factory.mktemp("twice")) as world:
        write_jobcenter_exports(world.drops)
        runs = []
        for _ in range(2):
            result = sync(world.config, world.engine)
            recorded = run_sources(world.engine, result.run_id)
            runs.append(Run(result, recorded, snapshot(world.engine), _ids(world.engine)))
        return runs[0], runs[1]


def test_the_first_run_stores_the_deliveries(two_runs):
    first, _ = two_runs

    assert first.result.ok
    assert sum(o.counts.new for o in first.result.outcomes) == 71  # 64 samples + 7 export rows


def test_a_second_run_over_the_same_deliveries_reports_0_new_and_0_updated(two_runs):
    _, second = two_runs

    assert second.result.ok
    assert {
        o.name: (o.counts.new, o.counts.updated, o.counts.removed) for o in second.result.outcomes
    } == {name: (0, 0, 0) for name in SOURCE_NAMES}
    assert {name: (e.status, e.new, e.updated) for name, e in second.recorded.items()} == {
        name: ("succeeded", 0, 0) for name in SOURCE_NAMES
    }


def test_a_second_run_over_the_same_deliveries_changes_nothing_stored(two_runs):
    first, second = two_runs

    assert second.state == first.state
    assert second.ids == first.ids


def test_records_read_again_through_the_cursor_overlap_count_as_unchanged(two_runs):
    _, second = two_runs

    # Each API source re-reads what changed in the 300 s before its cursor; the files are
    # skipped. Everything read again is unchanged (or, if bad, quarantined again).
    assert all(
        outcome(second.result, name).counts.unchanged >= 1 for name in (CRM, VEU_OEST, VEU_VEST)
    )
    for o in second.result.outcomes:
        assert o.counts.fetched == o.counts.unchanged + o.counts.quarantined
