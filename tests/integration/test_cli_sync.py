"""``coordination sync`` on the command line: exit code, per-source counts, ``--source``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlmodel import Session

from connectors.base import load_registry
from coordination.cli import main
from coordination.models import SyncRun
from coordination.sync import SyncEngine
from tests.integration.conftest import (
    AARHUS,
    CRM,
    FAST_RETRIES,
    HERNING,
    QUICK_GIVE_UP,
    SECRETS,
    SOURCE_NAMES,
    VEU_OEST,
    VEU_VEST,
    snapshot,
    source_tables,
    toml_text,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def run_cli(tmp_path, db_url, fakes, jobcenter_exports, disposed_engines):
    """``run_cli(*args) -> click Result`` of ``coordination <args>`` with a TOML configuration
    of the six sample sources on the test database."""
    config_file = tmp_path / "coordination.toml"
    config_file.write_text(
        toml_text({"sources": source_tables(fakes, jobcenter_exports, QUICK_GIVE_UP)}),
        encoding="utf-8",
    )
    environment = SECRETS | {
        "COORDINATION_CONFIG": str(config_file),
        "COORDINATION_DATABASE_URL": db_url,
    }

    def run(*args: str):
        return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)

    return run


def _line_of(output: str, source: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(source + " "))


def test_sync_exits_0_and_prints_the_counts_of_every_source_when_all_succeed(run_cli):
    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    for source in SOURCE_NAMES:
        assert " succeeded fetched=" in _line_of(result.output, source)
    assert "fetched=31 new=31 updated=0" in _line_of(result.output, CRM)
    assert "new=13" in _line_of(result.output, VEU_OEST)
    assert "quarantined=1" in _line_of(result.output, VEU_OEST)
    assert "fetched=4 new=3" in _line_of(result.output, AARHUS)


def test_sync_run_twice_prints_0_new_and_0_updated_the_second_time(run_cli):
    run_cli("sync")

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    for source in SOURCE_NAMES:
        assert " new=0 updated=0 " in _line_of(result.output, source)


def test_sync_exits_1_when_a_source_failed_and_still_runs_the_others(run_cli, fakes):
    fakes.veu_oest.faults = [("500", None)] * (FAST_RETRIES["max_retries"] + 1)

    result = run_cli("sync")

    assert result.exit_code == 1
    assert "failed" in _line_of(result.output, VEU_OEST)
    assert "error: RetriableError" in result.output
    for source in set(SOURCE_NAMES) - {VEU_OEST}:
        assert "succeeded" in _line_of(result.output, source)


def test_sync_with_source_runs_only_that_source(run_cli, engine):
    result = run_cli("sync", "--source", VEU_VEST)

    assert result.exit_code == 0, result.output
    assert VEU_VEST in result.output
    assert all(source not in result.output for source in set(SOURCE_NAMES) - {VEU_VEST})
    state = snapshot(engine)
    assert {name for name, *_ in state.records} == {VEU_VEST}


def test_sync_with_source_given_twice_runs_both(run_cli, engine):
    result = run_cli("sync", "--source", CRM, "--source", HERNING)

    assert result.exit_code == 0, result.output
    assert {name for name, *_ in snapshot(engine).records} == {CRM, HERNING}


def test_sync_with_the_same_source_given_twice_runs_it_once(run_cli, engine):
    result = run_cli("sync", "--source", VEU_VEST, "--source", VEU_VEST)

    assert result.exit_code == 0, result.output
    assert result.output.count(f"  {VEU_VEST} ") == 1


def test_sync_with_an_unknown_source_says_so_and_runs_nothing(run_cli, engine):
    result = run_cli("sync", "--source", "jobcenter-skive")

    assert result.exit_code != 0
    assert "'jobcenter-skive'" in result.output
    assert CRM in result.output  # it names the sources that do exist
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 0


# --- progress ---------------------------------------------------------------------------------


def test_progress_is_reported_when_each_source_starts_and_after_each_stored_batch(config, engine):
    reports: list[tuple[str, int]] = []

    def progress(source: str, counts) -> None:
        reports.append((source, counts.fetched))

    SyncEngine(engine, config, load_registry()).run(progress=progress)

    crm = [fetched for source, fetched in reports if source == CRM]
    assert crm == [0, 10, 20, 30, 31]  # started, then four pages of at most ten
    first_reports: dict[str, int] = {}
    for source, fetched in reports:
        first_reports.setdefault(source, fetched)
    assert first_reports == {name: 0 for name in SOURCE_NAMES}
