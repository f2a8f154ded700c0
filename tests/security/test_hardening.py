"""Hardening: size limits, security headers, no stack traces, throttled authentication
failures, and SQL injection attempts that find nothing to inject into."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import func, inspect, select
from sqlmodel import Session

from coordination import create_app
from coordination.api import flags as flags_api
from coordination.api.auth import reset_failures
from coordination.models import AuditEntry, Company
from tests.security import seed_world

ERROR_KEYS = {"code", "status", "message", "errors"}
INJECTIONS = [
    "'; DROP TABLE company; --",
    "' OR '1'='1",
    '" OR 1=1; --',
    "1; DELETE FROM sourcerecord",
    "%' UNION SELECT token_hash FROM apitoken --",
]


@pytest.fixture(autouse=True)
def _forget_authentication_failures():
    reset_failures()
    yield
    reset_failures()


@pytest.fixture
def seeded(engine, db_url, tmp_path):
    return seed_world(engine, db_url, tmp_path)


@pytest.fixture
def admin(auth):
    return auth("admin")


def assert_error_body(answer, status: int) -> None:
    assert answer.status_code == status
    assert answer.mimetype == "application/json"
    assert set(answer.json) == ERROR_KEYS
    assert answer.json["code"] == status


# --- request size ---------------------------------------------------------------------------------


def test_a_request_body_over_the_size_limit_is_a_413_json_error(app, client, admin):
    comment = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)

    answer = client.post("/api/v1/flags/1/acknowledge", json={"comment": comment}, headers=admin)

    assert_error_body(answer, 413)


def test_a_body_just_under_the_size_limit_is_read(client, admin):
    answer = client.post(
        "/api/v1/flags/1/acknowledge", json={"comment": "x" * 900_000}, headers=admin
    )

    assert_error_body(answer, 422)  # read and refused for its length, not its size
    assert "comment" in answer.json["errors"]["json"]


def test_a_body_that_is_not_json_is_a_400_json_error(client, admin):
    answer = client.post(
        "/api/v1/flags/1/acknowledge",
        data=b'{"comment": "Talt med',
        headers={**admin, "Content-Type": "application/json"},
    )

    assert_error_body(answer, 400)


# --- security headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/log-ind", "/healthz", "/api/v1/companies", "/api/v1/nowhere"])
def test_pages_and_answers_carry_the_security_headers(client, path):
    headers = client.get(path).headers

    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_pages_with_personal_data_are_not_cached(client):
    assert client.get("/log-ind").headers["Cache-Control"] == "no-store"


# --- no stack trace to clients --------------------------------------------------------------------


def _failing_service(*args, **kwargs):
    raise RuntimeError('database said: relation "flag" is broken at /srv/coordination/secret.py')


def test_an_unexpected_error_is_a_500_with_the_spec_error_body_and_nothing_else(
    client, auth, monkeypatch
):
    monkeypatch.setattr(flags_api, "list_flags", _failing_service)

    answer = client.get("/api/v1/flags", headers=auth("coordinator"))

    assert_error_body(answer, 500)
    assert answer.json["errors"] == {}
    body = answer.get_data(as_text=True)
    for leak in ("Traceback", "RuntimeError", "secret.py", "relation", 'File "'):
        assert leak not in body


def test_the_answer_to_an_unexpected_error_carries_the_security_headers(client, auth, monkeypatch):
    monkeypatch.setattr(flags_api, "list_flags", _failing_service)

    answer = client.get("/api/v1/flags", headers=auth("coordinator"))

    assert answer.status_code == 500
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


# --- authentication failures are throttled --------------------------------------------------------


@pytest.fixture
def strict_client(service_config):
    app = create_app({"TESTING": True, "COORDINATION": service_config, "AUTH_MAX_FAILURES": 3})
    yield app.test_client()
    app.extensions["coordination"]["engine"].dispose()


def test_authentication_failures_turn_into_429_after_the_configured_number(strict_client):
    wrong = {"Authorization": "Bearer cns_guessed-token"}

    statuses = [strict_client.get("/api/v1/companies", headers=wrong).status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]
    assert_error_body(strict_client.get("/api/v1/companies", headers=wrong), 429)


def test_once_throttled_even_a_valid_token_waits(strict_client, make_token):
    for _ in range(3):
        strict_client.get("/api/v1/companies")

    answer = strict_client.get(
        "/api/v1/companies", headers={"Authorization": f"Bearer {make_token('visitor')}"}
    )

    assert_error_body(answer, 429)


def test_successful_calls_do_not_count_as_failures(strict_client, make_token):
    valid = {"Authorization": f"Bearer {make_token('visitor')}"}

    statuses = [strict_client.get("/api/v1/companies", headers=valid).status_code for _ in range(5)]

    assert statuses == [200] * 5


# --- SQL injection --------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_sql_in_a_search_is_only_a_strange_company_name(client, engine, seeded, auth, attempt):
    answer = client.get("/api/v1/companies", query_string={"q": attempt}, headers=auth("visitor"))

    assert answer.status_code == 200
    assert "company" in inspect(engine).get_table_names()
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Company)).scalar_one() == 4


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_sql_in_filters_matches_nothing(client, seeded, auth, attempt):
    coordinator, admin = auth("coordinator"), auth("admin")

    approaches = client.get(
        "/api/v1/approaches", query_string={"organisation": attempt}, headers=coordinator
    )
    audit = client.get("/api/v1/audit", query_string={"action": attempt[:50]}, headers=admin)

    assert (approaches.status_code, approaches.json["total"]) == (200, 0)
    assert (audit.status_code, audit.json["total"]) == (200, 0)


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_sql_in_a_path_is_a_malformed_cvr_number(client, seeded, auth, attempt):
    answer = client.get(f"/api/v1/companies/{attempt}", headers=auth("visitor"))

    assert_error_body(answer, 422)


def test_an_injection_attempt_is_audited_as_the_text_it_was(client, engine, seeded, auth):
    client.get("/api/v1/companies", query_string={"q": INJECTIONS[0]}, headers=auth("visitor"))

    with Session(engine) as session:
        details = session.execute(
            select(AuditEntry.details).where(AuditEntry.action == "companies.search")
        ).scalar_one()
    assert details["q"] == INJECTIONS[0]


# --- malformed input that once slipped through ----------------------------------------------------


def test_errors_on_list_items_and_on_the_list_itself_make_one_json_error_body(client, admin):
    # Item errors are keyed by index, the list's own error by name: both must become JSON keys.
    answer = client.post("/api/v1/sync-runs", json={"sources": [1, "ukendt"]}, headers=admin)

    assert_error_body(answer, 422)
    assert set(answer.json["errors"]["json"]["sources"]) == {"0", "_schema"}


@pytest.mark.parametrize("cvr", ["２５３１３７６３", "\t25313763", "25313763\n", "DK:25313763"])
def test_a_cvr_number_outside_the_documented_forms_is_refused(client, auth, cvr):
    visitor = auth("visitor")

    in_path = client.get(f"/api/v1/companies/{quote(cvr)}", headers=visitor)
    in_query = client.get("/api/v1/companies", query_string={"cvr": cvr}, headers=visitor)

    assert_error_body(in_path, 422)
    assert_error_body(in_query, 422)


@pytest.mark.parametrize("cvr", ["25313763", "DK25313763", "DK-25 31 37 63", "2531.3763"])
def test_a_cvr_number_in_a_documented_form_is_looked_up(client, auth, cvr):
    answer = client.get(f"/api/v1/companies/{cvr}", headers=auth("visitor"))

    assert_error_body(answer, 404)  # well-formed, and no such company in an empty database
    assert "25313763" in answer.json["message"]
