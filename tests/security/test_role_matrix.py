"""Every API endpoint × every role × every kind of bad token, with the status the spec wants.

- no token, a malformed header, an unknown, expired or revoked token: 401, on every endpoint;
- a valid token whose role the endpoint does not grant: 403;
- a role the endpoint grants: never 401 or 403 (nor a 500): the call is served, or refused for
  what it asks (404, 409, 422).

The roles are service.md's: visitor+ (visitor, coordinator, admin), coordinator+ (coordinator,
admin), council+ (council, coordinator, admin), admin. :data:`ENDPOINTS` must name every
endpoint the application serves under /api/v1; a new endpoint fails
:func:`test_the_matrix_covers_every_api_endpoint` until its role is written down here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from coordination import create_app
from coordination.api.auth import reset_failures
from coordination.db import make_engine, session_scope
from coordination.tokens import ROLE_GRANTS, ROLES, create_token, revoke
from tests.security import AARHUS, Seeded, fresh_database_url, seed_world

# The "who" of service.md's table, and which roles each one lets in.
VISITOR, COORDINATOR, COUNCIL, ADMIN = "visitor+", "coordinator+", "council+", "admin"
GRANTS = {
    VISITOR: {"visitor", "coordinator", "admin"},
    COORDINATOR: {"coordinator", "admin"},
    COUNCIL: {"council", "coordinator", "admin"},
    ADMIN: {"admin"},
}
REPORT_QUERY = "?area=region-midtjylland&from=2026-01-01&to=2026-12-31"
REASON = {"reason": "Gennemgået af koordinatoren"}
IDENTITY = "/api/v1/identity"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    role: str  # a key of GRANTS
    query: str = ""
    body: dict[str, Any] | None = None


def _company_endpoints(prefix: str) -> dict[tuple[str, str], Endpoint]:
    return {
        ("GET", prefix): Endpoint(VISITOR),
        ("GET", f"{prefix}/prior-contact"): Endpoint(VISITOR, "?days=30"),
        ("GET", f"{prefix}/planned"): Endpoint(VISITOR),
        ("POST", f"{prefix}/planned"): Endpoint(VISITOR, body={"date": "2030-02-01"}),
        ("DELETE", f"{prefix}/planned/{{visit_id}}"): Endpoint(VISITOR),
    }


# (method, OpenAPI path) -> who may call it and a request that is valid for an allowed role.
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/v1/companies"): Endpoint(VISITOR, "?q=Bageri"),
    **_company_endpoints("/api/v1/companies/{cvr}"),
    **_company_endpoints("/api/v1/companies/id/{company_id}"),
    ("GET", "/api/v1/approaches"): Endpoint(COORDINATOR),
    ("GET", "/api/v1/flags"): Endpoint(COORDINATOR, "?status=open"),
    ("POST", "/api/v1/flags/{flag_id}/acknowledge"): Endpoint(COORDINATOR, body={"comment": "Set"}),
    ("POST", "/api/v1/flags/{flag_id}/resolve"): Endpoint(COORDINATOR, body={"comment": "Løst"}),
    ("GET", "/api/v1/reports/competence-needs"): Endpoint(COUNCIL, REPORT_QUERY),
    ("GET", "/api/v1/reports/coordination"): Endpoint(COUNCIL, REPORT_QUERY),
    ("GET", "/api/v1/needs/unclassified"): Endpoint(COORDINATOR),
    ("POST", "/api/v1/needs/mappings"): Endpoint(
        COORDINATOR, body={"label": "Bagning på stenovn", "taxonomy_code": "disco:7512"}
    ),
    ("GET", f"{IDENTITY}/proposals"): Endpoint(COORDINATOR),
    ("POST", f"{IDENTITY}/proposals/{{proposal_id}}/accept"): Endpoint(COORDINATOR, body=REASON),
    ("POST", f"{IDENTITY}/proposals/{{proposal_id}}/reject"): Endpoint(COORDINATOR, body=REASON),
    ("POST", f"{IDENTITY}/merges"): Endpoint(COORDINATOR),  # body: see _body
    ("POST", f"{IDENTITY}/splits"): Endpoint(COORDINATOR),  # body: see _body
    ("GET", f"{IDENTITY}/decisions"): Endpoint(COORDINATOR),
    ("POST", f"{IDENTITY}/decisions/{{decision_id}}/undo"): Endpoint(COORDINATOR, body=REASON),
    ("GET", "/api/v1/sync-runs"): Endpoint(ADMIN),
    ("POST", "/api/v1/sync-runs"): Endpoint(ADMIN, body={}),
    ("GET", "/api/v1/sync-runs/{run_id}"): Endpoint(ADMIN),
    ("GET", "/api/v1/sync-runs/sources"): Endpoint(ADMIN),
    ("GET", "/api/v1/audit"): Endpoint(ADMIN),
    ("POST", "/api/v1/admin/erasures"): Endpoint(ADMIN, body={"email": "aase@bageri-hansen.dk"}),
}

# Ways to fail authentication: name -> the Authorization header (None: no header at all).
BAD_CREDENTIALS = {
    "no token": None,
    "basic scheme": "Basic YWRtaW46aGVtbWVsaWc=",
    "bearer without token": "Bearer ",
    "bare token": "cns_not-even-a-scheme",
    "unknown token": "Bearer cns_ThisTokenWasNeverIssuedByTheService0000000",
    "expired token": "expired",  # replaced by a real admin token that has expired
    "revoked token": "revoked",  # replaced by a real admin token that was revoked
}
ALLOWED_ANSWERS = {200, 201, 202, 204, 404, 409, 422}


@dataclasses.dataclass
class World:
    app: Any
    seeded: Seeded
    tokens: dict[str, str]  # role, "expired" or "revoked" -> plain token


@pytest.fixture(scope="module")
def world(_migrated_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("role-matrix")
    url = fresh_database_url(_migrated_url, folder)
    engine = make_engine(url)
    seeded = seed_world(engine, url, folder)
    tokens = _tokens(engine)
    engine.dispose()
    app = create_app({"TESTING": True, "COORDINATION": seeded.config, "AUTH_MAX_FAILURES": 10**6})
    reset_failures()
    yield World(app, seeded, tokens)
    reset_failures()
    _finish_background_syncs(app)
    app.extensions["coordination"]["engine"].dispose()


def _tokens(engine) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    with session_scope(engine) as session:
        tokens = {role: create_token(session, AARHUS, role)[1] for role in ROLES}
        _, tokens["expired"] = create_token(
            session, AARHUS, "admin", expires_at=now - dt.timedelta(minutes=1)
        )
        revoked, tokens["revoked"] = create_token(session, AARHUS, "admin")
        revoke(session, revoked.id)
    return tokens


def _finish_background_syncs(app) -> None:
    for background in app.extensions["coordination"].get("background_syncs", []):
        background.join(30)


def _url(world: World, path: str, endpoint: Endpoint) -> str:
    s = world.seeded
    parameters = {
        "cvr": s.cvr,
        "company_id": s.company_id,
        "visit_id": s.visit_id,
        "flag_id": s.flag_id,
        "proposal_id": s.proposal_id,
        "decision_id": s.decision_id,
        "run_id": s.run_id,
    }
    return path.format(**parameters) + endpoint.query


def _body(world: World, path: str, endpoint: Endpoint) -> dict[str, Any] | None:
    s = world.seeded
    if path.endswith("/merges"):
        return {"company_id": s.unresolved_company_id, "into_company_id": s.company_id, **REASON}
    if path.endswith("/splits"):
        return {"source": s.source_name, "source_id": s.source_id, **REASON}
    return endpoint.body


def call(world: World, method: str, path: str, authorization: str | None):
    endpoint = ENDPOINTS[(method, path)]
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = world.app.test_client().open(
        _url(world, path, endpoint),
        method=method,
        headers=headers,
        json=_body(world, path, endpoint),
    )
    _finish_background_syncs(world.app)  # a started sync run must not overlap the next call
    return answer


def _served_api_endpoints(app) -> set[tuple[str, str]]:
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint.startswith("api-docs."):
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
        served |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return served


def _documented_endpoints(app) -> set[tuple[str, str]]:
    spec = app.test_client().get("/api/v1/openapi.json").json
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method != "parameters"
    }


# --- the table is complete ----------------------------------------------------------------------


def test_the_matrix_covers_every_api_endpoint(world):
    assert _served_api_endpoints(world.app) == set(ENDPOINTS)


def test_the_openapi_document_lists_exactly_the_served_endpoints(world):
    assert _documented_endpoints(world.app) == set(ENDPOINTS)


def test_every_operation_documents_its_401_and_403_answers(world):
    spec = world.app.test_client().get("/api/v1/openapi.json").json
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method != "parameters" and not {"401", "403"} <= set(operation["responses"])
    ]
    assert undocumented == []


def test_the_tokens_module_grants_what_the_spec_grants():
    spec = {"visitor": VISITOR, "coordinator": COORDINATOR, "council": COUNCIL, "admin": ADMIN}
    for role, who in spec.items():
        assert ROLE_GRANTS[role] == GRANTS[who], role


# --- the matrix ---------------------------------------------------------------------------------

KEYS = sorted(ENDPOINTS, key=lambda key: (key[1], key[0]))
IDS = [f"{method} {path}" for method, path in KEYS]


@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
@pytest.mark.parametrize(("method", "path"), KEYS, ids=IDS)
def test_a_call_without_a_valid_token_is_401(world, method, path, credentials):
    header = BAD_CREDENTIALS[credentials]
    if credentials in ("expired token", "revoked token"):
        header = f"Bearer {world.tokens[header]}"

    answer = call(world, method, path, header)

    assert answer.status_code == 401
    assert answer.json["code"] == 401
    assert set(answer.json) == {"code", "status", "message", "errors"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), KEYS, ids=IDS)
def test_each_role_is_let_in_exactly_where_the_spec_grants_it(world, method, path, role):
    answer = call(world, method, path, f"Bearer {world.tokens[role]}")

    if role in GRANTS[ENDPOINTS[(method, path)].role]:
        assert answer.status_code in ALLOWED_ANSWERS, answer.get_data(as_text=True)
    else:
        assert answer.status_code == 403, answer.get_data(as_text=True)
        assert answer.json["code"] == 403


def _forbidden_role(method: str, path: str) -> str:
    return next(role for role in ROLES if role not in GRANTS[ENDPOINTS[(method, path)].role])


@pytest.mark.parametrize(("method", "path"), KEYS, ids=IDS)
def test_a_wrong_role_is_refused_before_its_malformed_input_is_read(world, method, path):
    token = world.tokens[_forbidden_role(method, path)]
    url = _url(world, path, ENDPOINTS[(method, path)]).partition("?")[0]

    answer = world.app.test_client().open(
        f"{url}?page=0&page_size=-1&days=x&area=&from=31-12-2026",
        method=method,
        headers={"Authorization": f"Bearer {token}"},
        json=["not", "an", "object"],
    )

    assert answer.status_code == 403
