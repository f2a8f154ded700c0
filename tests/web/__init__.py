"""A hand-made region for the page tests and the browser tests, delivered as two jobcentres' CSV
files and stored by a real sync (connector, identity, approaches, needs, coordination rules).

What it holds, with dates counted back from today:

- Østjysk Robotteknik ApS (CVR 12345607, Ry): Aarhus visits 60 days ago, Randers phones 40 days
  ago, Aarhus meets 20 days ago (the last two are uncoordinated: a flag), and both jobcentres
  visit together 10 days ago (one joint approach). Needs: welding (upskilling) and electrician
  (recruitment). Aarhus noted a contact person and a note (only Aarhus may read the note).
- Østjysk Robotek ApS (no CVR, Ry): a slip of the name above; an uncertain fuzzy match, so a
  match proposal waits for review.
- Four companies in Aarhus (CVR 12345615, 12345623, 12345631, 12345658) that each expressed the
  same two needs 30 days ago: enough companies for council reports to publish the figures.
- Gammel Smedie ApS (CVR 12345666, Aarhus): contacted two years ago only.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from connectors.base import load_registry
from coordination.config import Config
from coordination.needs.classifier import TaxonomyClassifier
from coordination.sync import SyncEngine
from tests.helpers import csv_config, csv_row, write_csv

AARHUS = "Jobcenter Aarhus"
RANDERS = "Jobcenter Randers"
ROBOT_CVR = "12345607"
ROBOT_NAME = "Østjysk Robotteknik ApS"
ROBOT_SLIP_NAME = "Østjysk Robotek ApS"
REPORT_CVRS = ("12345615", "12345623", "12345631", "12345658")
OLD_CVR = "12345666"
OLD_NAME = "Gammel Smedie ApS"
NEEDS = {"Kompetencebehov": "Svejsning", "Rekrutteringsbehov": "Elektriker"}
CONTACT_PERSON = "Mette Lund"
AARHUS_NOTE = "Ring igen efter sommerferien"


def day(today: dt.date, days_ago: int) -> str:
    return (today - dt.timedelta(days=days_ago)).strftime("%d-%m-%Y")


def aarhus_rows(today: dt.date) -> list[dict[str, str]]:
    robot = {"CVR": ROBOT_CVR, "Virksomhed": ROBOT_NAME, "Postnr": "8680", "By": "Ry"}
    rows = [
        csv_row(
            KontaktID="A1",
            Dato=day(today, 60),
            Formål="Rekruttering af svejsere",
            Kontaktperson=CONTACT_PERSON,
            KontaktpersonEmail="ml@robotteknik.dk",
            Note=AARHUS_NOTE,
            **robot,
            **NEEDS,
        ),
        csv_row(
            KontaktID="A2", Dato=day(today, 20), Kontaktform="Møde", Formål="Opfølgning", **robot
        ),
        csv_row(
            KontaktID="A3",
            Dato=day(today, 10),
            Formål="Fælles besøg om opkvalificering",
            KoordineretMed=RANDERS,
            **robot,
        ),
        csv_row(
            KontaktID="A4",
            Dato=day(today, 5),
            Virksomhed=ROBOT_SLIP_NAME,
            Postnr="8680",
            By="Ry",
            Formål="Kort opringning",
            Kontaktform="Telefon",
        ),
        csv_row(
            KontaktID="A5",
            Dato=day(today, 730),
            CVR=OLD_CVR,
            Virksomhed=OLD_NAME,
            Postnr="8000",
            By="Aarhus C",
        ),
    ]
    for number, cvr in enumerate(REPORT_CVRS, start=1):
        rows.append(
            csv_row(
                KontaktID=f"R{number}",
                Dato=day(today, 30),
                CVR=cvr,
                Virksomhed=f"Aarhus Metal {number} A/S",
                Postnr="8000",
                By="Aarhus C",
                Formål="Behovsafdækning",
                **NEEDS,
            )
        )
    return rows


def randers_rows(today: dt.date) -> list[dict[str, str]]:
    robot = {"CVR": ROBOT_CVR, "Virksomhed": ROBOT_NAME, "Postnr": "8680", "By": "Ry"}
    consultant = {"Medarbejder": "Birgitte Ærø", "MedarbejderEmail": "bae@randers.dk"}
    return [
        csv_row(
            KontaktID="B1",
            Dato=day(today, 40),
            Kontaktform="Telefon",
            Formål="Tilbud om voksenlærlinge",
            **robot,
            **consultant,
        ),
        csv_row(
            KontaktID="B2",
            Dato=day(today, 10),
            Formål="Fælles besøg om opkvalificering",
            KoordineretMed=AARHUS,
            **robot,
            **consultant,
        ),
    ]


def seed_region(engine, db_url: str, folder: Path, today: dt.date | None = None) -> Config:
    """Write the deliveries under ``folder``, sync them into the database, return the config."""
    today = today or dt.date.today()
    folders = {AARHUS: folder / "aarhus", RANDERS: folder / "randers"}
    write_csv(folders[AARHUS], "virksomhedskontakter_1.csv", aarhus_rows(today))
    write_csv(folders[RANDERS], "virksomhedskontakter_1.csv", randers_rows(today))
    config = csv_config(db_url, folders)
    result = SyncEngine(engine, config, load_registry(), classifier=TaxonomyClassifier()).run()
    assert result.ok, result.outcomes
    return config


def csrf_token(html: str) -> str:
    """The CSRF token of the first form in a page."""
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
