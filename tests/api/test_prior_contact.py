"""GET /api/v1/companies/{cvr}/prior-contact, and planned visits under .../planned."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from connectors.base import SourceSettings
from coordination.companies import local_today
from coordination.config import Config, Rules, Schedule, SourceConfig
from coordination.db import session_scope
from coordination.models import AuditEntry, Organisation, PlannedVisit, PriorContactCheck, utcnow
from tests.integration.test_coordination_timelines import JOBCENTER, VAEKSTHUS, VEU, Timeline

CVR = "25313763"
CHECK = f"/api/v1/companies/{CVR}/prior-contact"
PLANNED = f"/api/v1/companies/{CVR}/planned"
SOURCES = (
    ("jobcenter-aarhus", "csv-drop", JOBCENTER, "jobcenter"),
    ("vaeksthus-midt", "odata-crm", VAEKSTHUS, "vaeksthus"),
    ("veu-oestjylland", "rest-json", VEU, "veu"),
)


@pytest.fixture
def service_config(db_url):
    """The three partners' sources are configured (the sources the answer reports on)."""
    sources = tuple(
        SourceConfig(name, kind, organisation, kind_of, None, SourceSettings(name, {}, {}))
        for name, kind, organisation, kind_of in SOURCES
    )
    return Config(database_url=db_url, rules=Rules(), schedule=Schedule(), sources=sources)


@pytest.fixture
def timeline(engine):
    return Timeline(engine)


@pytest.fixture
def company(timeline) -> int:
    return timeline.company("Madsen & Bøgh ApS", cvr=CVR)


def ago(days: int) -> dt.date:
    return local_today() - dt.timedelta(days=days)


def ahead(days: int) -> dt.date:
    return local_today() + dt.timedelta(days=days)


# --- the answer -------------------------------------------------------------------------------


def test_the_answer_has_the_specified_parts(client, auth, timeline, company):
    timeline.approach(company, JOBCENTER, ago(3))

    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    assert answer.status_code == 200
    assert set(answer.json) == {
        "company",
        "days",
        "approaches",
        "planned",
        "open_flags",
        "summary",
        "sources",
        "check",
    }
    assert answer.json["company"]["cvr"] == CVR
    assert set(answer.json["approaches"][0]) >= {
        "id",
        "company",
        "date",
        "channel",
        "organisations",
        "purpose",
        "consultants",
        "needs",
        "sources",
        "coordinated",
    }


def test_approaches_are_listed_newest_first(client, auth, timeline, company):
    for days in (40, 2, 100, 15):
        timeline.approach(company, JOBCENTER, ago(days))

    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    dates = [a["date"] for a in answer.json["approaches"]]
    assert dates == [ago(n).isoformat() for n in (2, 15, 40, 100)]


def test_approaches_older_than_the_days_asked_for_are_left_out(client, auth, timeline, company):
    timeline.approach(company, JOBCENTER, ago(10))
    timeline.approach(company, JOBCENTER, ago(31))

    answer = client.get(f"{CHECK}?days=30", headers=auth("visitor", VAEKSTHUS))

    assert [a["date"] for a in answer.json["approaches"]] == [ago(10).isoformat()]
    assert answer.json["days"] == 30


def test_the_summary_counts_approaches_and_organisations(client, auth, timeline, company):
    timeline.approach(company, JOBCENTER, ago(5))
    timeline.approach(company, JOBCENTER, ago(30))
    timeline.approach(company, VEU, ago(60))
    timeline.approach(company, VAEKSTHUS, ago(91))
    timeline.approach(company, VAEKSTHUS, ahead(3), status="planned")

    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    assert answer.json["summary"] == {
        "approaches_30d": 2,
        "approaches_90d": 3,
        "organisations_90d": 2,
        "last_approach": ago(5).isoformat(),
    }


