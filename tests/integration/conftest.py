"""Fixtures for the sync integration tests: the shipped sample deliveries served by running fake
source servers and dropped as real files, a configuration naming all six sample sources, and a
snapshot of what a database holds, comparable between runs and between databases.

Secrets come from a fake environment (:data:`SECRETS`), never from the process environment.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from connectors.base import load_registry
from connectors.csv_drop import COLUMNS
from coordination.config import Config, parse_config
from coordination.db import make_engine
from coordination.demo.fakes import FakeODataCrm, FakeVeuApi
from coordination.models import (
    Approach,
    ApproachRecord,
    Company,
    QuarantinedRecord,
    Source,
    SourceRecord,
    SyncRunSource,
)
from coordination.services import run_sync
from coordination.sync import SourceOutcome, SyncResult
from tests.conftest import POSTGRES_URL

PROJECT = Path(__file__).resolve().parents[2]


def _samples_dir() -> Path:
    """The shared sample deliveries: $COORDINATION_SAMPLES, ``samples/`` in the project, or the
    ``shared/samples`` folder beside it (where they live on the development machines)."""
    candidates = [PROJECT / "samples", PROJECT.parent / "shared" / "samples"]
    if os.environ.get("COORDINATION_SAMPLES"):
        candidates.insert(0, Path(os.environ["COORDINATION_SAMPLES"]))
    return next((path for path in candidates if path.is_dir()), candidates[-1])


SAMPLES = _samples_dir()

CRM = "vaeksthus-midt"
AARHUS = "jobcenter-aarhus"
HERNING = "jobcenter-herning"
RANDERS = "jobcenter-randers"
VEU_OEST = "veu-oestjylland"
VEU_VEST = "veu-vestjylland"
SOURCE_NAMES = (CRM, AARHUS, HERNING, RANDERS, VEU_OEST, VEU_VEST)
JOBCENTERS = (AARHUS, HERNING, RANDERS)

ORGANISATIONS = {
    CRM: ("Væksthus Midtjylland", "vaeksthus", ""),
    AARHUS: ("Jobcenter Aarhus", "jobcenter", "751"),
    HERNING: ("Jobcenter Herning", "jobcenter", "657"),
    RANDERS: ("Jobcenter Randers", "jobcenter", "730"),
    VEU_OEST: ("VEU-center Østjylland", "veu", ""),
    VEU_VEST: ("VEU-center Vestjylland", "veu", ""),
}

# The fake environment the secrets are read from (the fakes check them).
SECRETS = {
    "VAEKSTHUS_MIDT_SECRET": "crm-hemmelighed",
    "VEU_OESTJYLLAND_KEY": "oest-key-1",
    "VEU_VESTJYLLAND_KEY": "vest-key-2",
}
CRM_CLIENT_ID = "coordination"

# Small pages, so every API source is read in several pages (and batches).
CRM_PAGE_SIZE = 10  # 31 appointments: 4 pages
VEU_PAGE_SIZE = 5  # 14 and 20 contacts: 3 and 4 pages
# Retries that give up quickly: a source that keeps failing fails in milliseconds.
FAST_RETRIES = {"max_retries": 2, "max_retry_wait_seconds": 0.01}
QUICK_GIVE_UP = {name: FAST_RETRIES for name in (CRM, VEU_OEST, VEU_VEST)}  # source options


# --- fake source servers ----------------------------------------------------------------------


@dataclasses.dataclass
class Fakes:
    crm: FakeODataCrm
    veu_oest: FakeVeuApi
    veu_vest: FakeVeuApi

    def for_source(self, name: str) -> FakeODataCrm | FakeVeuApi:
        return {CRM: self.crm, VEU_OEST: self.veu_oest, VEU_VEST: self.veu_vest}[name]


def sample_items(source: str) -> list[dict[str, Any]]:
    """The items of a sample API delivery (a fresh copy: tests may change them)."""
    return json.loads((SAMPLES / source / "records.json").read_text(encoding="utf-8"))


@contextlib.contextmanager
def running_fakes() -> Iterator[Fakes]:
    """The two VEU APIs and the væksthus CRM, running on 127.0.0.1, serving the samples."""
    crm = FakeODataCrm(
        sample_items(CRM),
        client_id=CRM_CLIENT_ID,
        client_secret=SECRETS["VAEKSTHUS_MIDT_SECRET"],
    )
    veu_oest = FakeVeuApi(sample_items(VEU_OEST), api_key=SECRETS["VEU_OESTJYLLAND_KEY"])
    veu_vest = FakeVeuApi(sample_items(VEU_VEST), api_key=SECRETS["VEU_VESTJYLLAND_KEY"])
    with crm, veu_oest, veu_vest:
        yield Fakes(crm, veu_oest, veu_vest)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        yield running


# --- drop folders -----------------------------------------------------------------------------


def make_drops(root: Path) -> dict[str, Path]:
    """A drop folder per jobcenter under ``root`` holding copies of its shipped sample files."""
    folders = {}
    for name in JOBCENTERS:
        folder = root / "drop" / name
        folder.mkdir(parents=True)
        for sample in sorted((SAMPLES / name).glob("*.csv")):
            shutil.copyfile(sample, folder / sample.name)
        folders[name] = folder
    return folders


@pytest.fixture
def drops(tmp_path: Path) -> dict[str, Path]:
    return make_drops(tmp_path)


def csv_bytes(
    rows: Iterable[Mapping[str, str]],
    *,
    columns: Sequence[str] = COLUMNS,
    encoding: str = "utf-8",
    bom: bool = False,
) -> bytes:
    """A jobcenter export as the jobcenters write it: ``;``-separated, CRLF, header first;
    columns a row lacks are empty."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", quotechar='"', lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    data = out.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def write_drop(folder: Path, file_name: str, rows: Iterable[Mapping[str, str]], **kwargs) -> Path:
    """Drop an export into ``folder``; keyword arguments as for :func:`csv_bytes`."""
    path = folder / file_name
    path.write_bytes(csv_bytes(rows, **kwargs))
    return path


