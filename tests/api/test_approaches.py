"""GET /api/v1/approaches (coordinator+)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coordination.approach_queries import approaches_by_id
from coordination.db import session_scope
from coordination.models import AuditEntry
from tests.integration.test_coordination_timelines import (
    JOBCENTER,
    VAEKSTHUS,
    VEU,
    Timeline,
    day,
)

APPROACHES = "/api/v1/approaches"
MADSEN_CVR = "25313763"


@pytest.fixture
def timeline(engine):
    return Timeline(engine)


@pytest.fixture
def companies(timeline) -> tuple[int, int]:
    """Madsen & Bøgh: Jobcenter (day 0), Væksthus (day 10, uncoordinated); Aarhus Vand: VEU
    (day 5)."""
    madsen = timeline.company("Madsen & Bøgh ApS", cvr=MADSEN_CVR)
    vand = timeline.company("Aarhus Vand A/S", cvr=None)
    timeline.approach(madsen, JOBCENTER, day(0), notes="Ring tilbage efter sommerferien")
    timeline.approach(vand, VEU, day(5))
    timeline.approach(madsen, VAEKSTHUS, day(10))
    timeline.evaluate(madsen)
    timeline.evaluate(vand)
    return madsen, vand


def listed(answer) -> list[tuple[str, str]]:
    return [(a["date"], a["organisations"][0]) for a in answer.json["items"]]


def test_approaches_are_listed_newest_first_in_the_paginated_envelope(client, auth, companies):
    answer = client.get(APPROACHES, headers=auth("coordinator"))

    assert answer.status_code == 200
    assert (answer.json["page"], answer.json["page_size"], answer.json["total"]) == (1, 100, 3)
    assert listed(answer) == [
        (day(10).isoformat(), VAEKSTHUS),
        (day(5).isoformat(), VEU),
        (day(0).isoformat(), JOBCENTER),
    ]


def test_an_approach_carries_its_company_and_whether_it_was_coordinated(client, auth, companies):
    madsen, _ = companies

    answer = client.get(APPROACHES, headers=auth("coordinator"))

    newest = answer.json["items"][0]
    assert newest["company"] == {"id": madsen, "cvr": MADSEN_CVR, "name": "Madsen & Bøgh ApS"}
    assert newest["coordinated"] is False
    assert [a["coordinated"] for a in answer.json["items"][1:]] == [True, True]


def test_approaches_are_filtered_by_cvr(client, auth, companies):
    answer = client.get(f"{APPROACHES}?cvr={MADSEN_CVR}", headers=auth("coordinator"))

    assert listed(answer) == [(day(10).isoformat(), VAEKSTHUS), (day(0).isoformat(), JOBCENTER)]


def test_approaches_are_filtered_by_company_id(client, auth, companies):
    _, vand = companies

    answer = client.get(f"{APPROACHES}?company_id={vand}", headers=auth("coordinator"))

    assert listed(answer) == [(day(5).isoformat(), VEU)]
    assert answer.json["items"][0]["company"]["cvr"] is None


def test_approaches_are_filtered_by_organisation_whatever_its_spelling(client, auth, companies):
    answer = client.get(f"{APPROACHES}?organisation=væksthus MIDTJYLLAND", headers=auth("admin"))

    assert listed(answer) == [(day(10).isoformat(), VAEKSTHUS)]


def test_approaches_are_filtered_by_period_inclusively(client, auth, companies):
    answer = client.get(
        f"{APPROACHES}?from={day(5).isoformat()}&to={day(10).isoformat()}",
        headers=auth("coordinator"),
    )

    assert listed(answer) == [(day(10).isoformat(), VAEKSTHUS), (day(5).isoformat(), VEU)]


def test_approaches_page_through_the_list(client, auth, companies):
    answer = client.get(f"{APPROACHES}?page=2&page_size=2", headers=auth("coordinator"))

    assert (answer.json["total"], listed(answer)) == (3, [(day(0).isoformat(), JOBCENTER)])


def test_notes_are_shown_only_to_the_organisation_that_wrote_them(client, auth, companies):
    writer = client.get(f"{APPROACHES}?cvr={MADSEN_CVR}", headers=auth("coordinator", JOBCENTER))
    other = client.get(f"{APPROACHES}?cvr={MADSEN_CVR}", headers=auth("coordinator", VEU))

    assert [n["text"] for n in writer.json["items"][1]["notes"]] == [
        "Ring tilbage efter sommerferien"
    ]
    assert [a["notes"] for a in other.json["items"]] == [[], []]


@pytest.mark.parametrize(
    "query",
    [
        "from=2024-02-01&to=2024-01-01",
        "from=2024-13-01",
        "cvr=11111111",
        "company_id=0",
        "page=0",
        "page_size=1001",
    ],
)
def test_malformed_filters_are_422(client, auth, query):
    answer = client.get(f"{APPROACHES}?{query}", headers=auth("coordinator"))

    assert answer.status_code == 422
    assert answer.json["errors"]["query"]


@pytest.mark.parametrize("role", ["visitor", "council"])
def test_only_coordinators_and_admins_list_approaches(client, auth, role):
    assert client.get(APPROACHES, headers=auth(role)).status_code == 403


def test_listing_approaches_is_audited(client, auth, engine, companies):
    client.get(f"{APPROACHES}?cvr={MADSEN_CVR}", headers=auth("coordinator"))

    with session_scope(engine) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
    assert entry.action == "approaches.list"
    assert entry.details["filters"]["cvr"] == MADSEN_CVR
    assert entry.details["total"] == 2


def test_the_service_shows_approaches_by_id_and_leaves_unknown_ids_out(engine, timeline):
    company = timeline.company()
    approach = timeline.approach_of(timeline.approach(company, VEU, day(5))).id

    with session_scope(engine) as session:
        shown = approaches_by_id(session, [approach, 4711], viewer=JOBCENTER)

    assert list(shown) == [approach]
    assert shown[approach]["organisations"] == [VEU]


def test_openapi_describes_the_approach_list(client):
    spec = client.get("/api/v1/openapi.json").json

    operation = spec["paths"]["/api/v1/approaches"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "cvr",
        "company_id",
        "organisation",
        "from",
        "to",
        "page",
        "page_size",
    }
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
