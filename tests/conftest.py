"""Shared fixtures: a real database per test (SQLite by default; PostgreSQL when
``COORDINATION_TEST_DATABASE_URL`` is set, as ``.ci/run`` does on its second pass)."""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from coordination.db import make_engine, upgrade

POSTGRES_URL = os.environ.get("COORDINATION_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def _migrated_url(tmp_path_factory):
    if POSTGRES_URL:
        upgrade(POSTGRES_URL)
        return POSTGRES_URL
    template = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite:///{template}"
    upgrade(url)
    return url


@pytest.fixture
def db_url(_migrated_url, tmp_path):
    """A migrated, empty database for one test."""
    if POSTGRES_URL:
        _truncate_all(POSTGRES_URL)
        return POSTGRES_URL
    target = tmp_path / "coordination.db"
    shutil.copyfile(make_url(_migrated_url).database, target)
    return f"sqlite:///{target}"


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _truncate_all(url: str) -> None:
    import coordination.models  # noqa: F401

    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def service_config(db_url):
    """A configuration with no sources on the test database (tests add what they need)."""
    from coordination.config import Config, Rules, Schedule

    return Config(database_url=db_url, rules=Rules(), schedule=Schedule(), sources=())


@pytest.fixture
def app(service_config, db_url):
    from coordination import create_app

    app = create_app({"TESTING": True, "COORDINATION": service_config, "AUTH_MAX_FAILURES": 10_000})
    yield app
    app.extensions["coordination"]["engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_token(engine):
    """``make_token(role, organisation="Jobcenter Aarhus", **kw) -> plain token``."""
    from coordination.db import session_scope
    from coordination.tokens import create_token

    def make(role: str, organisation: str = "Jobcenter Aarhus", **kwargs) -> str:
        with session_scope(engine) as session:
            _, plain = create_token(session, organisation, role, **kwargs)
        return plain

    return make


@pytest.fixture
def auth(make_token):
    """``auth(role, organisation=...) -> headers`` for the test client."""

    def headers(role: str, organisation: str = "Jobcenter Aarhus") -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(role, organisation)}"}

    return headers