# Realistic jobcenter exports, in the three shapes the jobcenters send. Valid CVR numbers are
# invented; Søgaard & Sørensen, Søhøjlandets Smedie and Østjysk Robotteknik also occur in the
# API samples, and two of the rows are joint visits with them.
REVERSED_COLUMNS = tuple(reversed(COLUMNS))

AARHUS_EXPORT = [
    {
        "KontaktID": "A-1001",
        "Dato": "14-02-2026",
        "CVR": "DK39042681",
        "Virksomhed": "Søgaard & Sørensen IVS",
        "Adresse": "Åboulevarden 12",
        "Postnr": "8000",
        "By": "Aarhus C",
        "Kontaktform": "Møde",
        "Formål": "Rekruttering af svejsere",
        "Kontaktperson": "Åse Kjærgaard",
        "KontaktpersonEmail": "aase@soegaard-soerensen.dk",
        "KontaktpersonTelefon": "86 12 34 56",
        "Medarbejder": "Lise Bæk",
        "MedarbejderEmail": "lise.baek@aarhus.dk",
        "Rekrutteringsbehov": "7212|Truckfører",
        "Kompetencebehov": "Svejsecertifikat",
        "KoordineretMed": "Væksthus Midtjylland",
        "Status": "Aktiv",
        "Note": "Virksomheden ønsker opfølgning i marts.",
    },
    {
        "KontaktID": "A-1002",
        "Dato": "03.10.2026 09:30",
        "CVR": "53282067",
        "Virksomhed": "Østjysk Robotteknik ApS",
        "Postnr": "8680",
        "By": "Ry",
        "Kontaktform": "Telefon",
        "Formål": "Praktikpladser",
        "Medarbejder": "Lise Bæk",
        "MedarbejderEmail": "lise.baek@aarhus.dk",
        "Status": "",
    },
    {
        "KontaktID": "A-1003",
        "Dato": "15-10-2026",
        "Virksomhed": "Århus Å-Bryggeri ApS",
        "Adresse": "Mølleparken 3",
        "Postnr": "8000",
        "By": "Aarhus C",
        "Kontaktform": "besoeg",
        "Formål": "Fastholdelse",
        "Medarbejder": "Mads Ødegaard",
        "MedarbejderEmail": "mads.oedegaard@aarhus.dk",
        "Status": "Aktiv",
    },
]

