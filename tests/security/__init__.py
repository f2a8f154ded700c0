"""Security tests: who may call what, what the API accepts, and what never leaks.

:func:`seed_world` fills a migrated database with a small, real picture (synced through the real
csv-drop connector) so that every path parameter of the API can name an existing row: companies
with and without a CVR number, approaches of two jobcentres, an open flag, a match proposal, an
identity decision, a planned visit and a sync run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlmodel import Session

from connectors.base import load_registry
from coordination.companies import add_planned_visit
from coordination.config import Config
from coordination.db import session_scope
from coordination.identity_review import Reviewer, merge_companies
from coordination.models import Flag, MatchProposal, SourceRecord, SyncRun
from coordination.sync import SyncEngine
from tests.conftest import POSTGRES_URL
from tests.helpers import csv_config, csv_row, write_csv
from tests.integration.conftest import empty_database

AARHUS = "Jobcenter Aarhus"
RANDERS = "Jobcenter Randers"
CVR = "10150817"  # Bageri Hansen A/S: flagged (three uncoordinated approaches)
PLANNED_ON = dt.date(2030, 1, 15)


@dataclasses.dataclass(frozen=True)
class Seeded:
    """Ids of the rows :func:`seed_world` made, for path parameters."""

    config: Config
    cvr: str
    company_id: int
    unresolved_company_id: int
    flag_id: int
    proposal_id: int
    decision_id: int
    run_id: int
    visit_id: int
    source_name: str
    source_id: str  # a source record id of ``source_name``


def fresh_database_url(template_url: str, folder: Path) -> str:
    """A migrated, empty database: the PostgreSQL test database emptied, or a copy of the
    migrated SQLite template (``_migrated_url`` of ``tests/conftest.py``) in ``folder``."""
    if POSTGRES_URL:
        empty_database(POSTGRES_URL)
        return POSTGRES_URL
    target = folder / "coordination.db"
    shutil.copyfile(make_url(template_url).database, target)
    return f"sqlite:///{target}"


def _row(kontakt_id: str, name: str, dato: str, **values: str) -> dict[str, str]:
    place = {"Postnr": "8000", "By": "Aarhus C"}
    return csv_row(KontaktID=kontakt_id, Virksomhed=name, Dato=dato, **(place | values))


def seed_world(engine: Engine, db_url: str, folder: Path) -> Seeded:
    """Sync two jobcentres' exports into the (empty, migrated) database, then plan a visit and
    merge two companies; return the ids."""
    folders = {AARHUS: folder / "aarhus", RANDERS: folder / "randers"}
    write_csv(
        folders[AARHUS],
        "virksomhedskontakter_1.csv",
        [
            _row(
                "A-1",
                "Bageri Hansen A/S",
                "01-09-2026",
                CVR=CVR,
                Kontaktperson="Åse Kjærgaard",
                KontaktpersonEmail="aase@bageri-hansen.dk",
                KontaktpersonTelefon="86 12 34 56",
                Rekrutteringsbehov="7212|Svejser",
                Kompetencebehov="Bagning på stenovn",
                Note="Ønsker opfølgning i oktober.",
            ),
            _row("A-2", "Bageri Hansen A/S", "20-09-2026", CVR=CVR),
            _row("A-3", "Ålborg Smed", "03-09-2026"),
        ],
    )
    write_csv(
        folders[RANDERS],
        "virksomhedskontakter_1.csv",
        [
            _row("R-1", "Bageri Hansen A/S", "12-09-2026", CVR=CVR),
            _row("R-2", "Bageriet Hansen", "14-09-2026"),
            _row("R-3", "Randers Rebslåeri", "05-09-2026", Postnr="8900", By="Randers C"),
        ],
    )
    config = csv_config(db_url, folders)
    result = SyncEngine(engine, config, load_registry()).run()
    assert result.ok, result.outcomes
    with session_scope(engine) as session:
        company_id = _company_of(session, "A-1")
        visit = add_planned_visit(
            session, company_id, AARHUS, PLANNED_ON, "Opfølgning", "seed", dt.date(2026, 11, 1)
        )
        merged = merge_companies(
            session,
            _company_of(session, "R-3"),
            _company_of(session, "A-3"),
            Reviewer("seed", AARHUS),
            "samme smedie",
            config.rules,
        )
        seeded = Seeded(
            config=config,
            cvr=CVR,
            company_id=company_id,
            unresolved_company_id=_company_of(session, "A-3"),
            flag_id=session.execute(select(Flag.id)).scalars().first(),
            proposal_id=session.execute(select(MatchProposal.id)).scalars().first(),
            decision_id=merged.id,
            run_id=result.run_id,
            visit_id=visit["id"],
            source_name=config.sources[1].name,
            source_id="R-2",
        )
    with Session(engine) as session:
        assert session.get(SyncRun, seeded.run_id) is not None
    assert None not in (seeded.flag_id, seeded.proposal_id), "the seed must flag and propose"
    return seeded


def _company_of(session: Session, external_id: str) -> int:
    query = select(SourceRecord.company_id).where(SourceRecord.external_id == external_id)
    return session.execute(query).scalar_one()