def test_the_summary_of_a_company_never_approached_is_empty(client, auth, company):
    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    assert answer.json["approaches"] == []
    assert answer.json["summary"] == {
        "approaches_30d": 0,
        "approaches_90d": 0,
        "organisations_90d": 0,
        "last_approach": None,
    }


def test_an_approach_shows_its_organisations_sources_consultants_and_coordination(
    client, auth, timeline, company
):
    timeline.approach(company, JOBCENTER, ago(40))
    timeline.approach(
        company,
        VAEKSTHUS,
        ago(20),
        channel="meeting",
        purpose="Grøn omstilling på værkstedet",
        consultant="Åse Øberg",
    )
    timeline.evaluate(company, today=local_today())

    answer = client.get(CHECK, headers=auth("visitor", VEU))

    newest = answer.json["approaches"][0]
    assert newest["company"] == {"id": company, "cvr": CVR, "name": "Madsen & Bøgh ApS"}
    assert (newest["channel"], newest["purpose"]) == ("meeting", "Grøn omstilling på værkstedet")
    assert newest["organisations"] == [VAEKSTHUS]
    assert newest["consultants"] == ["Åse Øberg"]
    assert newest["sources"] == [{"source": "vaeksthus-midt", "source_id": "rec-2"}]
    assert (newest["coordinated"], newest["joint"], newest["planned"]) == (False, False, False)


def test_needs_read_as_the_taxonomy_when_classified_and_as_delivered_otherwise(
    client, auth, timeline, company
):
    timeline.approach(
        company,
        JOBCENTER,
        ago(3),
        needs=[
            ("upskilling", "K-17", "MIG/MAG svejsning", "komp:svejsning"),
            ("recruitment", None, "Lærling til lageret", None),
        ],
    )

    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    assert answer.json["approaches"][0]["needs"] == [
        {"type": "upskilling", "code": "komp:svejsning", "label": "Svejsning", "classified": True},
        {
            "type": "recruitment",
            "code": None,
            "label": "Lærling til lageret",
            "classified": False,
        },
    ]


def test_notes_are_shown_only_to_the_organisation_that_wrote_them(client, auth, timeline, company):
    timeline.approach(company, JOBCENTER, ago(3), notes="Direktøren ønsker opfølgning i maj")

    writer = client.get(CHECK, headers=auth("visitor", JOBCENTER))
    other = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    assert writer.json["approaches"][0]["notes"] == [
        {
            "source": "jobcenter-aarhus",
            "source_id": "rec-1",
            "text": "Direktøren ønsker opfølgning i maj",
        }
    ]
    assert other.json["approaches"][0]["notes"] == []


def test_open_flags_are_listed_and_resolved_ones_are_not(client, auth, timeline):
    company = timeline.company("Madsen & Bøgh ApS", cvr=CVR)
    timeline.approach(company, JOBCENTER, ago(60))
    timeline.approach(company, VAEKSTHUS, ago(50))
    timeline.approach(company, JOBCENTER, ago(40))
    timeline.evaluate(company, today=local_today())
    [flag] = timeline.flags(company)

    answer = client.get(CHECK, headers=auth("visitor", VEU))

    [shown] = answer.json["open_flags"]
    assert (shown["id"], shown["status"], shown["raised_on"]) == (
        flag.id,
        "open",
        ago(40).isoformat(),
    )
    timeline.resolve(flag.id)
    assert client.get(CHECK, headers=auth("visitor", VEU)).json["open_flags"] == []


def test_visitor_sees_contact_persons_in_the_company_part(client, auth, company):
    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    assert answer.json["company"]["contact_persons"] == []


def test_a_company_without_cvr_is_checked_by_id(client, auth, timeline):
    company = timeline.company("Ukendt Smedje", cvr=None)
    timeline.approach(company, JOBCENTER, ago(3))

    answer = client.get(f"/api/v1/companies/id/{company}/prior-contact", headers=auth("visitor"))

    assert answer.status_code == 200
    assert answer.json["company"]["id"] == company
    assert len(answer.json["approaches"]) == 1