HERNING_EXPORT = [  # Windows-1252
    {
        "KontaktID": "H-501",
        "Dato": "04-12-2025",
        "CVR": "35 29 42 36",
        "Virksomhed": "Søhøjlandets Smedie P/S",
        "Postnr": "7620",
        "By": "Lemvig",
        "Kontaktform": "BESØG",
        "Formål": "Fælles virksomhedsbesøg",
        "Medarbejder": "Jørn Væver",
        "MedarbejderEmail": "joern.vaever@herning.dk",
        "Kompetencebehov": "Grøn omstilling|Lean",
        "KoordineretMed": "VEU-center Vestjylland",
        "Status": "Aktiv",
    },
    {
        "KontaktID": "H-502",
        "Dato": "12-03-2026",
        "CVR": "16480894",
        "Virksomhed": "Bøgh & Ærø Maskinfabrik A/S",
        "Adresse": "Fælledvej 4",
        "Postnr": "7400",
        "By": "Herning",
        "Kontaktform": "E-mail",
        "Formål": "Opkvalificering af ufaglærte",
        "Medarbejder": "Jørn Væver",
        "MedarbejderEmail": "joern.vaever@herning.dk",
        "Status": "Aktiv",
    },
]

RANDERS_EXPORT = [  # columns in reverse order; are one visit keyed in twice
    {
        "KontaktID": "R-301",
        "Dato": "02-09-2026",
        "CVR": "DK-83960310",
        "Virksomhed": "Randers Rebslåeri ApS",
        "Postnr": "8900",
        "By": "Randers C",
        "Kontaktform": "Besøg",
        "Formål": "Rekruttering",
        "Medarbejder": "Birthe Ågård",
        "MedarbejderEmail": "birthe.aagaard@randers.dk",
        "Rekrutteringsbehov": "Lagerarbejder",
        "Status": "Aktiv",
    },
    {
        "KontaktID": "R-302",
        "Dato": "02-09-2026",
        "CVR": "83960310",
        "Virksomhed": "Randers Rebslaaeri",
        "Postnr": "8900",
        "By": "Randers C",
        "Kontaktform": "besøg",
        "Formål": "Rekruttering",
        "Medarbejder": "Birthe Ågård",
        "MedarbejderEmail": "Birthe.Aagaard@randers.dk",
        "Status": "Aktiv",
    },
]


def write_jobcenter_exports(drops: Mapping[str, Path]) -> None:
    """A realistic export per jobcenter beside the shipped samples: Aarhus in UTF-8 with BOM,
    Herning in Windows-1252, Randers in UTF-8 with its columns reordered."""
    write_drop(drops[AARHUS], "virksomhedskontakter_20261001.csv", AARHUS_EXPORT, bom=True)
    write_drop(
        drops[HERNING], "virksomhedskontakter_20261001.csv", HERNING_EXPORT, encoding="cp1252"
    )
    write_drop(
        drops[RANDERS],
        "virksomhedskontakter_20261001.csv",
        RANDERS_EXPORT,
        columns=REVERSED_COLUMNS,
    )


@pytest.fixture
def jobcenter_exports(drops: dict[str, Path]) -> dict[str, Path]:
    """The drop folders with the realistic exports of :func:`write_jobcenter_exports`."""
    write_jobcenter_exports(drops)
    return drops


# --- configuration ----------------------------------------------------------------------------


