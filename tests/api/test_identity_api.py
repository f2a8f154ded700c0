"""The identity review API: coordinators list proposals, accept, reject, merge, split and undo;
every decision is audited; visitors may not; bad requests are 4xx, never 500.

Data comes from a real sync of two CSV drops: Bageri Hansen A/S with a CVR at Jobcenter Aarhus,
and "Bageriet Hansen" without one at Jobcenter Randers, which the sync proposes for review.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from connectors.base import load_registry
from coordination.models import (
    Approach,
    AuditEntry,
    Company,
    IdentityDecision,
    MatchProposal,
    SourceRecord,
)
from coordination.sync import SyncEngine
from tests.helpers import csv_config, csv_row, write_csv

CVR = "10150817"
BASE = "/api/v1/identity"


def row(kontakt_id: str, name: str, dato: str, **values: str) -> dict[str, str]:
    return csv_row(
        KontaktID=kontakt_id, Virksomhed=name, Dato=dato, Postnr="8000", By="Aarhus C", **values
    )


@pytest.fixture
def synced(engine, db_url, tmp_path):
    folders = {"Jobcenter Aarhus": tmp_path / "aarhus", "Jobcenter Randers": tmp_path / "randers"}
    write_csv(
        folders["Jobcenter Aarhus"],
        "virksomhedskontakter_1.csv",
        [
            row("A-1", "Bageri Hansen A/S", "01-03-2026", CVR=CVR),
            row("A-2", "Bageri Hansen A/S", "10-03-2026", CVR=CVR),
        ],
    )
    write_csv(
        folders["Jobcenter Randers"],
        "virksomhedskontakter_1.csv",
        [row("R-1", "Bageriet Hansen", "12-03-2026"), row("R-2", "Bageriet Hansen", "20-03-2026")],
    )
    result = SyncEngine(engine, csv_config(db_url, folders), load_registry()).run()
    assert result.ok


@pytest.fixture
def coordinator(auth):
    return auth("coordinator", "Jobcenter Aarhus")


def company_of(engine, external_id: str) -> int:
    with Session(engine) as session:
        query = select(SourceRecord.company_id).where(SourceRecord.external_id == external_id)
        return session.execute(query).scalar_one()


def proposal_id(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(MatchProposal.id)).scalar_one()


def test_proposals_list_both_companies_side_by_side(client, synced, coordinator):
    answer = client.get(
        f"{BASE}/proposals?status=proposed&page=1&page_size=10", headers=coordinator
    )

    assert answer.status_code == 200
    assert (answer.json["total"], answer.json["page"], answer.json["page_size"]) == (1, 1, 10)
    (item,) = answer.json["items"]
    assert item["status"] == "proposed"
    assert {k: item["company"][k] for k in ("name", "cvr", "postcode", "records")} == {
        "name": "Bageriet Hansen",
        "cvr": None,
        "postcode": "8000",
        "records": 2,
    }
    assert item["company"]["organisations"] == ["Jobcenter Randers"]
    assert (item["candidate"]["name"], item["candidate"]["cvr"]) == ("Bageri Hansen A/S", CVR)


def test_accepting_merges_and_moves_the_approaches(client, engine, synced, coordinator):
    candidate = company_of(engine, "A-1")

    answer = client.post(
        f"{BASE}/proposals/{proposal_id(engine)}/accept",
        json={"reason": "samme bageri"},
        headers=coordinator,
    )

    assert answer.status_code == 200
    assert (answer.json["action"], answer.json["other_company_id"]) == ("accept", candidate)
    assert company_of(engine, "R-1") == candidate
    with Session(engine) as session:
        owners = session.execute(select(Approach.company_id).distinct()).scalars().all()
    assert owners == [candidate]


def test_a_rejection_keeps_its_danish_reason_and_who_for_which_organisation(
    client, engine, synced, coordinator
):
    reason = "To forskellige bagerier: Østergade og Ågade"

    answer = client.post(
        f"{BASE}/proposals/{proposal_id(engine)}/reject",
        json={"reason": reason},
        headers=coordinator,
    )

    assert answer.status_code == 200
    assert answer.json["reason"] == reason
    assert answer.json["organisation"] == "Jobcenter Aarhus"
    assert answer.json["decided_by"].startswith("token:")
    listed = client.get(f"{BASE}/decisions", headers=coordinator).json["items"]
    assert [(d["action"], d["reason"]) for d in listed] == [("reject", reason)]


def test_deciding_a_decided_proposal_is_409(client, engine, synced, coordinator):
    url = f"{BASE}/proposals/{proposal_id(engine)}"
    client.post(f"{url}/reject", json={"reason": "nej"}, headers=coordinator)

    answer = client.post(f"{url}/accept", json={"reason": "jo"}, headers=coordinator)

    assert answer.status_code == 409
    assert "already rejected" in answer.json["message"]


def test_an_unknown_proposal_is_404(client, synced, coordinator):
    for number in (999, 2**40):
        answer = client.post(
            f"{BASE}/proposals/{number}/accept", json={"reason": "x"}, headers=coordinator
        )
        assert answer.status_code == 404


def test_a_merge_is_201_and_answers_the_decision(client, engine, synced, coordinator):
    merged, into = company_of(engine, "R-1"), company_of(engine, "A-1")

    answer = client.post(
        f"{BASE}/merges",
        json={"company_id": merged, "into_company_id": into, "reason": "samme"},
        headers=coordinator,
    )

    assert answer.status_code == 201
    assert (answer.json["company_id"], answer.json["other_company_id"]) == (merged, into)
    assert "snapshot" not in answer.json["details"]
    with Session(engine) as session:
        assert session.get(Company, merged).merged_into_id == into


def test_merging_two_companies_with_different_cvrs_is_409(client, engine, synced, coordinator):
    with Session(engine) as session:
        other = Company(cvr="20000007", name="Hansens Brød ApS", name_key="hansens broed")
        session.add(other)
        session.commit()
        other_id = other.id

    answer = client.post(
        f"{BASE}/merges",
        json={"company_id": other_id, "into_company_id": company_of(engine, "A-1"), "reason": "?"},
        headers=coordinator,
    )

    assert answer.status_code == 409
    assert "CVR" in answer.json["message"]


def test_merging_an_unknown_company_is_404_and_into_itself_422(client, engine, synced, coordinator):
    known = company_of(engine, "A-1")
    unknown = client.post(
        f"{BASE}/merges",
        json={"company_id": 999_999, "into_company_id": known, "reason": "x"},
        headers=coordinator,
    )
    itself = client.post(
        f"{BASE}/merges",
        json={"company_id": known, "into_company_id": known, "reason": "x"},
        headers=coordinator,
    )

    assert (unknown.status_code, itself.status_code) == (404, 422)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"company_id": 1, "into_company_id": 2},
        {"company_id": 1, "into_company_id": 2, "reason": ""},
        {"company_id": "en", "into_company_id": 2, "reason": "x"},
        {"company_id": 2**40, "into_company_id": 2, "reason": "x"},
        {"company_id": 1, "into_company_id": 2, "reason": "nul\x00byte"},
        {"company_id": 1, "into_company_id": 2, "reason": "x", "extra": True},
    ],
)
def test_a_malformed_merge_is_422(client, synced, coordinator, body):
    answer = client.post(f"{BASE}/merges", json=body, headers=coordinator)

    assert answer.status_code == 422
    assert answer.json["code"] == 422


def test_a_body_that_is_not_json_is_4xx(client, coordinator):
    answer = client.post(
        f"{BASE}/merges",
        data="{not json",
        headers={**coordinator, "Content-Type": "application/json"},
    )

    assert 400 <= answer.status_code < 500


def test_a_split_moves_the_record_into_a_new_company(client, engine, synced, coordinator):
    old = company_of(engine, "A-2")

    answer = client.post(
        f"{BASE}/splits",
        json={"source": "jobcenter-1", "source_id": "A-2", "reason": "en anden Hansen"},
        headers=coordinator,
    )

    assert answer.status_code == 201
    assert answer.json["other_company_id"] == old
    assert company_of(engine, "A-2") == answer.json["company_id"] != old
    assert (answer.json["details"]["source"], answer.json["details"]["source_id"]) == (
        "jobcenter-1",
        "A-2",
    )


def test_a_split_into_a_named_company(client, engine, synced, coordinator):
    target = company_of(engine, "R-1")

    answer = client.post(
        f"{BASE}/splits",
        json={
            "source": "jobcenter-1",
            "source_id": "A-2",
            "into_company_id": target,
            "reason": "x",
        },
        headers=coordinator,
    )

    assert answer.status_code == 201
    assert company_of(engine, "A-2") == target


def test_splitting_an_unknown_record_is_404(client, synced, coordinator):
    answer = client.post(
        f"{BASE}/splits",
        json={"source": "jobcenter-1", "source_id": "findes-ikke", "reason": "x"},
        headers=coordinator,
    )

    assert answer.status_code == 404


def test_undo_restores_and_a_second_undo_is_409(client, engine, synced, coordinator):
    merged, into = company_of(engine, "R-1"), company_of(engine, "A-1")
    merge = client.post(
        f"{BASE}/merges",
        json={"company_id": merged, "into_company_id": into, "reason": "samme"},
        headers=coordinator,
    ).json

    first = client.post(
        f"{BASE}/decisions/{merge['id']}/undo", json={"reason": "fejl"}, headers=coordinator
    )
    second = client.post(
        f"{BASE}/decisions/{merge['id']}/undo", json={"reason": "fejl"}, headers=coordinator
    )

    assert first.status_code == 200
    assert first.json["details"]["undoes"] == merge["id"]
    assert company_of(engine, "R-1") == merged
    assert second.status_code == 409


def test_undoing_an_unknown_decision_is_404(client, synced, coordinator):
    answer = client.post(f"{BASE}/decisions/77/undo", json={"reason": "x"}, headers=coordinator)

    assert answer.status_code == 404


def test_decisions_are_paginated_newest_first_and_filter_by_company(
    client, engine, synced, coordinator
):
    merged, into = company_of(engine, "R-1"), company_of(engine, "A-1")
    merge = client.post(
        f"{BASE}/merges",
        json={"company_id": merged, "into_company_id": into, "reason": "samme"},
        headers=coordinator,
    ).json
    undo = client.post(
        f"{BASE}/decisions/{merge['id']}/undo", json={"reason": "fejl"}, headers=coordinator
    ).json

    first_page = client.get(f"{BASE}/decisions?page=1&page_size=1", headers=coordinator).json
    by_company = client.get(f"{BASE}/decisions?company_id={merged}", headers=coordinator).json
    merges = client.get(f"{BASE}/decisions?action=merge", headers=coordinator).json

    assert ([d["id"] for d in first_page["items"]], first_page["total"]) == ([undo["id"]], 2)
    assert [d["id"] for d in by_company["items"]] == [undo["id"], merge["id"]]
    assert [d["id"] for d in merges["items"]] == [merge["id"]]
    assert merges["items"][0]["undone_by_id"] == undo["id"]


def test_every_decision_is_audited(client, engine, synced, coordinator):
    answer = client.post(
        f"{BASE}/proposals/{proposal_id(engine)}/reject",
        json={"reason": "nej"},
        headers=coordinator,
    )

    with Session(engine) as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "identity.reject")
        ).scalar_one()
    assert entry.details["decision_id"] == answer.json["id"]
    assert (entry.organisation, entry.role) == ("Jobcenter Aarhus", "coordinator")


ENDPOINTS = [
    ("get", f"{BASE}/proposals", None),
    ("post", f"{BASE}/proposals/1/accept", {"reason": "x"}),
    ("post", f"{BASE}/proposals/1/reject", {"reason": "x"}),
    ("post", f"{BASE}/merges", {"company_id": 1, "into_company_id": 2, "reason": "x"}),
    ("post", f"{BASE}/splits", {"source": "jobcenter-1", "source_id": "A-1", "reason": "x"}),
    ("get", f"{BASE}/decisions", None),
    ("post", f"{BASE}/decisions/1/undo", {"reason": "x"}),
]


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_a_visitor_may_not_review_identities(client, engine, synced, auth, method, url, body):
    answer = getattr(client, method)(url, json=body, headers=auth("visitor"))

    assert answer.status_code == 403
    with Session(engine) as session:
        assert session.execute(select(IdentityDecision)).first() is None


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_without_a_token_it_is_401(client, method, url, body):
    assert getattr(client, method)(url, json=body).status_code == 401


@pytest.mark.parametrize("query", ["status=maybe", "page=0", "page_size=1001", "page=x"])
def test_bad_proposal_queries_are_422(client, coordinator, query):
    assert client.get(f"{BASE}/proposals?{query}", headers=coordinator).status_code == 422


def test_the_openapi_document_describes_every_identity_path(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]

    assert {
        "/api/v1/identity/proposals",
        "/api/v1/identity/proposals/{proposal_id}/accept",
        "/api/v1/identity/proposals/{proposal_id}/reject",
        "/api/v1/identity/merges",
        "/api/v1/identity/splits",
        "/api/v1/identity/decisions",
        "/api/v1/identity/decisions/{decision_id}/undo",
    } <= set(paths)
    merges = paths["/api/v1/identity/merges"]["post"]
    assert {"201", "404", "409", "422"} <= set(merges["responses"])
