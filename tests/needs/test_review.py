"""Reviewing unclassified needs: listing them with counts, and mappings that apply at once to
the stored needs and to later syncs."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlmodel import Session

from connectors.base import NeedRef
from coordination.db import session_scope
from coordination.models import AuditEntry, Need, NeedMapping, Source, SourceRecord
from coordination.needs.review import (
    METHOD_MANUAL,
    MappingError,
    MappingOverrides,
    add_mapping,
    list_unclassified,
)
from tests.reports import builders as b

MARCH = dt.date(2025, 3, 14)
PACKAGING = "Bæredygtig emballage"


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def jobcenter(session):
    return b.source(
        session, b.organisation(session, "Jobcenter Herning", "jobcenter"), "jobcenter-herning"
    )


@pytest.fixture
def veu(session):
    return b.source(session, b.organisation(session, "VEU-center Vest", "veu"), "veu-vest")


def noted(session, source, *needs, count=1):
    for _ in range(count):
        b.approach(session, b.company(session), MARCH, source, list(needs))


def taxonomy_of(session, label):
    return sorted(
        {
            (code, method)
            for code, method in session.execute(
                select(Need.taxonomy_code, Need.mapping_method).where(Need.label == label)
            )
        },
        key=str,
    )


# --- listing ------------------------------------------------------------------------------------


def test_unclassified_needs_are_listed_by_source_and_label_most_frequent_first(
    session, jobcenter, veu
):
    noted(session, jobcenter, b.need("upskilling", PACKAGING), count=3)
    noted(session, veu, b.need("upskilling", PACKAGING, code="X-PAK"))
    noted(session, jobcenter, b.need("recruitment", "Montør af vindmøllevinger"), count=2)
    noted(session, jobcenter, b.need("upskilling", "Svejsning", "komp:svejsning"), count=5)
    items, total = list_unclassified(session)
    assert total == 3
    assert [(i.source, i.need_type, i.code, i.label, i.needs, i.companies) for i in items] == [
        ("jobcenter-herning", "upskilling", None, PACKAGING, 3, 3),
        ("jobcenter-herning", "recruitment", None, "Montør af vindmøllevinger", 2, 2),
        ("veu-vest", "upskilling", "X-PAK", PACKAGING, 1, 1),
    ]


def test_the_needs_of_one_company_count_once_among_companies(session, jobcenter):
    company = b.company(session)
    for day in (1, 2, 3):
        b.approach(
            session, company, dt.date(2025, 4, day), jobcenter, [b.need("upskilling", PACKAGING)]
        )
    (item,), _ = list_unclassified(session)
    assert (item.needs, item.companies) == (3, 1)


def test_the_list_can_be_narrowed_to_one_source_and_paged(session, jobcenter, veu):
    for label in ("A-behov", "B-behov", "C-behov"):
        noted(session, jobcenter, b.need("upskilling", label))
    noted(session, veu, b.need("upskilling", "D-behov"))
    items, total = list_unclassified(session, source="jobcenter-herning", offset=1, limit=1)
    assert total == 3
    assert [i.label for i in items] == ["B-behov"]


# --- adding a mapping ---------------------------------------------------------------------------


def test_a_label_mapping_reclassifies_the_stored_needs_at_once(session, jobcenter, veu):
    noted(session, jobcenter, b.need("upskilling", PACKAGING), count=2)
    noted(session, veu, b.need("upskilling", "bæredygtig  EMBALLAGE!"))
    added = add_mapping(session, "komp:groen-omstilling", label="Bæredygtig emballage")
    assert (added.created, added.applied_to) == (True, 3)
    assert taxonomy_of(session, PACKAGING) == [("komp:groen-omstilling", METHOD_MANUAL)]
    assert taxonomy_of(session, "bæredygtig  EMBALLAGE!") == [
        ("komp:groen-omstilling", METHOD_MANUAL)
    ]
    assert list_unclassified(session) == ([], 0)


def test_a_mapping_for_one_source_leaves_other_sources_alone(session, jobcenter, veu):
    noted(session, jobcenter, b.need("upskilling", PACKAGING))
    noted(session, veu, b.need("upskilling", PACKAGING))
    added = add_mapping(
        session, "komp:groen-omstilling", label=PACKAGING, source_name="jobcenter-herning"
    )
    assert added.applied_to == 1
    (left,), _ = list_unclassified(session)
    assert left.source == "veu-vest"


def test_a_code_mapping_matches_codes_without_regard_to_case(session, veu):
    noted(session, veu, b.need("upskilling", "Emballage og pakning", code="AMU-PAK"))
    add_mapping(session, "komp:logistik", code="amu-pak", need_type="upskilling")
    assert taxonomy_of(session, "Emballage og pakning") == [("komp:logistik", METHOD_MANUAL)]


def test_a_mapping_for_another_need_type_does_not_apply(session, jobcenter):
    noted(session, jobcenter, b.need("recruitment", PACKAGING))
    added = add_mapping(session, "komp:logistik", label=PACKAGING, need_type="upskilling")
    assert added.applied_to == 0
    assert taxonomy_of(session, PACKAGING) == [(None, "none")]


def test_the_more_specific_mapping_wins_whichever_came_first(session, jobcenter, veu):
    noted(session, jobcenter, b.need("upskilling", PACKAGING))
    noted(session, veu, b.need("upskilling", PACKAGING))
    add_mapping(session, "komp:logistik", label=PACKAGING, source_name="veu-vest")
    general = add_mapping(session, "komp:groen-omstilling", label=PACKAGING)
    assert general.applied_to == 1
    by_source = dict(
        session.execute(
            select(Source.name, Need.taxonomy_code)
            .join(SourceRecord, SourceRecord.source_id == Source.id)
            .join(Need, Need.source_record_id == SourceRecord.id)
        ).all()
    )
    assert by_source == {"jobcenter-herning": "komp:groen-omstilling", "veu-vest": "komp:logistik"}


def test_adding_the_same_mapping_again_changes_its_taxonomy_code(session, jobcenter):
    noted(session, jobcenter, b.need("upskilling", PACKAGING))
    first = add_mapping(session, "komp:logistik", label=PACKAGING)
    again = add_mapping(session, "komp:groen-omstilling", label="bæredygtig emballage")
    assert (again.created, again.mapping.id) == (False, first.mapping.id)
    assert session.execute(select(NeedMapping.taxonomy_code)).scalars().all() == [
        "komp:groen-omstilling"
    ]
    assert taxonomy_of(session, PACKAGING) == [("komp:groen-omstilling", METHOD_MANUAL)]


def test_a_person_s_mapping_wins_over_the_automatic_classification(session, jobcenter):
    noted(session, jobcenter, b.noted(jobcenter, "upskilling", "Svejsning"))
    add_mapping(
        session, "komp:industriel-vedligehold", label="Svejsning", source_name=jobcenter.name
    )
    assert taxonomy_of(session, "Svejsning") == [("komp:industriel-vedligehold", METHOD_MANUAL)]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"taxonomy_code": "komp:blomsterbinding", "label": PACKAGING}, "taxonomy_code"),
        ({"taxonomy_code": "disco:9999", "label": PACKAGING}, "taxonomy_code"),
        ({"taxonomy_code": "komp:logistik", "label": " - "}, "code"),
        ({"taxonomy_code": "komp:logistik", "label": PACKAGING, "need_type": "x"}, "need_type"),
        ({"taxonomy_code": "komp:logistik", "label": "a", "source_name": "nope"}, "source_name"),
    ],
)
def test_a_mapping_that_cannot_work_is_refused(session, jobcenter, arguments, field):
    with pytest.raises(MappingError) as refused:
        add_mapping(session, **arguments)
    assert refused.value.field == field
    assert session.execute(select(NeedMapping)).first() is None


# --- later syncs ----------------------------------------------------------------------------------


def test_overrides_give_later_syncs_the_mapped_taxonomy_code(session, jobcenter):
    add_mapping(session, "komp:groen-omstilling", label=PACKAGING)
    add_mapping(session, "komp:logistik", code="X-PAK", source_name=jobcenter.name)
    overrides = MappingOverrides.load(session)
    assert overrides.taxonomy_code(NeedRef("upskilling", "BÆREDYGTIG EMBALLAGE"), "any") == (
        "komp:groen-omstilling"
    )
    coded = NeedRef("upskilling", PACKAGING, "x-pak")
    assert overrides.taxonomy_code(coded, jobcenter.name) == "komp:logistik"
    assert overrides.taxonomy_code(coded, "veu-vest") == "komp:groen-omstilling"
    assert overrides.taxonomy_code(NeedRef("upskilling", "Noget andet"), "any") is None


def test_no_mappings_means_no_overrides():
    assert not MappingOverrides()
    assert MappingOverrides().taxonomy_code(NeedRef("upskilling", PACKAGING), "x") is None


# --- the API ------------------------------------------------------------------------------------


@pytest.fixture
def stored(engine):
    """Three companies whose jobcentre noted a need nothing maps, committed."""
    with session_scope(engine) as session:
        source = b.source(
            session, b.organisation(session, "Jobcenter Aarhus", "jobcenter"), "jobcenter-aarhus"
        )
        noted(session, source, b.need("upskilling", PACKAGING), count=3)


def test_the_unclassified_list_is_served_to_coordinators(client, auth, stored):
    answer = client.get("/api/v1/needs/unclassified", headers=auth("coordinator"))
    assert answer.status_code == 200
    assert answer.json["total"] == 1
    assert answer.json["items"] == [
        {
            "source": "jobcenter-aarhus",
            "need_type": "upskilling",
            "code": None,
            "label": PACKAGING,
            "needs": 3,
            "companies": 3,
        }
    ]


@pytest.mark.parametrize("role", ["visitor", "council"])
def test_only_coordinators_review_needs(client, auth, role):
    assert client.get("/api/v1/needs/unclassified", headers=auth(role)).status_code == 403
    body = {"label": PACKAGING, "taxonomy_code": "komp:logistik"}
    answer = client.post("/api/v1/needs/mappings", json=body, headers=auth(role))
    assert answer.status_code == 403


def test_a_mapping_added_through_the_api_changes_the_report_without_a_sync(client, auth, stored):
    def report_codes():
        answer = client.get(
            "/api/v1/reports/competence-needs?area=751&from=2025-01-01&to=2025-12-31",
            headers=auth("council"),
        )
        return [(row["code"], row["companies"]) for row in answer.json["needs"]]

    assert report_codes() == [("unclassified", 3)]
    answer = client.post(
        "/api/v1/needs/mappings",
        json={"label": PACKAGING, "need_type": "upskilling", "taxonomy_code": "komp:logistik"},
        headers=auth("coordinator"),
    )
    assert answer.status_code == 201
    assert answer.json["applied_to"] == 3
    assert answer.json["taxonomy_label"] == "Lager og logistik"
    assert answer.json["label_key"] == "baeredygtigemballage"
    assert report_codes() == [("komp:logistik", 3)]
    unclassified = client.get("/api/v1/needs/unclassified", headers=auth("coordinator"))
    assert unclassified.json["total"] == 0


def test_changing_a_mapping_through_the_api_answers_200(client, auth, stored):
    body = {"label": PACKAGING, "taxonomy_code": "komp:logistik"}
    client.post("/api/v1/needs/mappings", json=body, headers=auth("coordinator"))
    body["taxonomy_code"] = "komp:groen-omstilling"
    answer = client.post("/api/v1/needs/mappings", json=body, headers=auth("coordinator"))
    assert (answer.status_code, answer.json["taxonomy_code"]) == (200, "komp:groen-omstilling")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": PACKAGING, "taxonomy_code": "komp:ukendt"}, "taxonomy_code"),
        ({"label": PACKAGING}, "taxonomy_code"),
        ({"label": PACKAGING, "taxonomy_code": "komp:logistik", "need_type": "x"}, "need_type"),
        ({"taxonomy_code": "komp:logistik"}, "code"),
        ({"label": "x" * 501, "taxonomy_code": "komp:logistik"}, "label"),
    ],
)
def test_an_unusable_mapping_is_422(client, auth, body, field):
    answer = client.post("/api/v1/needs/mappings", json=body, headers=auth("coordinator"))
    assert answer.status_code == 422
    assert field in answer.json["errors"]["json"]


def test_adding_a_mapping_is_audited(client, auth, stored, engine):
    body = {"label": PACKAGING, "taxonomy_code": "komp:logistik"}
    client.post("/api/v1/needs/mappings", json=body, headers=auth("coordinator"))
    with Session(engine) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
    assert (entry.action, entry.target, entry.role) == (
        "need-mapping.add",
        "komp:logistik",
        "coordinator",
    )
    assert entry.details["applied_to"] == 3