@pytest.mark.parametrize(
    ("query", "days"),
    [
        (b"", 180),
        (b"days=1", 1),
        (b"days=030", 30),
        (b"days=3650", 3650),
        (b"days=0", None),
        (b"days=3651", None),
        (b"days=12345", None),
        (b"days=", None),
        (b"days=-5", None),
        (b"days=%3130", None),
        (b"days=30&days=40", None),
        (b"days=30&other=1", None),
        (b"other=1", None),
    ],
)
def test_only_an_empty_query_or_days_alone_in_range_is_taken_without_parsing(query, days):
    from coordination.api.companies import plain_days

    assert plain_days(query) == days


@pytest.mark.parametrize("query", ["", "?days=30"])
def test_a_plain_query_answers_as_the_same_query_parsed_by_the_schema(
    client, auth, timeline, company, query
):
    timeline.approach(company, JOBCENTER, ago(10), notes="Ring igen")
    timeline.approach(company, VEU, ago(31), joint_with=[JOBCENTER])
    timeline.approach(company, VAEKSTHUS, ahead(3), status="planned")
    headers = auth("visitor", JOBCENTER)
    parsed_query = (query or "?") + "&unknown=ignored"  # the schema ignores unknown arguments

    plain = client.get(CHECK + query, headers=headers)
    parsed = client.get(CHECK + parsed_query, headers=headers)

    assert plain.status_code == parsed.status_code == 200
    assert plain.headers == parsed.headers
    first, second = plain.json, parsed.json
    assert second["check"]["id"] == first["check"]["id"] + 1
    for answer in (first, second):
        del answer["check"]
    assert first == second
    assert first["days"] == (30 if query else 180)


@pytest.mark.parametrize("days", ["0", "3651", "abc"])
def test_days_out_of_range_is_422(client, auth, company, days):
    answer = client.get(f"{CHECK}?days={days}", headers=auth("visitor"))

    assert answer.status_code == 422
    assert "days" in answer.json["errors"]["query"]


def test_checking_an_unknown_company_is_404_and_records_no_check(client, auth, engine):
    answer = client.get(CHECK, headers=auth("visitor"))

    assert answer.status_code == 404
    with session_scope(engine) as session:
        assert session.execute(select(PriorContactCheck)).first() is None


# --- the check is recorded --------------------------------------------------------------------


def test_the_check_is_recorded_for_the_callers_organisation(
    client, auth, engine, timeline, company
):
    timeline.source(VAEKSTHUS)

    answer = client.get(CHECK, headers=auth("visitor", VAEKSTHUS))

    with session_scope(engine) as session:
        check, organisation = session.execute(
            select(PriorContactCheck, Organisation.name).join(
                Organisation, Organisation.id == PriorContactCheck.organisation_id
            )
        ).one()
    assert (check.company_id, organisation) == (company, VAEKSTHUS)
    assert answer.json["check"]["id"] == check.id
    assert answer.json["check"]["organisation"] == VAEKSTHUS


def test_a_token_naming_the_organisation_in_another_spelling_checks_as_that_organisation(
    client, auth, timeline, company
):
    timeline.source(JOBCENTER)

    answer = client.get(CHECK, headers=auth("visitor", "JOBCENTER  aarhus"))

    assert answer.json["check"]["organisation"] == JOBCENTER


def test_a_check_by_an_organisation_without_a_source_stores_it_as_other(
    client, auth, engine, company
):
    client.get(CHECK, headers=auth("visitor", "Erhvervshus Sydjylland"))

    with session_scope(engine) as session:
        organisation = session.execute(
            select(Organisation).where(Organisation.name == "Erhvervshus Sydjylland")
        ).scalar_one()
    assert (organisation.type, organisation.name_key) == ("other", "erhvervshus sydjylland")


