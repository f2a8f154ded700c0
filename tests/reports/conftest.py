"""Fixtures shared by the report tests: a session and the two sources most tests record with."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.reports import builders as b


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def jobcenter(session):
    return b.source(session, b.organisation(session, "Jobcenter Herning", "jobcenter", "657"))


@pytest.fixture
def veu(session):
    return b.source(session, b.organisation(session, "VEU-center Vest", "veu"))
