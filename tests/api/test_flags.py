"""GET /api/v1/flags and POST /api/v1/flags/{id}/acknowledge|resolve (coordinator+)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coordination.companies import local_today
from coordination.db import session_scope
from coordination.models import AuditEntry
from tests.integration.test_coordination_timelines import JOBCENTER, VAEKSTHUS, Timeline, day

FLAGS = "/api/v1/flags"
CVR = "25313763"
COORDINATOR_ORGANISATION = "Region Midtjylland"


@pytest.fixture
def timeline(engine):
    return Timeline(engine)


@pytest.fixture
def flag_id(timeline) -> int:
    """An open flag on Madsen & Bøgh ApS, raised on day 20 (see Timeline.flagged_company)."""
    company, _ = timeline.flagged_company()
    [flag] = timeline.flags(company)
    return flag.id


@pytest.fixture
def coordinator(auth):
    return auth("coordinator", COORDINATOR_ORGANISATION)


def act(client, headers, flag_id, action, comment="Talt med partnerne"):
    return client.post(f"{FLAGS}/{flag_id}/{action}", json={"comment": comment}, headers=headers)


# --- listing ----------------------------------------------------------------------------------


def test_flags_are_listed_with_company_organisations_approaches_and_events(
    client, coordinator, timeline, flag_id
):
    answer = client.get(FLAGS, headers=coordinator)

    assert answer.status_code == 200
    assert (answer.json["total"], answer.json["page"], answer.json["page_size"]) == (1, 1, 100)
    [flag] = answer.json["items"]
    assert flag["id"] == flag_id
    assert (flag["company_name"], flag["cvr"]) == ("Madsen & Bøgh ApS", None)
    assert (flag["raised_on"], flag["status"], flag["resolved_on"]) == (
        day(20).isoformat(),
        "open",
        None,
    )
    assert flag["organisations"] == sorted([JOBCENTER, VAEKSTHUS])
    assert len(flag["approach_ids"]) == 2
    assert [(e["action"], e["actor"]) for e in flag["events"]] == [("raised", "coordination-rules")]


def test_flags_show_the_companys_cvr_number(client, coordinator, timeline):
    company = timeline.company("Aarhus Vand A/S", cvr=CVR)
    timeline.approach(company, JOBCENTER, day(0))
    timeline.approach(company, VAEKSTHUS, day(10))
    timeline.approach(company, JOBCENTER, day(20))
    timeline.evaluate(company)

    [flag] = client.get(FLAGS, headers=coordinator).json["items"]

    assert (flag["cvr"], flag["company_name"]) == (CVR, "Aarhus Vand A/S")


def test_flags_are_filtered_by_status(client, coordinator, flag_id):
    act(client, coordinator, flag_id, "acknowledge")

    open_flags = client.get(f"{FLAGS}?status=open", headers=coordinator)
    acknowledged = client.get(f"{FLAGS}?status=acknowledged", headers=coordinator)

    assert open_flags.json["items"] == []
    assert [f["id"] for f in acknowledged.json["items"]] == [flag_id]


def test_flags_are_listed_newest_raised_first_and_paged(client, coordinator, timeline):
    timeline.flagged_company()
    later = timeline.company("Aarhus Vand A/S")
    timeline.approach(later, JOBCENTER, day(100))
    timeline.approach(later, VAEKSTHUS, day(110))
    timeline.approach(later, JOBCENTER, day(120))
    timeline.evaluate(later)

    answer = client.get(f"{FLAGS}?page_size=1", headers=coordinator)

    assert answer.json["total"] == 2
    assert [f["raised_on"] for f in answer.json["items"]] == [day(120).isoformat()]


@pytest.mark.parametrize("query", ["status=closed", "page=0", "page_size=5000"])
def test_malformed_flag_list_parameters_are_422(client, coordinator, query):
    assert client.get(f"{FLAGS}?{query}", headers=coordinator).status_code == 422


# --- acknowledge and resolve ------------------------------------------------------------------


def test_acknowledging_records_the_comment_and_who(client, coordinator, flag_id):
    answer = act(client, coordinator, flag_id, "acknowledge", "Vi tager den på næste møde")

    assert answer.status_code == 200
    assert answer.json["status"] == "acknowledged"
    event = answer.json["events"][-1]
    assert (event["action"], event["comment"], event["organisation"]) == (
        "acknowledge",
        "Vi tager den på næste møde",
        COORDINATOR_ORGANISATION,
    )
    assert event["actor"].startswith("token:")


def test_resolving_sets_the_resolution_date(client, coordinator, flag_id):
    answer = act(client, coordinator, flag_id, "resolve", "Aftalt fælles besøg i 2025")

    assert (answer.json["status"], answer.json["resolved_on"]) == (
        "resolved",
        local_today().isoformat(),
    )
    assert answer.json["events"][-1]["comment"] == "Aftalt fælles besøg i 2025"


def test_an_acknowledged_flag_can_be_resolved(client, coordinator, flag_id):
    act(client, coordinator, flag_id, "acknowledge")

    answer = act(client, coordinator, flag_id, "resolve")

    assert answer.json["status"] == "resolved"
    assert [e["action"] for e in answer.json["events"]] == ["raised", "acknowledge", "resolve"]


def test_resolving_a_resolved_flag_is_409(client, coordinator, flag_id):
    act(client, coordinator, flag_id, "resolve")

    answer = act(client, coordinator, flag_id, "resolve")

    assert answer.status_code == 409
    assert "resolved" in answer.json["message"]


def test_acknowledging_an_acknowledged_flag_is_409(client, coordinator, flag_id):
    act(client, coordinator, flag_id, "acknowledge")

    assert act(client, coordinator, flag_id, "acknowledge").status_code == 409


def test_a_refused_transition_records_no_event(client, coordinator, flag_id):
    act(client, coordinator, flag_id, "resolve")
    act(client, coordinator, flag_id, "acknowledge")

    [flag] = client.get(FLAGS, headers=coordinator).json["items"]
    assert [e["action"] for e in flag["events"]] == ["raised", "resolve"]


@pytest.mark.parametrize("flag", ["4711", "99999999999"])
def test_acting_on_an_unknown_flag_is_404(client, coordinator, flag):
    assert act(client, coordinator, flag, "resolve").status_code == 404


@pytest.mark.parametrize("body", [{}, {"comment": ""}, {"comment": 7}, {"comment": "x" * 4001}])
def test_a_comment_is_required(client, coordinator, flag_id, body):
    answer = client.post(f"{FLAGS}/{flag_id}/resolve", json=body, headers=coordinator)

    assert answer.status_code == 422
    assert "comment" in answer.json["errors"]["json"]


def test_acting_on_a_flag_is_audited(client, coordinator, engine, flag_id):
    act(client, coordinator, flag_id, "acknowledge")

    with session_scope(engine) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
    assert (entry.action, entry.target) == ("flags.acknowledge", f"flag:{flag_id}")


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["visitor", "council"])
def test_only_coordinators_and_admins_work_flags(client, auth, flag_id, role):
    headers = auth(role)

    assert client.get(FLAGS, headers=headers).status_code == 403
    assert act(client, headers, flag_id, "resolve").status_code == 403


def test_admin_may_resolve_a_flag(client, auth, flag_id):
    assert act(client, auth("admin"), flag_id, "resolve").status_code == 200


def test_openapi_describes_the_flag_actions(client):
    spec = client.get("/api/v1/openapi.json").json

    resolve = spec["paths"]["/api/v1/flags/{flag_id}/resolve"]["post"]
    assert {"200", "404", "409", "422"} <= set(resolve["responses"])
    assert "requestBody" in resolve
    listing = spec["paths"]["/api/v1/flags"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "page", "page_size"}