def test_the_check_is_audited(client, auth, engine, company):
    client.get(f"{CHECK}?days=90", headers=auth("visitor", VAEKSTHUS))

    with session_scope(engine) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
    assert (entry.action, entry.organisation, entry.target) == (
        "companies.prior_contact",
        VAEKSTHUS,
        f"cvr:{CVR}",
    )
    assert entry.details == {"found": True, "company_id": company, "days": 90}


# --- how fresh the sources are ----------------------------------------------------------------


def test_each_configured_source_says_when_it_last_synced_and_whether_it_is_stale(
    client, auth, timeline, company
):
    now = utcnow()
    timeline.sync_state(JOBCENTER, "succeeded", now - dt.timedelta(hours=1))
    timeline.sync_state(VAEKSTHUS, "failed", now - dt.timedelta(hours=2))
    timeline.sync_state(VEU, "succeeded", now - dt.timedelta(hours=49))

    answer = client.get(CHECK, headers=auth("visitor"))

    freshness = {
        s["source"]: (s["organisation"], s["last_status"], s["stale"])
        for s in answer.json["sources"]
    }
    assert freshness == {
        "jobcenter-aarhus": (JOBCENTER, "succeeded", False),
        "vaeksthus-midt": (VAEKSTHUS, "failed", True),
        "veu-oestjylland": (VEU, "succeeded", True),
    }
    reported = dt.datetime.fromisoformat(answer.json["sources"][0]["last_success_at"])
    assert abs(reported - (now - dt.timedelta(hours=1))) < dt.timedelta(seconds=1)


def test_a_configured_source_that_never_synced_is_stale(client, auth, company):
    answer = client.get(CHECK, headers=auth("visitor"))

    assert [(s["source"], s["last_success_at"], s["stale"]) for s in answer.json["sources"]] == [
        ("jobcenter-aarhus", None, True),
        ("vaeksthus-midt", None, True),
        ("veu-oestjylland", None, True),
    ]


# --- planned visits ---------------------------------------------------------------------------


def test_a_planned_visit_is_registered_for_the_callers_organisation(client, auth, company):
    answer = client.post(
        PLANNED,
        json={"date": ahead(7).isoformat(), "purpose": "Drøfte lærlinge på værkstedet"},
        headers=auth("visitor", JOBCENTER),
    )

    assert answer.status_code == 201
    assert answer.json == {
        "id": answer.json["id"],
        "approach_id": None,
        "date": ahead(7).isoformat(),
        "organisations": [JOBCENTER],
        "purpose": "Drøfte lærlinge på værkstedet",
        "registered_by": answer.json["registered_by"],
    }


def test_a_planned_visit_is_shown_to_everyone_who_checks_the_company(client, auth, company):
    client.post(PLANNED, json={"date": ahead(7).isoformat()}, headers=auth("visitor", JOBCENTER))

    answer = client.get(CHECK, headers=auth("visitor", VEU))

    assert [(p["date"], p["organisations"]) for p in answer.json["planned"]] == [
        (ahead(7).isoformat(), [JOBCENTER])
    ]


def test_planned_visits_are_listed_soonest_first(client, auth, company):
    for days in (20, 0, 7):
        client.post(
            PLANNED, json={"date": ahead(days).isoformat()}, headers=auth("visitor", JOBCENTER)
        )

    answer = client.get(PLANNED, headers=auth("visitor", VEU))

    assert answer.status_code == 200
    assert [p["date"] for p in answer.json["items"]] == [ahead(n).isoformat() for n in (0, 7, 20)]


def test_a_planned_visit_whose_date_has_passed_is_no_longer_shown(client, auth, engine, company):
    with session_scope(engine) as session:
        organisation = Organisation(name=JOBCENTER, name_key="jobcenter aarhus", type="jobcenter")
        session.add(organisation)
        session.flush()
        session.add(PlannedVisit(company_id=company, organisation_id=organisation.id, date=ago(1)))

    assert client.get(PLANNED, headers=auth("visitor")).json["items"] == []


