"""The identity review service: accept, reject, merge, split and undo, on data the real sync
stored (CSV drops through the csv-drop connector into a real database).

The cast: Bageri Hansen A/S (valid CVR, Jobcenter Aarhus) and "Bageriet Hansen" without CVR
at Jobcenter Randers, which the sync cannot match for certain (fuzzy 92.9) and proposes for
review. Aarhus' visit on 10 March names Randers, and Randers recorded the same visit: once the
two companies are one, it is one joint approach.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session, SQLModel

from connectors.base import load_registry
from coordination.config import Config
from coordination.db import session_scope
from coordination.identity_review import (
    Conflict,
    InvalidRequest,
    NotFound,
    Reviewer,
    accept_proposal,
    list_decisions,
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
    ContactPerson,
    IdentityDecision,
    MatchProposal,
    Organisation,
    PriorContactCheck,
    SourceRecord,
)
from coordination.sync import SyncEngine
from tests.helpers import csv_config, csv_row, write_csv

AARHUS, RANDERS = "jobcenter-1", "jobcenter-2"
CVR = "10150817"
OTHER_CVR = "20000007"
P_NUMBER = "1012345678"
METTE = Reviewer("Mette Sørensen", "Jobcenter Aarhus")

# Every table that identity decisions touch, plus the approaches and flags built on them.
IDENTITY_TABLES = (
    "company",
    "companylink",
    "matchproposal",
    "sourcerecord",
    "productionunit",
    "contactperson",
    "approach",
    "approachrecord",
    "approachorganisation",
    "flag",
    "flagevent",
    "priorcontactcheck",
    "plannedvisit",
)


def row(kontakt_id: str, name: str, dato: str, **values: str) -> dict[str, str]:
    return csv_row(
        KontaktID=kontakt_id, Virksomhed=name, Dato=dato, Postnr="8000", By="Aarhus C", **values
    )


AARHUS_ROWS = [
    row(
        "A-1",
        "Bageri Hansen A/S",
        "01-03-2026",
        CVR=CVR,
        Kontaktperson="Lis Hansen",
        KontaktpersonEmail="lis@bageri-hansen.dk",
    ),
    row("A-2", "Bageri Hansen A/S", "10-03-2026", CVR=CVR, KoordineretMed="Jobcenter Randers"),
    row("A-3", "Bageri Hansen A/S", "25-03-2026", CVR=CVR),
]
RANDERS_ROWS = [
    row(
        "R-1",
        "Bageriet Hansen",
        "10-03-2026",
        PNummer=P_NUMBER,
        Kontaktperson="Ole Østergård",
        KontaktpersonEmail="ole@bageriet.dk",
        Medarbejder="Åse Bøgh",
        MedarbejderEmail="aase@randers.dk",
    ),
    row("R-2", "Bageriet Hansen", "20-03-2026", MedarbejderEmail="aase@randers.dk"),
]


@pytest.fixture
def config(db_url, tmp_path) -> Config:
    folders = {"Jobcenter Aarhus": tmp_path / "aarhus", "Jobcenter Randers": tmp_path / "randers"}
    write_csv(folders["Jobcenter Aarhus"], "virksomhedskontakter_1.csv", AARHUS_ROWS)
    write_csv(folders["Jobcenter Randers"], "virksomhedskontakter_1.csv", RANDERS_ROWS)
    return csv_config(db_url, folders)


@pytest.fixture
def synced(engine, config) -> Config:
    result = SyncEngine(engine, config, load_registry()).run()
    assert result.ok, [o.error for o in result.outcomes]
    return config


def company_of(engine: Engine, external_id: str) -> int:
    with Session(engine) as session:
        query = select(SourceRecord.company_id).where(SourceRecord.external_id == external_id)
        return session.execute(query).scalar_one()


def the_proposal(engine: Engine) -> MatchProposal:
    with Session(engine) as session:
        return session.execute(select(MatchProposal)).scalar_one()


def approaches_of(engine: Engine, company_id: int) -> list[set[str]]:
    """The approaches of a company, each as the set of its records' source ids."""
    with Session(engine) as session:
        rows = session.execute(
            select(ApproachRecord.approach_id, SourceRecord.external_id)
            .join(SourceRecord, SourceRecord.id == ApproachRecord.source_record_id)
            .join(Approach, Approach.id == ApproachRecord.approach_id)
            .where(Approach.company_id == company_id)
        ).all()
    groups: dict[int, set[str]] = {}
    for approach_id, external_id in rows:
        groups.setdefault(approach_id, set()).add(external_id)
    return sorted(groups.values(), key=sorted)


