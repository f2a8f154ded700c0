"""Schemathesis over every operation of the OpenAPI document, in-process, with an admin token.

Each operation gets a freshly seeded database (:func:`tests.security.seed_world`), so path
parameters sometimes name real rows, and is fuzzed with valid and malformed requests. A run
fails on any 5xx, any answer that does not match its documented schema, status code or content
type, and any malformed request the service accepts. Deterministic (derandomised) and bounded.

Every operation of the document is tested, and ``test_role_matrix`` proves that the document
lists every endpoint the application serves. The document is loaded when the module is
collected (``schemathesis.pytest.from_fixture`` does not work with pytest 9); loading it touches
no database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from coordination import create_app
from coordination.api.auth import reset_failures
from coordination.config import Config, Rules, Schedule
from coordination.db import make_engine, session_scope
from coordination.tokens import create_token
from tests.security import AARHUS, fresh_database_url, seed_world

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    negative_data_rejection,
]


@dataclasses.dataclass(frozen=True)
class SeededApi:
    app: Any
    admin_token: str


@pytest.fixture
def seeded_api(_migrated_url, tmp_path) -> Iterator[SeededApi]:
    """The application on a freshly seeded database (emptied by DELETE: on PostgreSQL much
    faster than the TRUNCATE of the shared ``db_url`` fixture, which matters once per operation),
    and an admin token."""
    url = fresh_database_url(_migrated_url, tmp_path)
    engine = make_engine(url)
    seeded = seed_world(engine, url, tmp_path)
    with session_scope(engine) as session:
        _, token = create_token(session, AARHUS, "admin")
    engine.dispose()
    app = create_app({"TESTING": True, "COORDINATION": seeded.config, "AUTH_MAX_FAILURES": 10**6})
    reset_failures()
    yield SeededApi(app, token)
    _finish_background_syncs(app)
    app.extensions["coordination"]["engine"].dispose()


def _finish_background_syncs(app) -> None:
    for background in app.extensions["coordination"].get("background_syncs", []):
        background.join(30)


def _load_schema() -> schemathesis.BaseSchema:
    """The OpenAPI document, from an application on an unused in-memory database."""
    config = Config(database_url="sqlite://", rules=Rules(), schedule=Schedule(), sources=())
    app = create_app({"TESTING": True, "COORDINATION": config})
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    app.extensions["coordination"]["engine"].dispose()
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
        # The test sends the token itself; schemathesis would otherwise also "remove" it as a
        # negative case and, the token being sent anyway, blame the answer for accepting it.
        with_security_parameters=False,
    )
    return loaded


schema = _load_schema()


@schema.parametrize()
@settings(
    deadline=None,
    # One seeded database per operation, shared by its examples: later examples see what
    # earlier ones changed (an acknowledged flag answers 409), which is what a client meets too.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_the_api_answers_every_request_as_its_openapi_document_says(case, seeded_api):
    case.call_and_validate(
        app=seeded_api.app,
        headers={"Authorization": f"Bearer {seeded_api.admin_token}"},
        checks=CHECKS,
    )
    _finish_background_syncs(seeded_api.app)  # a started run must end before the next starts