def test_a_planned_crm_approach_is_shown_as_planned_not_as_contact(client, auth, timeline, company):
    timeline.approach(company, VAEKSTHUS, ahead(5), status="planned", purpose="Opfølgning")

    answer = client.get(CHECK, headers=auth("visitor", JOBCENTER))

    assert answer.json["approaches"] == []
    [planned] = answer.json["planned"]
    assert (planned["id"], planned["date"], planned["organisations"], planned["purpose"]) == (
        None,
        ahead(5).isoformat(),
        [VAEKSTHUS],
        "Opfølgning",
    )
    assert planned["approach_id"] is not None


def test_a_planned_visit_cannot_be_dated_in_the_past(client, auth, company):
    answer = client.post(PLANNED, json={"date": ago(1).isoformat()}, headers=auth("visitor"))

    assert answer.status_code == 422
    assert "date" in answer.json["errors"]["json"]


@pytest.mark.parametrize(
    "body",
    [{}, {"date": "i morgen"}, {"date": "2099-01-01", "purpose": "x" * 2001}, {"date": 7}],
)
def test_a_malformed_planned_visit_is_422(client, auth, company, body):
    assert client.post(PLANNED, json=body, headers=auth("visitor")).status_code == 422


def test_the_registering_organisation_deletes_its_planned_visit(client, auth, company):
    created = client.post(
        PLANNED, json={"date": ahead(3).isoformat()}, headers=auth("visitor", JOBCENTER)
    )

    answer = client.delete(f"{PLANNED}/{created.json['id']}", headers=auth("visitor", JOBCENTER))

    assert answer.status_code == 204
    assert client.get(PLANNED, headers=auth("visitor")).json["items"] == []


def test_another_organisation_may_not_delete_a_planned_visit(client, auth, company):
    created = client.post(
        PLANNED, json={"date": ahead(3).isoformat()}, headers=auth("visitor", JOBCENTER)
    )

    answer = client.delete(f"{PLANNED}/{created.json['id']}", headers=auth("coordinator", VEU))

    assert answer.status_code == 403
    assert len(client.get(PLANNED, headers=auth("visitor")).json["items"]) == 1


@pytest.mark.parametrize("visit_id", ["12345", "99999999999"])
def test_deleting_an_unknown_planned_visit_is_404(client, auth, company, visit_id):
    assert client.delete(f"{PLANNED}/{visit_id}", headers=auth("visitor")).status_code == 404


def test_a_planned_visit_of_another_company_is_not_found_under_this_one(
    client, auth, timeline, company
):
    other = timeline.company("Aarhus Vand A/S", cvr="10150817")
    created = client.post(
        f"/api/v1/companies/id/{other}/planned",
        json={"date": ahead(3).isoformat()},
        headers=auth("visitor", JOBCENTER),
    )

    answer = client.delete(f"{PLANNED}/{created.json['id']}", headers=auth("visitor", JOBCENTER))

    assert answer.status_code == 404


def test_planning_a_visit_to_an_unknown_company_is_404(client, auth):
    answer = client.post(PLANNED, json={"date": ahead(3).isoformat()}, headers=auth("visitor"))

    assert answer.status_code == 404


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["visitor", "coordinator", "admin"])
def test_visitors_and_above_may_check(client, auth, company, role):
    assert client.get(CHECK, headers=auth(role)).status_code == 200


def test_council_may_not_check_or_plan(client, auth, company):
    headers = auth("council")

    assert client.get(CHECK, headers=headers).status_code == 403
    assert (
        client.post(PLANNED, json={"date": ahead(1).isoformat()}, headers=headers).status_code
        == 403
    )


def test_admin_sees_the_answer_without_contact_persons(client, auth, company):
    answer = client.get(CHECK, headers=auth("admin"))

    assert "contact_persons" not in answer.json["company"]
