"""A coordinator's identity decisions survive the nightly sync: real CSV drops, the real csv-drop
connector and sync engine, a real database.

The companies: Bageri Hansen A/S (valid CVR, Jobcenter Aarhus) and the bakery's spellings at
Jobcenter Randers without a CVR, "Bageriet Hansen" and "Bagerie Hansen". "Bagerie Hansen" is
close to both (fuzzy 96.6 and 96.3), so when both companies exist the resolver prefers the one
with a CVR: only a recorded decision keeps it where a coordinator wants it.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, func, select
from sqlmodel import Session

from connectors.base import load_registry
from coordination import sync as sync_module
from coordination.approach_building import rebuild_approaches
from coordination.cli import main
from coordination.config import Config
from coordination.db import session_scope
from coordination.identity_review import (
    Reviewer,
    accept_proposal,
    list_proposals,
    merge_companies,
    reject_proposal,
    split_record,
    undo_decision,
)
from coordination.models import (
    Approach,
    ApproachRecord,
    Company,
    CompanyLink,
    IdentityDecision,
    MatchProposal,
    SourceRecord,
)
from coordination.sync import SyncEngine
from tests.helpers import csv_config, csv_row, write_csv

pytestmark = pytest.mark.integration

AARHUS = "jobcenter-1"
RANDERS = "jobcenter-2"
CVR = "10150817"
COORDINATOR = Reviewer("Mette Sørensen", "Jobcenter Aarhus")


@pytest.fixture
def folders(tmp_path):
    return {"Jobcenter Aarhus": tmp_path / "aarhus", "Jobcenter Randers": tmp_path / "randers"}


@pytest.fixture
def setup(db_url, folders) -> Config:
    for folder in folders.values():
        folder.mkdir()
    return csv_config(db_url, folders)


@pytest.fixture
def command_line(setup, monkeypatch, tmp_path) -> CliRunner:
    """A runner for ``coordination`` commands on the test database."""
    config_file = tmp_path / "coordination.toml"
    config_file.write_text(f'[database]\nurl = "{setup.database_url}"\n', encoding="utf-8")
    monkeypatch.setenv("COORDINATION_CONFIG", str(config_file))
    monkeypatch.delenv("COORDINATION_DATABASE_URL", raising=False)
    return CliRunner()


def bakery(kontakt_id: str, name: str, dato: str, **values: str) -> dict[str, str]:
    return csv_row(
        KontaktID=kontakt_id, Virksomhed=name, Dato=dato, Postnr="8000", By="Aarhus C", **values
    )


def deliver(folders, organisation: str, file_name: str, *rows) -> None:
    write_csv(folders[organisation], f"virksomhedskontakter_{file_name}.csv", rows)


def sync(engine: Engine, config: Config) -> None:
    result = SyncEngine(engine, config, load_registry()).run()
    assert result.ok, [o.error for o in result.outcomes]


def company_of(engine: Engine, external_id: str) -> int:
    with Session(engine) as session:
        return session.execute(
            select(SourceRecord.company_id).where(SourceRecord.external_id == external_id)
        ).scalar_one()


def records_follow_links(engine: Engine) -> dict[str, int]:
    """Every record's company (by external id), after checking that each record is linked and
    names the company of its link."""
    with Session(engine) as session:
        rows = session.execute(
            select(SourceRecord.external_id, SourceRecord.company_id, CompanyLink.company_id)
            .outerjoin(CompanyLink, CompanyLink.source_record_id == SourceRecord.id)
            .order_by(SourceRecord.external_id)
        ).all()
    assert [(key, company) for key, company, _ in rows] == [(key, link) for key, _, link in rows]
    assert all(company is not None for _, company, _ in rows)
    return {key: company for key, company, _ in rows}


def open_proposals(engine: Engine) -> list[tuple[int, int]]:
    with Session(engine) as session:
        rows = session.execute(
            select(MatchProposal.company_id, MatchProposal.candidate_company_id).where(
                MatchProposal.status == "proposed"
            )
        )
        return [tuple(row) for row in rows]


def randers_spellings_then_aarhus(engine, config, folders) -> None:
    """Randers' two spellings arrive first (one unresolved company); then Aarhus with the CVR,
    which the sync proposes to match with it."""
    deliver(
        folders,
        "Jobcenter Randers",
        "1",
        bakery("R-1", "Bageriet Hansen", "05-03-2026"),
        bakery("R-2", "Bagerie Hansen", "02-03-2026"),
    )
    sync(engine, config)
    deliver(
        folders, "Jobcenter Aarhus", "1", bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR)
    )
    sync(engine, config)


def test_a_rejected_match_is_neither_linked_nor_proposed_by_the_next_sync(engine, setup, folders):
    randers_spellings_then_aarhus(engine, setup, folders)
    unresolved = company_of(engine, "R-1")
    with session_scope(engine) as session:
        (proposal,) = list_proposals(session).items
        reject_proposal(session, proposal.id, COORDINATOR, "to forskellige bagerier", setup.rules)

    # Randers corrects a note on R-2: the record is resolved again, and would now join the
    # company with the CVR (the better of two equal fuzzy matches) if the rejection did not hold.
    deliver(
        folders, "Jobcenter Randers", "2", bakery("R-2", "Bagerie Hansen", "02-03-2026", Note="x")
    )
    sync(engine, setup)

    assert company_of(engine, "R-2") == unresolved
    assert open_proposals(engine) == []


def test_a_sync_after_an_undone_merge_does_not_merge_again(engine, setup, folders):
    randers_spellings_then_aarhus(engine, setup, folders)
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    with session_scope(engine) as session:
        merge = merge_companies(session, unresolved, known, COORDINATOR, "samme", setup.rules)
    with session_scope(engine) as session:
        undo_decision(session, merge.id, COORDINATOR, "forkert bageri", setup.rules)

    deliver(
        folders, "Jobcenter Randers", "2", bakery("R-2", "Bagerie Hansen", "02-03-2026", Note="x")
    )
    sync(engine, setup)

    assert company_of(engine, "R-2") == unresolved
    with Session(engine) as session:
        assert session.get(Company, unresolved).merged_into_id is None


def test_a_split_record_stays_split_and_its_spelling_follows_it(engine, setup, folders):
    deliver(
        folders,
        "Jobcenter Aarhus",
        "1",
        bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
        bakery("A-2", "Bageri Hansen", "08-03-2026"),
    )
    sync(engine, setup)
    old = company_of(engine, "A-2")
    with session_scope(engine) as session:
        split = split_record(session, AARHUS, "A-2", COORDINATOR, "en anden Hansen", setup.rules)

    deliver(
        folders,
        "Jobcenter Aarhus",
        "2",
        bakery("A-2", "Bageri Hansen", "08-03-2026", Note="opdateret"),
        bakery("A-3", "Bageri Hansen", "20-03-2026"),
    )
    sync(engine, setup)

    assert company_of(engine, "A-2") == split.company_id != old
    assert company_of(engine, "A-3") == split.company_id
    assert company_of(engine, "A-1") == old
    records_follow_links(engine)


def test_records_spelled_like_a_merged_company_are_linked_to_the_company_it_joined(
    engine, setup, folders
):
    randers_spellings_then_aarhus(engine, setup, folders)
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    with session_scope(engine) as session:
        merge_companies(session, unresolved, known, COORDINATOR, "samme bageri", setup.rules)

    deliver(folders, "Jobcenter Randers", "2", bakery("R-3", "Bageriet Hansen", "15-03-2026"))
    sync(engine, setup)

    assert company_of(engine, "R-3") == known


def test_accepted_records_stay_with_the_candidate_when_their_source_updates_them(
    engine, setup, folders
):
    randers_spellings_then_aarhus(engine, setup, folders)
    with session_scope(engine) as session:
        (proposal,) = list_proposals(session).items
        decision = accept_proposal(session, proposal.id, COORDINATOR, "samme", setup.rules)

    deliver(
        folders, "Jobcenter Randers", "2", bakery("R-1", "Bageriet Hansen", "05-03-2026", Note="y")
    )
    sync(engine, setup)

    assert company_of(engine, "R-1") == decision.other_company_id == company_of(engine, "A-1")


def test_records_that_came_before_their_cvr_join_the_company_when_the_cvr_arrives(
    engine, setup, folders
):
    # Had Aarhus come first, Randers' "Bagerie Hansen" would have been linked to it (fuzzy
    # 96.3); the order of deliveries must not change the outcome.
    deliver(folders, "Jobcenter Randers", "1", bakery("R-2", "Bagerie Hansen", "02-03-2026"))
    sync(engine, setup)
    unresolved = company_of(engine, "R-2")
    deliver(
        folders,
        "Jobcenter Aarhus",
        "1",
        bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
    )
    sync(engine, setup)

    assert company_of(engine, "R-2") == company_of(engine, "A-1") != unresolved
    with Session(engine) as session:
        assert session.get(Company, unresolved).merged_into_id == company_of(engine, "A-1")
    assert open_proposals(engine) == []
    records_follow_links(engine)


def test_new_records_go_in_with_their_companies_without_a_second_write(engine, setup, folders):
    """A batch's records are linked before the new ones are inserted: a record that joins a
    company founded earlier in the same batch goes in with it, and no record is updated to
    follow its link."""
    deliver(
        folders,
        "Jobcenter Aarhus",
        "1",
        bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
        bakery("A-2", "Bageri Hansen A/S", "08-03-2026"),
        bakery("A-3", "Smedie Jensen", "09-03-2026"),
    )
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()).lower())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        sync(engine, setup)
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    companies = records_follow_links(engine)
    assert companies["A-1"] == companies["A-2"] != companies["A-3"]
    assert not [s for s in statements if s.startswith("update sourcerecord set company_id")]


def test_a_record_moving_company_follows_its_new_link_beside_new_records(engine, setup, folders):
    """A record delivered again under another company moves there (its link and its
    ``company_id``), in a batch that also brings new records; a record that stays is kept."""
    other_cvr = "66978001"
    deliver(
        folders,
        "Jobcenter Aarhus",
        "1",
        bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
        bakery("A-2", "Smedie Jensen ApS", "02-03-2026", CVR=other_cvr),
        bakery("A-3", "Bageri Hansen A/S", "03-03-2026", CVR=CVR),
    )
    sync(engine, setup)
    before = records_follow_links(engine)
    deliver(
        folders,
        "Jobcenter Aarhus",
        "2",
        bakery("A-1", "Smedie Jensen ApS", "01-03-2026", CVR=other_cvr),
        bakery("A-3", "Bageri Hansen A/S", "03-03-2026", CVR=CVR, Note="opdateret"),
        bakery("A-4", "Smedie Jensen ApS", "04-03-2026", CVR=other_cvr),
    )
    sync(engine, setup)

    after = records_follow_links(engine)
    assert after["A-1"] == after["A-2"] == after["A-4"] == before["A-2"] != before["A-1"]
    assert after["A-3"] == before["A-3"] == before["A-1"]


def test_an_absorbed_companys_records_reach_the_rebuild_plan_and_its_approaches_follow(
    engine, setup, folders, monkeypatch
):
    """The records of a company absorbed on arrival of a CVR move without being delivered
    again: the sync hands them to the rebuild plan as changed (it reads only the history
    around changed records), and the approaches are then those of a full rebuild."""
    deliver(
        folders,
        "Jobcenter Randers",
        "1",
        bakery("R-2", "Bagerie Hansen", "02-03-2026"),
        bakery("R-3", "Bagerie Hansen", "20-01-2026"),
    )
    sync(engine, setup)
    with Session(engine) as session:
        moved = set(
            session.execute(
                select(SourceRecord.id).where(SourceRecord.external_id.in_(["R-2", "R-3"]))
            ).scalars()
        )
    planned: list[set[int]] = []
    plan = sync_module.plan_rebuild

    def spied(session, company_ids, changed, tolerance_days):
        planned.append(set(changed))
        return plan(session, company_ids, changed, tolerance_days)

    monkeypatch.setattr(sync_module, "plan_rebuild", spied)
    deliver(
        folders,
        "Jobcenter Aarhus",
        "1",
        bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
    )
    sync(engine, setup)

    assert company_of(engine, "R-2") == company_of(engine, "R-3") == company_of(engine, "A-1")
    assert moved <= planned[-1]
    stored = approaches(engine)
    with session_scope(engine) as session:
        companies = list(session.execute(select(Company.id)).scalars())
        rebuild_approaches(session, companies, setup.rules.joint_date_tolerance_days)
    assert approaches(engine) == stored


def approaches(engine: Engine) -> tuple[list, list]:
    with Session(engine) as session:
        rows = session.execute(
            select(Approach.id, Approach.company_id, Approach.date).order_by(Approach.id)
        ).all()
        links = session.execute(
            select(ApproachRecord.source_record_id, ApproachRecord.approach_id).order_by(
                ApproachRecord.source_record_id
            )
        ).all()
    return [tuple(r) for r in rows], [tuple(r) for r in links]


def test_the_command_line_merges_and_undoes_with_who_and_why(engine, setup, folders, command_line):

    randers_spellings_then_aarhus(engine, setup, folders)
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    merged = command_line.invoke(
        main,
        ["identity", "merge", str(unresolved), str(known), "--reason", "samme bageri",
         "--by", "Søren Ålund"],
    )  # fmt: skip
    assert merged.exit_code == 0, merged.output
    assert company_of(engine, "R-1") == known
    with Session(engine) as session:
        decision = session.execute(select(IdentityDecision)).scalar_one()
    assert (decision.action, decision.decided_by, decision.reason) == (
        "merge",
        "Søren Ålund",
        "samme bageri",
    )

    undone = command_line.invoke(
        main, ["identity", "undo", str(decision.id), "--reason", "fejl", "--by", "Søren Ålund"]
    )
    assert undone.exit_code == 0, undone.output
    assert company_of(engine, "R-1") == unresolved


def test_the_command_line_refuses_two_different_cvrs_with_exit_code_1(
    engine, setup, folders, command_line
):

    deliver(
        folders,
        "Jobcenter Aarhus",
        "1",
        bakery("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
        bakery("A-2", "Hansens Brød ApS", "01-03-2026", CVR="20000007"),
    )
    sync(engine, setup)

    answer = command_line.invoke(
        main,
        ["identity", "merge", str(company_of(engine, "A-1")), str(company_of(engine, "A-2")),
         "--reason", "samme", "--by", "Mette"],
    )  # fmt: skip

    assert answer.exit_code == 1
    assert "CVR" in answer.output
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(IdentityDecision)).scalar() == 0


def test_the_command_line_lists_proposals_with_both_companies(engine, setup, folders, command_line):

    randers_spellings_then_aarhus(engine, setup, folders)

    answer = command_line.invoke(main, ["identity", "proposals"])

    assert answer.exit_code == 0, answer.output
    assert "1 proposed proposal(s)" in answer.output
    assert f"Bageri Hansen A/S | CVR {CVR}" in answer.output
    assert "Bageriet Hansen | CVR -" in answer.output
    assert "Jobcenter Randers" in answer.output
