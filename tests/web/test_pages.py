"""The web pages through Flask's test client: who may see which page, the login and its session,
CSRF on every form, security headers, language, and what each page shows and does."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from coordination import create_app
from coordination.db import session_scope
from coordination.models import (
    AuditEntry,
    Company,
    Flag,
    FlagEvent,
    MatchProposal,
    PriorContactCheck,
    ReportCache,
    Source,
    SyncRun,
)
from coordination.tokens import revoke
from coordination.web.charts import bar_chart, line_chart, nice_ceiling
from tests.web import (
    AARHUS,
    AARHUS_NOTE,
    CONTACT_PERSON,
    OLD_CVR,
    RANDERS,
    REPORT_CVRS,
    ROBOT_CVR,
    ROBOT_NAME,
    ROBOT_SLIP_NAME,
    csrf_token,
    seed_region,
)

PAGES = {
    "/tjek": "visitor",
    "/flag": "coordinator",
    "/match": "coordinator",
    "/rapporter": "council",
    "/synkronisering": "admin",
}
ROLES = ("visitor", "coordinator", "council", "admin")
ALLOWED = {
    "visitor": {"visitor", "coordinator", "admin"},
    "coordinator": {"coordinator", "admin"},
    "council": {"council", "coordinator", "admin"},
    "admin": {"admin"},
}
START_PAGES = {
    "visitor": "/tjek",
    "coordinator": "/flag",
    "council": "/rapporter",
    "admin": "/synkronisering",
}


def log_in(client, token: str, name: str = "Åse Bøgh", next_page: str | None = None):
    page = client.get("/log-ind")
    target = "/log-ind" + (f"?next={next_page}" if next_page else "")
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "token": token, "name": name}
    return client.post(target, data=data)


def text(response) -> str:
    return response.get_data(as_text=True)


def post_form(client, path: str, data: dict, form_page: str = "/tjek"):
    """POST ``data`` with a valid CSRF token taken from ``form_page``."""
    token = csrf_token(text(client.get(form_page)))
    return client.post(path, data={"csrf_token": token, **data})


@pytest.fixture
def login(client, make_token):
    """``login(role, organisation=AARHUS)``: the empty-database client, logged in."""

    def go(role: str, organisation: str = AARHUS):
        response = log_in(client, make_token(role, organisation))
        assert response.status_code == 302
        return client

    return go


@pytest.fixture
def region(engine, db_url, tmp_path):
    return seed_region(engine, db_url, tmp_path / "deliveries")


@pytest.fixture
def region_app(region, db_url):
    app = create_app(
        {
            "TESTING": True,
            "COORDINATION": region,
            "DATABASE_URL": db_url,
            "SECRET_KEY": "page-test-secret",
            "AUTH_MAX_FAILURES": 10_000,
        }
    )
    yield app
    app.extensions["coordination"]["engine"].dispose()


@pytest.fixture
def as_role(region_app, make_token):
    """``as_role(role, organisation=AARHUS)``: a client of the seeded region, logged in."""

    def go(role: str, organisation: str = AARHUS):
        client = region_app.test_client()
        assert log_in(client, make_token(role, organisation)).status_code == 302
        return client

    return go


def company_id(engine, **where) -> int:
    with session_scope(engine) as session:
        query = select(Company.id).filter_by(**where)
        return session.execute(query).scalar_one()


# --- who may see what -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_a_page_sends_someone_not_logged_in_to_the_login_page(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/log-ind?next={path}"


@pytest.mark.parametrize(
    ("path", "role"),
    [(path, role) for path, needed in PAGES.items() for role in sorted(ALLOWED[needed])],
)
def test_a_page_renders_for_the_roles_it_is_for(login, path, role):
    response = login(role).get(path)

    assert response.status_code == 200
    assert response.mimetype == "text/html"


@pytest.mark.parametrize(
    ("path", "role"),
    [
        (path, role)
        for path, needed in PAGES.items()
        for role in ROLES
        if role not in ALLOWED[needed]
    ],
)
def test_a_page_is_forbidden_to_roles_it_is_not_for(login, path, role):
    response = login(role).get(path)

    assert response.status_code == 403
    assert "Din rolle giver ikke adgang til denne side." in text(response)


def test_the_navigation_shows_a_visitor_only_the_company_check(login):
    page = text(login("visitor").get("/tjek"))

    assert 'href="/tjek"' in page
    for path in ("/flag", "/match", "/rapporter", "/synkronisering"):
        assert f'href="{path}"' not in page


def test_the_navigation_shows_an_admin_every_page(login):
    page = text(login("admin").get("/synkronisering"))

    for path in PAGES:
        assert f'href="{path}"' in page


# --- logging in and out -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_logging_in_leads_each_role_to_its_start_page(client, make_token, role):
    response = log_in(client, make_token(role))

    assert response.headers["Location"] == START_PAGES[role]


def test_a_login_with_an_unknown_token_is_refused_and_starts_no_session(client):
    response = log_in(client, "cns_not-a-real-token")

    assert response.status_code == 401
    assert "Adgangsnøglen er ukendt, udløbet eller spærret." in text(response)
    assert client.get("/tjek").status_code == 302


def test_a_login_returns_to_the_page_asked_for(client, make_token):
    response = log_in(client, make_token("visitor"), next_page="/tjek?q=robot")

    assert response.headers["Location"] == "/tjek?q=robot"


def test_a_login_never_redirects_to_another_site(client, make_token):
    response = log_in(client, make_token("visitor"), next_page="//evil.example/")

    assert response.headers["Location"] == "/tjek"


def test_the_session_holds_the_token_id_organisation_role_and_name_never_the_token(
    client, make_token
):
    token = make_token("coordinator", "VEU-center Østjylland")
    log_in(client, token, name="Kåre Ødegaard")

    with client.session_transaction() as session:
        stored = dict(session)
    assert isinstance(stored["token_id"], int)
    assert stored["organisation"] == "VEU-center Østjylland"
    assert stored["role"] == "coordinator"
    assert stored["name"] == "Kåre Ødegaard"
    assert token not in repr(stored)


def test_the_page_header_names_the_person_organisation_and_role(client, make_token):
    log_in(client, make_token("visitor", "VEU-center Østjylland"), name="Kåre Ødegaard")

    page = text(client.get("/tjek"))

    assert "Kåre Ødegaard · VEU-center Østjylland · Konsulent" in page


def test_revoking_the_token_ends_its_web_session(client, make_token, engine):
    log_in(client, make_token("visitor"))
    with client.session_transaction() as session:
        token_id = session["token_id"]
    with session_scope(engine) as db:
        revoke(db, token_id)

    assert client.get("/tjek").headers["Location"] == "/log-ind?next=/tjek"


def test_logging_out_ends_the_session(login):
    client = login("visitor")

    response = post_form(client, "/log-ud", {})

    assert response.headers["Location"] == "/log-ind"
    assert client.get("/tjek").status_code == 302


def test_logins_are_refused_for_a_while_after_repeated_failures(service_config, make_token):
    from coordination.api.auth import reset_failures

    strict = create_app({"TESTING": True, "COORDINATION": service_config, "AUTH_MAX_FAILURES": 2})
    client = strict.test_client()
    reset_failures()  # failures other tests left behind count too
    try:
        for _ in range(2):
            assert log_in(client, "cns_wrong-token").status_code == 401

        response = log_in(client, make_token("visitor"))

        assert response.status_code == 429
        assert "For mange mislykkede forsøg" in text(response)
    finally:
        reset_failures()
        strict.extensions["coordination"]["engine"].dispose()


def test_a_login_is_recorded_in_the_audit_log(client, make_token, engine):
    log_in(client, make_token("council", "RAR Østjylland"), name="Kåre")

    with session_scope(engine) as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "web.login")
        ).scalar_one()
    assert (entry.actor, entry.organisation, entry.role) == ("Kåre", "RAR Østjylland", "council")


# --- CSRF -------------------------------------------------------------------------------------


def test_the_login_form_is_refused_without_its_csrf_token(client, make_token):
    response = client.post("/log-ind", data={"token": make_token("visitor")})

    assert response.status_code == 400
    assert client.get("/tjek").status_code == 302


@pytest.mark.parametrize(
    "path",
    [
        "/log-ud",
        "/sprog",
        "/flag/1",
        "/virksomhed/1/planlagte-besoeg",
        "/match/forslag/1/accept",
        "/match/saml",
        "/match/beslutning/1/fortryd",
        "/synkronisering",
    ],
)
def test_every_form_is_refused_without_a_csrf_token(login, path):
    response = login("admin").post(path, data={"comment": "ok", "action": "resolve"})

    assert response.status_code == 400
    assert "Formularen var udløbet eller ugyldig." in text(response)


def test_a_form_with_a_csrf_token_from_another_session_is_refused(app, login):
    stolen = csrf_token(text(app.test_client().get("/log-ind")))
    client = login("visitor")
    client.get("/tjek")  # the session now has a CSRF token of its own

    response = client.post("/log-ud", data={"csrf_token": stolen})

    assert response.status_code == 400
    assert client.get("/tjek").status_code == 200


# --- security headers -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/log-ind", "/tjek"])
def test_pages_carry_security_headers(login, path):
    response = login("visitor").get(path)

    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "http" not in policy  # no other origin is allowed
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_contain_no_inline_script_or_style(login):
    page = text(login("visitor").get("/tjek"))

    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    assert "<style" not in page and "style=" not in page
    assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers


def test_the_session_cookie_is_http_only_and_same_site(client, make_token):
    response = log_in(client, make_token("visitor"))

    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_api_calls_neither_read_nor_renew_the_pages_session(login, make_token):
    client = login("visitor")
    headers = {"Authorization": f"Bearer {make_token('visitor')}"}

    page = client.get("/tjek")
    api = client.get("/api/v1/companies?q=Madsen", headers=headers)
    without_token = client.get("/api/v1/companies?q=Madsen")

    assert page.status_code == 200 and "Set-Cookie" in page.headers  # a login is renewed
    assert api.status_code == 200 and "Set-Cookie" not in api.headers
    assert without_token.status_code == 401  # the login's cookie is no API credential


# --- language ---------------------------------------------------------------------------------


def test_pages_are_in_danish_by_default(client):
    page = text(client.get("/log-ind"))

    assert '<html lang="da">' in page
    assert "Adgangsnøgle (API-token)" in page


def test_a_browser_that_prefers_english_gets_english_pages(client):
    page = text(client.get("/log-ind", headers={"Accept-Language": "en-GB,en;q=0.9"}))

    assert '<html lang="en">' in page
    assert "Access key (API token)" in page
    assert "Log in" in page


def test_the_language_switch_is_kept_for_the_session(login):
    client = login("visitor")

    response = post_form(client, "/sprog", {"lang": "en", "next": "/tjek"})

    assert response.headers["Location"] == "/tjek"
    page = text(client.get("/tjek", headers={"Accept-Language": "da"}))
    assert "Check company" in page


def test_the_language_switch_refuses_a_language_it_does_not_offer(login):
    response = post_form(login("visitor"), "/sprog", {"lang": "xx", "next": "/tjek"})

    assert response.status_code == 400


# --- no request breaks a page -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/tjek?q=%00%01",
        "/tjek?q=" + "x" * 5000,
        "/virksomhed/99999999999999999999",
        "/virksomhed/12345",
        "/virksomhed/1?dage=abc",
        "/flag?status=nonsense&side=-4",
        "/match?status=nonsense&side=abc",
        "/rapporter?area=nowhere&from=2026-13-45&to=x&group_by=y",
        "/rapporter/kompetencebehov.pdf",
    ],
)
def test_malformed_requests_get_an_answer_not_a_server_error(login, path):
    response = login("admin").get(path)

    assert response.status_code in (200, 302, 400, 404)


# --- Tjek virksomhed ------------------------------------------------------------------------


def test_a_search_by_cvr_number_opens_the_company_page(as_role, engine):
    response = as_role("visitor").get(f"/tjek?q={ROBOT_CVR}")

    assert response.headers["Location"] == f"/virksomhed/{company_id(engine, cvr=ROBOT_CVR)}"


def test_a_search_by_a_misspelled_name_lists_the_company_with_its_municipality(as_role):
    page = text(as_role("visitor").get("/tjek?q=Østjysk Robbotteknik"))

    row = re.search(rf"<tr>\s*<td><a [^>]*>{ROBOT_NAME}</a>.*?</tr>", page, re.S)
    assert row is not None
    assert ROBOT_CVR in row.group() and "Skanderborg" in row.group()


def test_a_search_for_an_unknown_cvr_number_says_so(as_role):
    page = text(as_role("visitor").get("/tjek?q=12345674"))

    assert "Ingen virksomhed med CVR-nummer 12345674" in page


def test_the_search_answers_htmx_with_the_results_only(as_role):
    response = as_role("visitor").get("/tjek?q=Østjysk", headers={"HX-Request": "true"})

    assert "<html" not in text(response)
    assert ROBOT_SLIP_NAME in text(response)


def test_the_company_page_shows_the_contact_history_newest_first(as_role, engine):
    page = text(as_role("visitor").get(f"/virksomhed/{company_id(engine, cvr=ROBOT_CVR)}"))

    timeline = page[page.index('data-testid="timeline"') :]
    dates = re.findall(r'<div class="timeline-date"><time datetime="([0-9-]+)"', timeline)
    assert len(dates) == 4
    assert dates == sorted(dates, reverse=True)
    assert "Jobcenter Aarhus + Jobcenter Randers · Besøg" in timeline
    assert "Fælles besøg om opkvalificering" in timeline
    assert "Opkvalificering:</span> Svejsning" in timeline


def test_the_company_page_marks_uncoordinated_approaches_and_open_flags(as_role, engine):
    page = text(as_role("visitor").get(f"/virksomhed/{company_id(engine, cvr=ROBOT_CVR)}"))

    assert page.count('class="timeline-item uncoordinated"') == 2
    assert "Åbne flag" in page


def test_the_company_page_says_there_was_no_contact_in_the_period(as_role, engine):
    page = text(as_role("visitor").get(f"/virksomhed/{company_id(engine, cvr=OLD_CVR)}?dage=90"))

    assert "Ingen kontakt de seneste 90 dage." in page


def test_the_company_page_shows_the_freshness_of_every_source(as_role, engine):
    page = text(as_role("visitor").get(f"/virksomhed/{company_id(engine, cvr=OLD_CVR)}"))

    freshness = page[page.index('data-testid="freshness"') :]
    assert "jobcenter-1" in freshness and "jobcenter-2" in freshness
    assert "Forældet" not in freshness


def test_opening_the_company_page_records_a_prior_contact_check(as_role, engine):
    robot = company_id(engine, cvr=ROBOT_CVR)

    as_role("visitor", RANDERS).get(f"/virksomhed/{robot}")

    with session_scope(engine) as session:
        checks = session.execute(select(PriorContactCheck)).scalars().all()
        audited = session.execute(
            select(AuditEntry).where(AuditEntry.action == "companies.prior_contact")
        ).scalar_one()
    assert [(c.company_id, c.consultant) for c in checks] == [(robot, "Åse Bøgh")]
    assert audited.organisation == RANDERS


def test_contact_persons_show_to_a_visitor_but_not_to_an_admin(as_role, engine):
    path = f"/virksomhed/{company_id(engine, cvr=ROBOT_CVR)}"

    assert CONTACT_PERSON in text(as_role("visitor").get(path))
    assert CONTACT_PERSON not in text(as_role("admin").get(path))


def test_a_note_shows_only_to_the_organisation_that_wrote_it(as_role, engine):
    path = f"/virksomhed/{company_id(engine, cvr=ROBOT_CVR)}"

    assert AARHUS_NOTE in text(as_role("visitor", AARHUS).get(path))
    assert AARHUS_NOTE not in text(as_role("visitor", RANDERS).get(path))


def test_a_planned_visit_registered_on_the_company_page_is_shown_there(as_role, engine):
    import datetime as dt

    client = as_role("visitor")
    path = f"/virksomhed/{company_id(engine, cvr=OLD_CVR)}"
    soon = (dt.date.today() + dt.timedelta(days=7)).isoformat()

    response = post_form(
        client, f"{path}/planlagte-besoeg", {"date": soon, "purpose": "Møde om lærlinge"}, path
    )

    planned = text(client.get(response.headers["Location"]))
    assert "Det planlagte besøg er registreret." in planned
    assert "Møde om lærlinge" in planned[planned.index('data-testid="planned"') :]


# --- Flag-indbakke ----------------------------------------------------------------------------


def test_the_flag_inbox_lists_open_flags_with_their_approaches(as_role):
    page = text(as_role("coordinator").get("/flag"))

    flag = page[page.index('data-testid="flag"') :]
    assert ROBOT_NAME in flag
    assert "Tilbud om voksenlærlinge" in flag and "Opfølgning" in flag
    assert flag.count("<time") == 2  # one per approach behind the flag


def test_resolving_a_flag_with_a_comment_closes_it(as_role, engine):
    client = as_role("coordinator")
    with session_scope(engine) as session:
        flag_id = session.execute(select(Flag.id)).scalar_one()

    response = post_form(
        client,
        f"/flag/{flag_id}",
        {"action": "resolve", "comment": "Aftalt fælles besøg fremover"},
        "/flag",
    )

    assert "er løst" in text(client.get(response.headers["Location"]))
    with session_scope(engine) as session:
        flag = session.get(Flag, flag_id)
        event = session.execute(select(FlagEvent).where(FlagEvent.action == "resolve")).scalar_one()
    assert flag.status == "resolved"
    assert (event.comment, event.actor, event.organisation) == (
        "Aftalt fælles besøg fremover",
        "Åse Bøgh",
        AARHUS,
    )


def test_acknowledging_a_flag_keeps_it_in_the_inbox_as_acknowledged(as_role, engine):
    client = as_role("coordinator")
    with session_scope(engine) as session:
        flag_id = session.execute(select(Flag.id)).scalar_one()

    post_form(client, f"/flag/{flag_id}", {"action": "acknowledge", "comment": "Set"}, "/flag")

    page = text(client.get("/flag?status=acknowledged"))
    assert ROBOT_NAME in page
    assert "Set" in page


def test_a_flag_action_without_a_comment_changes_nothing(as_role, engine):
    client = as_role("coordinator")
    with session_scope(engine) as session:
        flag_id = session.execute(select(Flag.id)).scalar_one()

    response = post_form(client, f"/flag/{flag_id}", {"action": "resolve", "comment": " "}, "/flag")

    assert "Skriv en kommentar" in text(client.get(response.headers["Location"]))
    with session_scope(engine) as session:
        assert session.get(Flag, flag_id).status == "open"


# --- Match-gennemgang -------------------------------------------------------------------------


def test_match_review_shows_a_proposal_side_by_side(as_role):
    page = text(as_role("coordinator").get("/match"))

    proposal = page[page.index('data-testid="proposal"') :]
    assert proposal.index(ROBOT_SLIP_NAME) < proposal.index(ROBOT_NAME)
    assert "Lighed 88,9" in proposal


def test_accepting_a_proposal_merges_the_two_companies(as_role, engine):
    client = as_role("coordinator")
    slip = company_id(engine, name=ROBOT_SLIP_NAME)
    with session_scope(engine) as session:
        proposal_id = session.execute(select(MatchProposal.id)).scalar_one()

    response = post_form(
        client, f"/match/forslag/{proposal_id}/accept", {"reason": "Samme adresse"}, "/match"
    )

    assert "Forslaget er accepteret" in text(client.get(response.headers["Location"]))
    with session_scope(engine) as session:
        assert session.get(Company, slip).merged_into_id == company_id(engine, cvr=ROBOT_CVR)
        assert session.get(MatchProposal, proposal_id).status == "accepted"


def test_the_page_of_a_merged_company_leads_to_the_company_it_was_merged_into(as_role, engine):
    client = as_role("coordinator")
    slip = company_id(engine, name=ROBOT_SLIP_NAME)
    with session_scope(engine) as session:
        proposal_id = session.execute(select(MatchProposal.id)).scalar_one()
    post_form(client, f"/match/forslag/{proposal_id}/accept", {"reason": "Samme"}, "/match")

    response = client.get(f"/virksomhed/{slip}")

    robot = company_id(engine, cvr=ROBOT_CVR)
    assert response.headers["Location"] == f"/virksomhed/{robot}?dage=180"


def test_rejecting_a_proposal_keeps_the_companies_apart(as_role, engine):
    client = as_role("coordinator")
    slip = company_id(engine, name=ROBOT_SLIP_NAME)
    with session_scope(engine) as session:
        proposal_id = session.execute(select(MatchProposal.id)).scalar_one()

    post_form(client, f"/match/forslag/{proposal_id}/reject", {"reason": "To firmaer"}, "/match")

    with session_scope(engine) as session:
        assert session.get(Company, slip).merged_into_id is None
        assert session.get(MatchProposal, proposal_id).status == "rejected"


def test_undoing_an_accepted_proposal_separates_the_companies_again(as_role, engine):
    client = as_role("coordinator")
    slip = company_id(engine, name=ROBOT_SLIP_NAME)
    with session_scope(engine) as session:
        proposal_id = session.execute(select(MatchProposal.id)).scalar_one()
    post_form(client, f"/match/forslag/{proposal_id}/accept", {"reason": "Samme"}, "/match")
    page = text(client.get("/match"))
    decision_id = re.search(r'action="/match/beslutning/(\d+)/fortryd"', page).group(1)

    response = post_form(
        client, f"/match/beslutning/{decision_id}/fortryd", {"reason": "Forkert"}, "/match"
    )

    assert f"Beslutning {decision_id} er fortrudt." in text(
        client.get(response.headers["Location"])
    )
    with session_scope(engine) as session:
        assert session.get(Company, slip).merged_into_id is None


def test_a_match_decision_without_a_reason_is_not_taken(as_role, engine):
    client = as_role("coordinator")
    with session_scope(engine) as session:
        proposal_id = session.execute(select(MatchProposal.id)).scalar_one()

    response = post_form(client, f"/match/forslag/{proposal_id}/accept", {"reason": " "}, "/match")

    assert "Skriv en begrundelse" in text(client.get(response.headers["Location"]))
    with session_scope(engine) as session:
        assert session.get(MatchProposal, proposal_id).status == "proposed"


def test_merging_two_companies_with_different_cvr_numbers_is_refused(as_role, engine):
    client = as_role("coordinator")
    first, second = (company_id(engine, cvr=cvr) for cvr in REPORT_CVRS[:2])

    response = post_form(
        client,
        "/match/saml",
        {"company_id": first, "into_company_id": second, "reason": "Samme ejer"},
        "/match",
    )

    assert "Beslutningen blev ikke gennemført" in text(client.get(response.headers["Location"]))
    with session_scope(engine) as session:
        assert session.get(Company, first).merged_into_id is None


# --- Rapporter --------------------------------------------------------------------------------


def report_query(today=None) -> str:
    import datetime as dt

    today = today or dt.date.today()
    start = today - dt.timedelta(days=364)
    return f"area=rar-oestjylland&from={start}&to={today}&group_by=municipality"


def test_the_reports_page_shows_the_needs_table_and_its_charts(as_role):
    page = text(as_role("council").get("/rapporter?" + report_query()))

    table = page[page.index('data-testid="needs-table"') :]
    svejsning = re.search(r"Svejsning.*?</tr>", table, re.S).group()
    assert re.findall(r"<strong>(\d+)</strong>", svejsning) == ["5"]
    for chart in ("chart-top-needs", "chart-trend"):
        assert f'data-testid="{chart}"' in page
    assert "<svg" in page and "<rect" in page


def test_the_coordination_report_shows_its_distribution_charts(as_role):
    page = text(as_role("council").get("/rapporter/koordinering?" + report_query()))

    for chart in (
        "chart-approaches-per-company",
        "chart-organisations-per-company",
        "chart-flags-by-type",
    ):
        assert f'data-testid="{chart}"' in page
    municipalities = page[page.index('data-testid="municipality-table"') :]
    assert "Aarhus" in municipalities and "Skanderborg" in municipalities


def test_the_reports_page_has_a_first_view_without_choices(as_role):
    response = as_role("council").get("/rapporter")

    assert response.status_code == 200
    assert "RAR Østjylland" in text(response)


def test_the_nightly_warm_up_caches_the_report_pages_first_views(
    as_role, region, engine, monkeypatch
):
    from coordination.reports import coordination_report
    from coordination.timeutil import local_today
    from coordination.web import queries

    client = as_role("council")
    live = [text(client.get(path)) for path in ("/rapporter", "/rapporter/koordinering")]
    with session_scope(engine) as session:
        session.execute(delete(ReportCache))
        queries.warm_report_pages(session, region.rules, local_today(region.schedule.timezone))

    def counting(*args, **kwargs):
        raise AssertionError("counted instead of read from the cache")

    monkeypatch.setattr(queries, "competence_needs_report", counting)
    monkeypatch.setattr(coordination_report, "_from_facts", counting)
    monkeypatch.setattr(coordination_report, "_checks", counting)
    cached = [text(client.get(path)) for path in ("/rapporter", "/rapporter/koordinering")]
    assert [strip_tokens(page) for page in cached] == [strip_tokens(page) for page in live]


def strip_tokens(page: str) -> str:
    """The page without what differs per response: CSP nonces, and CSRF tokens (they carry the
    second they were signed in, so two renderings a second apart differ)."""
    page = re.sub(r'nonce="[^"]*"', "", page)
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"', page)


def test_the_csv_download_carries_the_same_numbers_as_the_api(as_role, region_app, auth):
    query = report_query()

    download = as_role("council").get("/rapporter/kompetencebehov.csv?" + query)
    api = region_app.test_client().get(
        "/api/v1/reports/competence-needs?" + query, headers=auth("council")
    )

    rows = list(csv.DictReader(io.StringIO(download.data.decode("utf-8-sig")), delimiter=";"))
    by_need = {
        r["need_code"]: int(r["companies"])
        for r in rows
        if r["group"] == "total" and r["need_code"] != "total"
    }
    expected = {need["code"]: need["companies"] for need in api.get_json()["needs"]}
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert by_need == {"komp:svejsning": 5, "disco:7411": 5}
    assert {code: by_need[code] for code in expected} == expected


def test_a_report_asked_for_with_only_an_area_uses_the_default_grouping_and_a_year(as_role):
    response = as_role("council").get("/rapporter/koordinering?area=751")

    assert response.status_code == 200
    assert "Aarhus" in text(response)


def test_the_xlsx_download_is_a_workbook_with_the_report(as_role):
    from openpyxl import load_workbook

    response = as_role("council").get("/rapporter/kompetencebehov.xlsx?" + report_query())

    sheet = load_workbook(io.BytesIO(response.data)).worksheets[0]
    header = [cell.value for cell in sheet[1]]
    rows = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(2)]
    totals = {r["need_code"]: r["companies"] for r in rows if r["group"] == "total"}
    assert totals["komp:svejsning"] == 5


def test_a_report_period_that_ends_before_it_starts_is_refused_with_a_message(as_role):
    response = as_role("council").get(
        "/rapporter?area=rar-oestjylland&from=2026-06-01&to=2026-01-01&group_by=sector"
    )

    assert response.status_code == 400
    assert "Fra-datoen må ikke ligge efter til-datoen." in text(response)


def test_report_views_are_recorded_in_the_audit_log(as_role, engine):
    client = as_role("council", "RAR Østjylland")
    client.get("/rapporter?" + report_query())
    client.get("/rapporter/koordinering?" + report_query())

    with session_scope(engine) as session:
        entries = session.execute(
            select(AuditEntry).where(AuditEntry.action == "report.download")
        ).scalars()
        assert sorted((e.target, e.organisation) for e in entries) == [
            ("competence-needs", "RAR Østjylland"),
            ("coordination", "RAR Østjylland"),
        ]


# --- Synkroniseringsstatus --------------------------------------------------------------------


def test_sync_status_shows_the_last_run_of_each_source_with_its_counts(as_role):
    page = text(as_role("admin").get("/synkronisering"))

    sources = page[page.index('data-testid="sources"') :]
    first = re.search(r"jobcenter-1.*?</tr>", sources, re.S).group()
    assert re.findall(r'<td class="num">(\d+)</td>', first)[:2] == ["9", "9"]
    assert "Alle kilder er hentet" in page


def test_sync_status_lists_a_source_whose_last_run_failed_as_stale(as_role, engine):
    with session_scope(engine) as session:
        source = session.execute(select(Source).where(Source.name == "jobcenter-2")).scalar_one()
        source.last_status = "failed"

    page = text(as_role("admin").get("/synkronisering"))

    stale = page[page.index('data-testid="stale-sources"') :]
    assert "jobcenter-2" in stale and "Seneste kørsel fejlede" in stale


def test_an_admin_starts_a_sync_run_from_the_status_page(as_role, region_app, engine):
    client = as_role("admin")

    response = post_form(client, "/synkronisering", {}, "/synkronisering")

    for background in region_app.extensions["coordination"]["background_syncs"]:
        background.join(timeout=30)
    page = text(client.get(response.headers["Location"]))
    assert re.search(r"Synkronisering \d+ er startet\.", page)
    with session_scope(engine) as session:
        runs = session.execute(select(SyncRun.trigger).order_by(SyncRun.id)).scalars().all()
    assert runs == ["cli", "web"]


# --- charts -----------------------------------------------------------------------------------


def test_a_bar_chart_scales_bars_to_the_largest_figure():
    chart = bar_chart("Behov", [("Svejsning", 10), ("Elektriker", 5)], width=500, label_width=100)

    widths = [bar.width for bar in chart.bars]
    assert widths[0] == 2 * widths[1]
    assert widths[0] == 500 - 100 - 60


def test_a_suppressed_figure_gets_no_bar():
    chart = bar_chart("Behov", [("Svejsning", 4), ("Sjælden", None)])

    assert chart.bars[1].suppressed and chart.bars[1].width == 0


def test_a_line_chart_is_broken_where_a_figure_is_suppressed():
    chart = line_chart("Trend", [("jan", 3), ("feb", 4), ("mar", None), ("apr", 5)])

    assert len(chart.segments) == 2
    assert chart.segments[0].count(",") == 2 and chart.segments[1].count(",") == 1


@pytest.mark.parametrize(
    ("value", "top"), [(0, 4), (3, 4), (7, 8), (12, 20), (180, 200), (450, 500), (4001, 5000)]
)
def test_the_axis_top_is_a_round_number_with_whole_quarters(value, top):
    assert nice_ceiling(value) == top


# --- the English catalogue --------------------------------------------------------------------

TRANSLATIONS = Path(__file__).resolve().parents[2] / "coordination" / "translations"


def english_catalogue():
    from babel.messages.pofile import read_po

    with (TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po)


def test_every_text_of_the_pages_has_an_english_translation():
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    root = TRANSLATIONS.parents[1]
    with (root / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None}
    found = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(
            root, method_map, options_map, keywords=keywords
        )
    }
    catalogue = english_catalogue()
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0])
        for m in catalogue
        if m.id and all(m.string if isinstance(m.string, tuple) else [m.string])
    }
    assert found - translated == set()


def test_the_compiled_english_catalogue_matches_its_source():
    from babel.messages.mofile import read_mo

    with (TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.mo").open("rb") as mo:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(mo) if m.id}
    source = {_key(m.id): _key(m.string) for m in english_catalogue() if m.id}
    assert compiled == source


def _key(value):
    return value if isinstance(value, str) else tuple(value)
