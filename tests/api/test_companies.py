"""GET /api/v1/companies (search) and GET /api/v1/companies/{cvr} (detail)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from coordination.db import session_scope
from coordination.models import AuditEntry, Company, ContactPerson, ProductionUnit
from tests.integration.test_coordination_timelines import Timeline

MADSEN_CVR = "25313763"
AARHUS_CVR = "10150817"
COMPANIES = "/api/v1/companies"


@pytest.fixture
def timeline(engine):
    return Timeline(engine)


@pytest.fixture
def madsen(timeline) -> int:
    """Madsen & Bøgh ApS in Aarhus C (751), with a production unit and a contact person."""
    company = timeline.company("Madsen & Bøgh ApS", cvr=MADSEN_CVR)
    with session_scope(timeline.engine) as session:
        session.add(
            ProductionUnit(
                p_number="1012345678",
                company_id=company,
                address="Værkstedsvej 3",
                postcode="8200",
                city="Aarhus N",
            )
        )
        session.add(
            ContactPerson(
                company_id=company,
                person_key="soeren@madsen-boegh.dk",
                name="Søren Ærø",
                email="soeren@madsen-boegh.dk",
                phone="86123456",
            )
        )
    return company


@pytest.fixture
def others(timeline) -> None:
    timeline.company("Aarhus Vand A/S", cvr=AARHUS_CVR, postcode="8000", municipality_code="751")
    timeline.company("Herning Stål ApS", postcode="7400", city="Herning", municipality_code="657")
    timeline.company("Madsen Tømrer", postcode="7400", city="Herning", municipality_code="657")


def names(answer) -> list[str]:
    return [item["name"] for item in answer.json["items"]]


# --- search -----------------------------------------------------------------------------------


def test_search_by_cvr_finds_exactly_that_company(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?cvr={MADSEN_CVR}", headers=auth("visitor"))

    assert answer.status_code == 200
    assert names(answer) == ["Madsen & Bøgh ApS"]
    assert answer.json["items"][0]["cvr"] == MADSEN_CVR


def test_search_text_that_is_a_cvr_number_finds_the_company(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?q=DK {AARHUS_CVR}", headers=auth("visitor"))

    assert names(answer) == ["Aarhus Vand A/S"]


def test_search_by_misspelled_name_finds_the_company_first(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?q=madsen og bøg", headers=auth("visitor"))

    assert names(answer)[0] == "Madsen & Bøgh ApS"
    assert answer.json["items"][0]["score"] > 75


def test_search_by_name_leaves_out_dissimilar_companies(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?q=Aarhus Vand", headers=auth("visitor"))

    assert names(answer) == ["Aarhus Vand A/S"]


def test_a_misspelled_name_is_found_among_thousands_sharing_its_first_letters(
    client, auth, engine, madsen, others
):
    with session_scope(engine) as session:
        session.execute(
            insert(Company),
            [
                {"name": f"Aarhus Autoværksted {n}", "name_key": f"aarhus autovaerksted {n}"}
                for n in range(2500)
            ],
        )

    answer = client.get(f"{COMPANIES}?q=Aarhus Vadn&page_size=1", headers=auth("visitor"))

    assert names(answer) == ["Aarhus Vand A/S"]


def test_search_finds_a_word_inside_a_name_within_a_postcode(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?q=Bøgh&postcode=8000", headers=auth("visitor"))

    assert names(answer) == ["Madsen & Bøgh ApS"]


def test_search_by_postcode_lists_the_companies_there_by_name(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?postcode=7400", headers=auth("visitor"))

    assert names(answer) == ["Herning Stål ApS", "Madsen Tømrer"]
    assert answer.json["items"][0]["score"] is None


def test_search_by_municipality_code(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?municipality=751", headers=auth("visitor"))

    assert names(answer) == ["Aarhus Vand A/S", "Madsen & Bøgh ApS"]


def test_search_by_municipality_name(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?municipality=herning", headers=auth("visitor"))

    assert names(answer) == ["Herning Stål ApS", "Madsen Tømrer"]


def test_search_combines_name_and_municipality(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?q=Madsen&municipality=657", headers=auth("visitor"))

    assert names(answer) == ["Madsen Tømrer"]


def test_search_answers_the_paginated_envelope(client, auth, madsen, others):
    answer = client.get(f"{COMPANIES}?postcode=7400&page=2&page_size=1", headers=auth("visitor"))

    assert answer.json == {
        "items": [answer.json["items"][0]],
        "page": 2,
        "page_size": 1,
        "total": 2,
    }
    assert names(answer) == ["Madsen Tømrer"]


def test_search_never_lists_a_company_merged_into_another(client, auth, timeline, madsen):
    duplicate = timeline.company("Madsen & Bøgh", postcode="8000")
    with session_scope(timeline.engine) as session:
        session.get(Company, duplicate).merged_into_id = madsen

    answer = client.get(f"{COMPANIES}?q=Madsen Bøgh", headers=auth("visitor"))

    assert [item["id"] for item in answer.json["items"]] == [madsen]


def test_search_without_a_criterion_lists_every_company_by_name(client, auth, madsen, others):
    answer = client.get(COMPANIES, headers=auth("visitor"))

    assert names(answer) == [
        "Aarhus Vand A/S",
        "Herning Stål ApS",
        "Madsen & Bøgh ApS",
        "Madsen Tømrer",
    ]


@pytest.mark.parametrize(
    "query",
    ["cvr=12345678", "cvr=abc", "postcode=80000", "municipality=Narnia", "page_size=1001"],
)
def test_search_with_a_malformed_parameter_is_422(client, auth, query):
    answer = client.get(f"{COMPANIES}?{query}", headers=auth("visitor"))

    assert answer.status_code == 422
    assert answer.json["code"] == 422


def test_search_is_audited_with_its_criteria(client, auth, engine, madsen):
    client.get(f"{COMPANIES}?q=Madsen&postcode=8000", headers=auth("visitor", "Jobcenter Aarhus"))

    with session_scope(engine) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
    assert (entry.action, entry.organisation, entry.role) == (
        "companies.search",
        "Jobcenter Aarhus",
        "visitor",
    )
    assert entry.details == {"q": "Madsen", "postcode": "8000", "total": 1}


def test_danish_letters_round_trip_through_search(client, auth, madsen):
    answer = client.get(f"{COMPANIES}?q=Madsen %26 Bøgh ApS", headers=auth("visitor"))

    assert answer.json["items"][0]["name"] == "Madsen & Bøgh ApS"


# --- one company ------------------------------------------------------------------------------


def test_company_detail_has_production_units_and_contact_persons(client, auth, madsen):
    answer = client.get(f"{COMPANIES}/{MADSEN_CVR}", headers=auth("visitor"))

    assert answer.status_code == 200
    body = answer.json
    assert (body["id"], body["cvr"], body["name"], body["resolved"]) == (
        madsen,
        MADSEN_CVR,
        "Madsen & Bøgh ApS",
        True,
    )
    assert body["production_units"] == [
        {
            "p_number": "1012345678",
            "address": "Værkstedsvej 3",
            "postcode": "8200",
            "city": "Aarhus N",
        }
    ]
    assert body["contact_persons"] == [
        {
            "name": "Søren Ærø",
            "email": "soeren@madsen-boegh.dk",
            "phone": "86123456",
            "last_seen_on": None,
        }
    ]


def test_company_detail_accepts_a_formatted_cvr_number(client, auth, madsen):
    answer = client.get(f"{COMPANIES}/DK-{MADSEN_CVR}", headers=auth("visitor"))

    assert answer.json["id"] == madsen


def test_coordinator_sees_contact_persons(client, auth, madsen):
    answer = client.get(f"{COMPANIES}/{MADSEN_CVR}", headers=auth("coordinator"))

    assert [p["name"] for p in answer.json["contact_persons"]] == ["Søren Ærø"]


def test_admin_sees_the_company_without_contact_persons(client, auth, madsen):
    answer = client.get(f"{COMPANIES}/{MADSEN_CVR}", headers=auth("admin"))

    assert answer.status_code == 200
    assert "contact_persons" not in answer.json
    assert answer.json["name"] == "Madsen & Bøgh ApS"


def test_council_may_not_use_company_endpoints(client, auth, madsen):
    headers = auth("council")

    assert client.get(f"{COMPANIES}?q=Madsen", headers=headers).status_code == 403
    assert client.get(f"{COMPANIES}/{MADSEN_CVR}", headers=headers).status_code == 403


def test_company_endpoints_need_a_token(client, madsen):
    assert client.get(f"{COMPANIES}/{MADSEN_CVR}").status_code == 401


def test_unknown_cvr_is_404(client, auth, madsen):
    answer = client.get(f"{COMPANIES}/{AARHUS_CVR}", headers=auth("visitor"))

    assert answer.status_code == 404
    assert AARHUS_CVR in answer.json["message"]


@pytest.mark.parametrize("cvr", ["25313764", "1234567", "abcdefgh", "253137630"])
def test_malformed_cvr_is_422(client, auth, cvr):
    answer = client.get(f"{COMPANIES}/{cvr}", headers=auth("visitor"))

    assert answer.status_code == 422
    assert "cvr" in answer.json["errors"]["path"]


def test_company_without_cvr_is_found_by_id(client, auth, timeline):
    company = timeline.company("Ukendt Smedje", cvr=None)

    answer = client.get(f"{COMPANIES}/id/{company}", headers=auth("visitor"))

    assert (answer.json["id"], answer.json["cvr"], answer.json["resolved"]) == (
        company,
        None,
        False,
    )


def test_a_merged_company_id_answers_with_the_company_it_was_merged_into(
    client, auth, timeline, madsen
):
    duplicate = timeline.company("Madsen og Bøgh", cvr=None)
    with session_scope(timeline.engine) as session:
        session.get(Company, duplicate).merged_into_id = madsen

    answer = client.get(f"{COMPANIES}/id/{duplicate}", headers=auth("visitor"))

    assert answer.json["id"] == madsen


@pytest.mark.parametrize("company_id", ["999", "99999999999"])
def test_unknown_company_id_is_404(client, auth, company_id):
    assert client.get(f"{COMPANIES}/id/{company_id}", headers=auth("visitor")).status_code == 404


def test_viewing_a_company_is_audited_even_when_it_is_unknown(client, auth, engine):
    client.get(f"{COMPANIES}/{MADSEN_CVR}", headers=auth("visitor"))

    with session_scope(engine) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
    assert (entry.action, entry.target, entry.details) == (
        "companies.view",
        f"cvr:{MADSEN_CVR}",
        {"found": False},
    )


def test_openapi_describes_the_company_endpoints(client):
    spec = client.get("/api/v1/openapi.json").json

    search = spec["paths"]["/api/v1/companies"]["get"]
    assert {p["name"] for p in search["parameters"]} >= {"q", "cvr", "postcode", "municipality"}
    detail = spec["paths"]["/api/v1/companies/{cvr}"]
    assert [p["name"] for p in detail["parameters"]] == ["cvr"]
    assert {"200", "404", "422"} <= set(detail["get"]["responses"])
    check = spec["paths"]["/api/v1/companies/{cvr}/prior-contact"]["get"]
    assert [p["name"] for p in check["parameters"]] == ["days"]
    assert "/api/v1/companies/id/{company_id}/prior-contact" in spec["paths"]