def table_contents(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as connection:
        return {
            name: sorted(
                (tuple(r) for r in connection.execute(SQLModel.metadata.tables[name].select())),
                key=repr,
            )
            for name in IDENTITY_TABLES
        }


def decide(engine: Engine, operation, *args, **kwargs):
    with session_scope(engine) as session:
        return operation(session, *args, **kwargs)


# --- proposals ---------------------------------------------------------------------------------


def test_proposals_show_both_companies_side_by_side(engine, synced):
    with Session(engine) as session:
        page = list_proposals(session)

    assert page.total == 1
    (proposal,) = page.items
    assert (proposal.company.name, proposal.company.cvr) == ("Bageriet Hansen", None)
    assert (proposal.company.records, proposal.company.organisations) == (
        2,
        ["Jobcenter Randers"],
    )
    assert (proposal.candidate.name, proposal.candidate.cvr) == ("Bageri Hansen A/S", CVR)
    assert (proposal.candidate.postcode, proposal.candidate.records) == ("8000", 3)
    assert proposal.candidate.organisations == ["Jobcenter Aarhus"]
    assert 85 <= proposal.score < 95


def test_accepting_a_proposal_merges_the_unresolved_company_into_the_candidate(engine, synced):
    proposal = the_proposal(engine)

    decision = decide(engine, accept_proposal, proposal.id, METTE, "samme bageri", synced.rules)

    assert company_of(engine, "R-1") == company_of(engine, "R-2") == proposal.candidate_company_id
    with Session(engine) as session:
        assert session.get(Company, proposal.company_id).merged_into_id == (
            proposal.candidate_company_id
        )
        assert session.get(MatchProposal, proposal.id).status == "accepted"
        link = session.get(CompanyLink, _record_id(session, "R-1"))
        assert (link.rule, link.decided_by) == ("merge", "Mette Sørensen")
    assert (decision.action, decision.company_id, decision.other_company_id) == (
        "accept",
        proposal.company_id,
        proposal.candidate_company_id,
    )


def test_accepting_moves_the_approaches_and_joins_the_joint_visit(engine, synced):
    proposal = the_proposal(engine)
    assert approaches_of(engine, proposal.company_id) == [{"R-1"}, {"R-2"}]

    decide(engine, accept_proposal, proposal.id, METTE, "samme bageri", synced.rules)

    assert approaches_of(engine, proposal.company_id) == []
    assert approaches_of(engine, proposal.candidate_company_id) == [
        {"A-1"},
        {"A-2", "R-1"},
        {"A-3"},
        {"R-2"},
    ]


def test_a_decision_records_who_for_which_organisation_when_and_why(engine, synced):
    before = dt.datetime.now(dt.UTC)

    decision = decide(
        engine,
        accept_proposal,
        the_proposal(engine).id,
        METTE,
        "Samme CVR på fakturaen",
        synced.rules,
    )

    with Session(engine) as session:
        stored = session.get(IdentityDecision, decision.id)
    assert (stored.decided_by, stored.organisation, stored.reason) == (
        "Mette Sørensen",
        "Jobcenter Aarhus",
        "Samme CVR på fakturaen",
    )
    assert _aware(stored.decided_at) >= before


def test_rejecting_closes_the_proposal_and_keeps_the_spellings_apart(engine, synced):
    proposal = the_proposal(engine)

    decision = decide(engine, reject_proposal, proposal.id, METTE, "to bagerier", synced.rules)

    assert the_proposal(engine).status == "rejected"
    assert company_of(engine, "R-1") == proposal.company_id
    assert (decision.action, decision.other_company_id) == ("reject", proposal.candidate_company_id)
    assert decision.record_key == "name:bageriet hansen|8000"
    assert decision.details["rejected_pairs"] == [[f"cvr:{CVR}", proposal.company_id]]


def test_a_decided_proposal_cannot_be_decided_again(engine, synced):
    proposal = the_proposal(engine)
    decide(engine, reject_proposal, proposal.id, METTE, "to bagerier", synced.rules)

    with pytest.raises(Conflict, match="already rejected"):
        decide(engine, accept_proposal, proposal.id, METTE, "alligevel", synced.rules)


# --- merge -------------------------------------------------------------------------------------


def test_two_companies_with_different_cvrs_are_never_merged(engine, synced):
    known = company_of(engine, "A-1")
    other = _company_with_cvr(engine, OTHER_CVR)
    before = table_contents(engine)

    with pytest.raises(Conflict, match="two legal units"):
        decide(engine, merge_companies, other, known, METTE, "samme?", synced.rules)

    assert table_contents(engine) == before


def test_a_company_cannot_be_merged_into_itself(engine, synced):
    known = company_of(engine, "A-1")

    with pytest.raises(InvalidRequest):
        decide(engine, merge_companies, known, known, METTE, "hm", synced.rules)


def test_an_unknown_company_cannot_be_merged(engine, synced):
    with pytest.raises(NotFound):
        decide(
            engine, merge_companies, 999_999, company_of(engine, "A-1"), METTE, "?", synced.rules
        )


def test_a_merged_company_cannot_be_merged_again(engine, synced):
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    decide(engine, merge_companies, unresolved, known, METTE, "samme", synced.rules)
    third = _company_with_cvr(engine, OTHER_CVR)

    with pytest.raises(Conflict, match="was merged into"):
        decide(engine, merge_companies, unresolved, third, METTE, "igen", synced.rules)


def test_the_surviving_company_takes_the_cvr_of_the_company_merged_into_it(engine, synced):
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")

    decide(engine, merge_companies, known, unresolved, METTE, "omvendt", synced.rules)

    with Session(engine) as session:
        assert session.get(Company, unresolved).cvr == CVR
        assert session.get(Company, known).cvr is None
    assert company_of(engine, "A-1") == unresolved


def test_an_anonymised_contact_person_stays_anonymised_after_a_merge(engine, synced):
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    with session_scope(engine) as session:
        session.execute(
            update(ContactPerson)
            .where(ContactPerson.company_id == unresolved)
            .values(name=None, email=None, phone=None, anonymised_at=dt.datetime.now(dt.UTC))
        )

    decide(engine, merge_companies, unresolved, known, METTE, "samme", synced.rules)

    with Session(engine) as session:
        people = session.execute(
            select(ContactPerson.person_key, ContactPerson.name, ContactPerson.anonymised_at)
            .where(ContactPerson.company_id == known)
            .order_by(ContactPerson.person_key)
        ).all()
    assert [(key, name, at is not None) for key, name, at in people] == [
        ("email:lis@bageri-hansen.dk", "Lis Hansen", False),
        ("email:ole@bageriet.dk", None, True),
    ]


# --- undo --------------------------------------------------------------------------------------


def test_merge_then_undo_leaves_every_identity_table_and_the_approaches_exactly_as_before(
    engine, synced
):
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    with session_scope(engine) as session:  # a prior-contact check that must move and come back
        organisation = session.execute(
            select(Organisation.id).where(Organisation.name == "Jobcenter Randers")
        ).scalar_one()
        session.add(PriorContactCheck(company_id=unresolved, organisation_id=organisation))
    before = table_contents(engine)

    merge = decide(engine, merge_companies, unresolved, known, METTE, "samme", synced.rules)
    merged = table_contents(engine)
    undo_decision_ = decide(engine, undo_decision, merge.id, METTE, "forkert", synced.rules)

    assert merged != before  # the merge did change things: links, units, approaches, a flag
    assert merged["flag"] and not before["flag"]
    assert table_contents(engine) == before
    assert undo_decision_.details["undoes"] == merge.id


def test_an_undo_records_that_the_two_companies_stay_apart(engine, synced):
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    merge = decide(engine, merge_companies, unresolved, known, METTE, "samme", synced.rules)

    undo = decide(engine, undo_decision, merge.id, METTE, "forkert", synced.rules)

    assert sorted(map(tuple, undo.details["rejected_pairs"])) == [
        (f"cvr:{CVR}", unresolved),
        ("name:bageriet hansen|8000", known),
    ]
    with Session(engine) as session:
        assert session.get(IdentityDecision, merge.id).undone_by_id == undo.id


def test_an_undo_cannot_be_undone_and_a_decision_is_undone_only_once(engine, synced):
    merge = decide(
        engine,
        merge_companies,
        company_of(engine, "R-1"),
        company_of(engine, "A-1"),
        METTE,
        "samme",
        synced.rules,
    )
    undo = decide(engine, undo_decision, merge.id, METTE, "forkert", synced.rules)

    with pytest.raises(Conflict, match="already undone"):
        decide(engine, undo_decision, merge.id, METTE, "igen", synced.rules)
    with pytest.raises(Conflict, match="cannot be undone"):
        decide(engine, undo_decision, undo.id, METTE, "fortryd", synced.rules)


def test_a_decision_cannot_be_undone_while_a_later_one_on_its_companies_stands(engine, synced):
    known = company_of(engine, "A-1")
    merge = decide(
        engine, merge_companies, company_of(engine, "R-1"), known, METTE, "x", synced.rules
    )
    split = decide(engine, split_record, RANDERS, "R-2", METTE, "alligevel ikke", synced.rules)

    with pytest.raises(Conflict, match=f"decision {split.id} \\(split\\) came later"):
        decide(engine, undo_decision, merge.id, METTE, "forkert", synced.rules)


def test_undoing_a_rejection_reopens_the_proposal(engine, synced):
    proposal = the_proposal(engine)
    reject = decide(engine, reject_proposal, proposal.id, METTE, "to bagerier", synced.rules)

    decide(engine, undo_decision, reject.id, METTE, "jeg tog fejl", synced.rules)

    assert the_proposal(engine).status == "proposed"


def test_an_unknown_decision_cannot_be_undone(engine, synced):
    with pytest.raises(NotFound):
        decide(engine, undo_decision, 424242, METTE, "?", synced.rules)


# --- split -------------------------------------------------------------------------------------


def test_splitting_moves_one_record_into_a_new_unresolved_company(engine, synced):
    known = company_of(engine, "A-3")

    split = decide(engine, split_record, AARHUS, "A-3", METTE, "en anden Hansen", synced.rules)

    new = company_of(engine, "A-3")
    assert new not in (known, None) and split.company_id == new
    assert (split.action, split.other_company_id) == ("split", known)
    assert split.record_key == f"cvr:{CVR}"
    with Session(engine) as session:
        company = session.get(Company, new)
        assert (company.name, company.cvr) == ("Bageri Hansen A/S", None)
        link = session.get(CompanyLink, _record_id(session, "A-3"))
        assert (link.rule, link.decided_by) == ("split", "Mette Sørensen")
    assert approaches_of(engine, new) == [{"A-3"}]
    assert {"A-3"} not in approaches_of(engine, known)


def test_splitting_into_a_named_company_moves_the_record_there(engine, synced):
    unresolved = company_of(engine, "R-1")

    decide(engine, split_record, AARHUS, "A-2", METTE, "Randers' bageri", synced.rules, unresolved)

    assert company_of(engine, "A-2") == unresolved
    assert {"A-2", "R-1"} in approaches_of(engine, unresolved)


def test_a_record_with_a_cvr_is_not_split_into_a_company_with_another_cvr(engine, synced):
    other = _company_with_cvr(engine, OTHER_CVR)

    with pytest.raises(Conflict, match="CVR"):
        decide(engine, split_record, AARHUS, "A-2", METTE, "?", synced.rules, other)


def test_the_only_record_of_a_company_is_not_split_into_a_new_company(engine, synced):
    other = _company_with_cvr(engine, OTHER_CVR)
    decide(engine, split_record, RANDERS, "R-2", METTE, "flyt", synced.rules, other)

    with pytest.raises(Conflict, match="only record"):
        decide(engine, split_record, RANDERS, "R-2", METTE, "igen", synced.rules)


def test_an_unknown_record_cannot_be_split(engine, synced):
    with pytest.raises(NotFound):
        decide(engine, split_record, AARHUS, "A-404", METTE, "?", synced.rules)


def test_undoing_a_split_puts_the_record_back_with_its_old_link(engine, synced):
    with Session(engine) as session:
        old_link = session.get(CompanyLink, _record_id(session, "A-3")).model_dump()
    split = decide(engine, split_record, AARHUS, "A-3", METTE, "en anden", synced.rules)

    decide(engine, undo_decision, split.id, METTE, "forkert", synced.rules)

    with Session(engine) as session:
        link = session.get(CompanyLink, _record_id(session, "A-3")).model_dump()
        retired = session.get(Company, split.company_id)
    assert link == old_link
    assert company_of(engine, "A-3") == old_link["company_id"]
    assert retired.merged_into_id == old_link["company_id"]  # the emptied company is retired


# --- decisions ---------------------------------------------------------------------------------


def test_decisions_are_listed_newest_first_for_a_company(engine, synced):
    unresolved, known = company_of(engine, "R-1"), company_of(engine, "A-1")
    merge = decide(engine, merge_companies, unresolved, known, METTE, "samme", synced.rules)
    undo = decide(engine, undo_decision, merge.id, METTE, "forkert", synced.rules)
    split = decide(engine, split_record, AARHUS, "A-3", METTE, "en anden", synced.rules)

    with Session(engine) as session:
        about_unresolved = list_decisions(session, company_id=unresolved)
        everything = list_decisions(session, page_size=2)

    assert [d.id for d in about_unresolved.items] == [undo.id, merge.id]
    assert ([d.id for d in everything.items], everything.total) == ([split.id, undo.id], 3)


# --- helpers -----------------------------------------------------------------------------------


def _record_id(session: Session, external_id: str) -> int:
    query = select(SourceRecord.id).where(SourceRecord.external_id == external_id)
    return session.execute(query).scalar_one()


def _company_with_cvr(engine: Engine, cvr: str) -> int:
    with session_scope(engine) as session:
        company = Company(
            cvr=cvr, name="Hansens Brød ApS", name_key="hansens broed", postcode="8000"
        )
        session.add(company)
        session.flush()
        return company.id


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