def source_tables(
    fakes: Fakes, drops: Mapping[str, Path], options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The ``[[sources]]`` tables of the six sample sources, with ``options`` per source name
    added on top (e.g. ``{CRM: FAST_RETRIES}``)."""
    tables = []
    for name in SOURCE_NAMES:
        organisation, organisation_type, municipality = ORGANISATIONS[name]
        table: dict[str, Any] = {
            "name": name,
            "organisation": organisation,
            "organisation_type": organisation_type,
            "municipality_code": municipality,
        }
        if name == CRM:
            table |= {
                "kind": "odata-crm",
                "base_url": fakes.crm.base_url,
                "token_url": fakes.crm.token_url,
                "client_id": CRM_CLIENT_ID,
                "client_secret_env": "VAEKSTHUS_MIDT_SECRET",
                "page_size": CRM_PAGE_SIZE,
            }
        elif name in JOBCENTERS:
            table |= {"kind": "csv-drop", "path": str(drops[name])}
        else:
            table |= {
                "kind": "rest-json",
                "base_url": fakes.for_source(name).base_url,
                "api_key_env": "VEU_OESTJYLLAND_KEY" if name == VEU_OEST else "VEU_VESTJYLLAND_KEY",
                "page_size": VEU_PAGE_SIZE,
            }
        tables.append(table | dict((options or {}).get(name, {})))
    return tables


def sample_config(
    db_url: str,
    fakes: Fakes,
    drops: Mapping[str, Path],
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """All six sample sources on ``db_url``, built through the real configuration parser with
    :data:`SECRETS` as the environment."""
    raw = {"database": {"url": db_url}, "sources": source_tables(fakes, drops, options)}
    return parse_config(raw, SECRETS, load_registry())


@pytest.fixture
def config(db_url: str, fakes: Fakes, drops: dict[str, Path]) -> Config:
    """All six sample sources on the test database, with retries that give up quickly."""
    return sample_config(db_url, fakes, drops, QUICK_GIVE_UP)


# --- a database synced once for a whole test module -------------------------------------------


@dataclasses.dataclass
class World:
    """Running fakes, drop folders, a fresh database and a configuration tying them together."""

    fakes: Fakes
    drops: dict[str, Path]
    config: Config
    engine: Engine


def fresh_database(template_url: str, folder: Path) -> str:
    """The URL of a migrated, empty database: the PostgreSQL test database emptied, or a copy
    of the migrated SQLite template (``_migrated_url`` of ``tests/conftest.py``) in ``folder``.
    """
    if POSTGRES_URL:
        empty_database(POSTGRES_URL)
        return POSTGRES_URL
    target = folder / "coordination.db"
    shutil.copyfile(make_url(template_url).database, target)
    return f"sqlite:///{target}"


def empty_database(url: str) -> None:
    """Delete every row and restart the id sequences. On tables this small, DELETE takes
    milliseconds where TRUNCATE (``tests/conftest.py``) takes most of a second per test."""
    import coordination.models  # noqa: F401  (registers every table)

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(SQLModel.metadata.sorted_tables):
                connection.execute(delete(table))
            for table in SQLModel.metadata.sorted_tables:
                if "id" in table.c:  # tables keyed otherwise have no sequence: setval(NULL)
                    sequence = func.pg_get_serial_sequence(table.name, "id")
                    connection.execute(select(func.setval(sequence, 1, False)))
    finally:
        engine.dispose()


@pytest.fixture
def db_url(_migrated_url: str, tmp_path: Path) -> str:
    """A migrated, empty database for one test, as in ``tests/conftest.py``, emptied faster."""
    return fresh_database(_migrated_url, tmp_path)


@contextlib.contextmanager
def sample_world(template_url: str, folder: Path) -> Iterator[World]:
    """A :class:`World` for module-scoped fixtures, which sync once and keep what they read in
    memory (the PostgreSQL test database is emptied again by the next test that asks for one).
    ``template_url`` is the migrated database of ``tests/conftest.py`` (``_migrated_url``)."""
    url = fresh_database(template_url, folder)
    engine = make_engine(url)
    try:
        with running_fakes() as fakes:
            drops = make_drops(folder)
            yield World(fakes, drops, sample_config(url, fakes, drops, QUICK_GIVE_UP), engine)
    finally:
        engine.dispose()


def loaded(engine: Engine, statement) -> list[Any]:
    """The ORM objects ``statement`` selects, loaded and detached (usable after the session)."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(statement))


def toml_text(raw: Mapping[str, Any]) -> str:
    """A configuration mapping (tables of scalars, ``sources`` an array of tables) as TOML."""
    lines: list[str] = []
    for section, value in raw.items():
        if isinstance(value, list):
            for table in value:
                lines += ["", f"[[{section}]]", *_toml_pairs(table)]
        else:
            lines += ["", f"[{section}]", *_toml_pairs(value)]
    return "\n".join(lines).lstrip() + "\n"


def _toml_pairs(table: Mapping[str, Any]) -> list[str]:
    def literal(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string

    return [f"{key} = {literal(value)}" for key, value in table.items()]


# --- running a sync ---------------------------------------------------------------------------


def sync(config: Config, engine: Engine, sources: Sequence[str] | None = None) -> SyncResult:
    """One sync run through the service layer, as the CLI and the scheduler start it."""
    return run_sync(config, sources, trigger="cli", engine=engine)


def outcome(result: SyncResult, source: str) -> SourceOutcome:
    return next(o for o in result.outcomes if o.name == source)


def run_sources(engine: Engine, run_id: int) -> dict[str, SyncRunSource]:
    """The recorded per-source rows of sync run ``run_id``, by source name."""
    with Session(engine, expire_on_commit=False) as session:
        rows = session.execute(
            select(Source.name, SyncRunSource)
            .join(Source, Source.id == SyncRunSource.source_id)
            .where(SyncRunSource.sync_run_id == run_id)
        ).all()
        return {name: entry for name, entry in rows}


# --- what a database holds --------------------------------------------------------------------

RecordRef = tuple[str, str]  # (source name, the source's id of the record)


@dataclasses.dataclass(frozen=True)
class StoredState:
    """What the sync stored, without database ids, so two databases can be compared.

    ``records``: (source, external id, content hash, status). ``links``: record -> its
    company's CVR, or ``name:<name key>|<postcode>`` for a company without one. ``companies``:
    the keys of the companies records are linked to. ``approaches``: (its records, its
    organisations). ``quarantine``: open entries (source, record key, reason); ``released``:
    entries a later delivery corrected (source, record key).
    """

    records: frozenset[tuple[str, str, str, str]]
    links: dict[RecordRef, str]
    companies: frozenset[str]
    approaches: frozenset[tuple[frozenset[RecordRef], tuple[str, ...]]]
    quarantine: frozenset[tuple[str, str, str]]
    released: frozenset[tuple[str, str]]

    def records_of(self, source: str) -> set[str]:
        return {external_id for name, external_id, _, _ in self.records if name == source}

    def status_of(self, source: str, external_id: str) -> str:
        return next(s for n, e, _, s in self.records if (n, e) == (source, external_id))

    def approach_of(self, ref: RecordRef) -> tuple[frozenset[RecordRef], tuple[str, ...]] | None:
        return next((a for a in self.approaches if ref in a[0]), None)


def company_key(cvr: str | None, name_key: str, postcode: str | None) -> str:
    return cvr or f"name:{name_key}|{postcode or ''}"


def snapshot(engine: Engine) -> StoredState:
    with engine.connect() as connection:
        record_rows = connection.execute(
            select(
                SourceRecord.id,
                Source.name,
                SourceRecord.external_id,
                SourceRecord.content_hash,
                SourceRecord.status,
                Company.cvr,
                Company.name_key,
                Company.postcode,
            )
            .join(Source, Source.id == SourceRecord.source_id)
            .outerjoin(Company, Company.id == SourceRecord.company_id)
        ).all()
        refs = {row.id: (row.name, row.external_id) for row in record_rows}
        members: dict[int, set[RecordRef]] = {}
        for approach_id, record_id in connection.execute(
            select(ApproachRecord.approach_id, ApproachRecord.source_record_id)
        ):
            members.setdefault(approach_id, set()).add(refs[record_id])
        approaches = frozenset(
            (frozenset(members.get(approach_id, ())), tuple(organisations))
            for approach_id, organisations in connection.execute(
                select(Approach.id, Approach.organisations)
            )
        )
        quarantine_rows = connection.execute(
            select(
                Source.name,
                QuarantinedRecord.record_key,
                QuarantinedRecord.reason,
                QuarantinedRecord.resolved_at,
            ).join(Source, Source.id == QuarantinedRecord.source_id)
        ).all()
    links = {
        (row.name, row.external_id): company_key(row.cvr, row.name_key, row.postcode)
        for row in record_rows
        if row.name_key is not None
    }
    return StoredState(
        records=frozenset(
            (row.name, row.external_id, row.content_hash, row.status) for row in record_rows
        ),
        links=links,
        companies=frozenset(links.values()),
        approaches=approaches,
        quarantine=frozenset(
            (name, key, reason) for name, key, reason, resolved in quarantine_rows if not resolved
        ),
        released=frozenset(
            (name, key) for name, key, _, resolved in quarantine_rows if resolved is not None
        ),
    )


# --- hand-made deliveries ---------------------------------------------------------------------


def veu_contact(contact_id: str, **changes: Any) -> dict[str, Any]:
    """A valid VEU contact item (updated 1 November 2026) with ``changes`` on top."""
    item: dict[str, Any] = {
        "id": contact_id,
        "updated_at": "2026-11-01T08:00:00Z",
        "deleted": False,
        "date": "2026-10-20",
        "channel": "visit",
        "purpose": "Kompetenceafklaring",
        "company": {
            "cvr": "66978001",
            "p_number": None,
            "name": "Skjern Å Trævarer A/S",
            "address": "Ådalen 9",
            "postcode": "6900",
            "city": "Skjern",
        },
        "contact_person": {"name": "Ærling Højgaard", "email": "aerling@skjern-tra.dk"},
        "consultant": {"name": "Sofie Lund", "email": "sofie.lund@veu-vest.dk"},
        "needs": [{"type": "upskilling", "code": None, "label": "Truckcertifikat"}],
        "joint_with": [],
        "notes": "Ønsker AMU-kurser i foråret.",
    }
    return item | changes


def crm_appointment(activity_id: str, **changes: Any) -> dict[str, Any]:
    """A valid CRM appointment (modified 1 November 2026) with ``changes`` on top."""
    item: dict[str, Any] = {
        "activityid": activity_id,
        "subject": "Vækstsparring",
        "scheduledstart": "2026-10-21T10:00:00+02:00",
        "modifiedon": "2026-11-01T08:00:00Z",
        "statecode": 1,
        "cr_contacttype": "besoeg",
        "regardingobjectid_account": {
            "accountid": f"acc-{activity_id}",
            "name": "Skjern Å Trævarer A/S",
            "cr_cvr": "66978001",
            "cr_pnumber": None,
            "address1_line1": "Ådalen 9",
            "address1_postalcode": "6900",
            "address1_city": "Skjern",
        },
        "cr_contact": None,
        "owninguser": {"fullname": "Hanne Rasmussen", "internalemailaddress": "hanne@vh.dk"},
        "cr_competenceneeds": "DIG",
        "cr_jointwith": "",
        "description": "God dialog.",
    }
    return item | changes


@pytest.fixture
def disposed_engines(monkeypatch):
    """Engines the command creates are disposed after the test. ``services.run_sync`` leaves
    the engine it makes open (harmless for a process that exits, not for a test session)."""
    import coordination.services

    made = []

    def make_and_remember(url, **kwargs):
        made.append(make_engine(url, **kwargs))
        return made[-1]

    monkeypatch.setattr(coordination.services, "make_engine", make_and_remember)
    yield
    for engine in made:
        engine.dispose()
