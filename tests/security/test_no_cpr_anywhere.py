"""No CPR number from a delivery is stored anywhere or shown by any API answer.

One delivery per source kind (a jobcentre's CSV file, the væksthus CRM and a VEU-centre API, the
last two over real HTTP from the fake servers) carries CPR numbers in both written forms, each
with a valid birth date, in every kind of field: notes, purpose, contact person and consultant
names, company names and addresses, need labels, fields only the raw payload keeps, and records
that are quarantined. After one sync, no table column and no answer of any GET endpoint, for any
role, holds the digits of any of them. P-numbers and phone numbers that read like CPR numbers
but are labelled ("P-nr", "tlf.") are kept, which shows the search would find what it looks for.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from stdnum.dk import cpr

from connectors.base import load_registry
from connectors.csv_drop import COLUMNS
from coordination import create_app
from coordination.api.auth import reset_failures
from coordination.config import Config, parse_config
from coordination.db import make_engine, session_scope
from coordination.demo.fakes import FakeODataCrm, FakeVeuApi
from coordination.sync import SyncEngine
from coordination.tokens import ROLES, create_token
from tests.helpers import text_in_database
from tests.integration.conftest import crm_appointment, csv_bytes, veu_contact
from tests.security import fresh_database_url

JOBCENTER = "Jobcenter Aarhus"
VAEKSTHUS = "Væksthus Midtjylland"
VEU = "VEU-center Østjylland"
ORGANISATIONS = (JOBCENTER, VAEKSTHUS, VEU)
SECRETS = {"CRM_SECRET": "crm-hemmelighed", "VEU_KEY": "veu-noegle"}

# Where each CPR number is planted -> the number (both forms, each a valid birth date).
PLANTED = {
    "csv note": "030583-2117",
    "csv purpose": "1911742203",
    "csv contact person": "240466-1049",
    "csv company name": "0707881335",
    "csv consultant": "120391-2740",
    "csv need label": "2802652918",
    "csv extra column": "310779-0151",
    "csv quarantined row": "0512853496",
    "crm description": "170668-3327",
    "crm subject": "2209931104",
    "crm contact": "080156-1725",
    "crm account name": "1406822599",
    "crm owner": "261170-0308",
    "crm address": "0303992143",
    "crm extra field": "190584-3860",
    "crm quarantined item": "2906701992",
    "veu notes": "111261-2214",
    "veu purpose": "2504883075",
    "veu contact person": "041077-1456",
    "veu company name": "1712943387",
    "veu consultant": "220859-0719",
    "veu need label": "0909643612",
    "veu extra field": "150395-2868",
    "veu quarantined item": "3001851247",
}
# Labelled numbers that read like CPR numbers (10/12/1934 and 21/12/1960) but are not.
P_NUMBER = "1012341234"
PHONE = "2112601234"
LOOK_ALIKES = f"P-nr {P_NUMBER}, tlf. {PHONE}"
COMPANY_CVR = "25313763"


def _forms(number: str) -> tuple[str, str]:
    digits = number.replace("-", "")
    return digits, f"{digits[:6]}-{digits[6:]}"


# --- the deliveries -------------------------------------------------------------------------------


def _csv_delivery(folder: Path) -> None:
    p = PLANTED
    company = {"CVR": COMPANY_CVR, "Postnr": "8000", "By": "Aarhus C", "Kontaktform": "Besøg"}
    good = {
        **company,
        "KontaktID": "J-1",
        "Dato": "05-10-2026",
        "Virksomhed": f"Tømrer Jensen {p['csv company name']}",
        "Formål": f"Praktik for {p['csv purpose']}",
        "Kontaktperson": f"Hans Jensen {p['csv contact person']}",
        "KontaktpersonEmail": "hans@jensen.dk",
        "Medarbejder": f"Lise Bæk {p['csv consultant']}",
        "MedarbejderEmail": "lise.baek@aarhus.dk",
        "Kompetencebehov": f"Kursus for {p['csv need label']}",
        "Note": f"Borger {p['csv note']} deltog. {LOOK_ALIKES}",
        "Bemærkning": f"intern {p['csv extra column']}",
    }
    bad = {
        **company,
        "KontaktID": "J-2",
        "Dato": "32-10-2026",
        "Virksomhed": "Tømrer Jensen",
        "Note": f"borger {p['csv quarantined row']}",
    }
    folder.mkdir(parents=True)
    content = csv_bytes([good, bad], columns=(*COLUMNS, "Bemærkning"), bom=True)
    (folder / "virksomhedskontakter_20261006.csv").write_bytes(content)


def _crm_items() -> list[dict[str, Any]]:
    p = PLANTED
    good = crm_appointment(
        "crm-1",
        scheduledstart="2026-10-07T10:00:00+02:00",
        subject=f"Sparring om {p['crm subject']}",
        description=f"Jobsøgende {p['crm description']} var med. {LOOK_ALIKES}",
        cr_contact={
            "fullname": f"Søren Østergaard {p['crm contact']}",
            "emailaddress1": "soeren@jensen.dk",
            "telephone1": "86 12 34 56",
        },
        owninguser={"fullname": f"Hanne {p['crm owner']}", "internalemailaddress": "hanne@vh.dk"},
        cr_internalnote=f"cpr {p['crm extra field']}",
    )
    good["regardingobjectid_account"] |= {
        "name": f"Tømrer Jensen {p['crm account name']}",
        "cr_cvr": COMPANY_CVR,
        "address1_line1": f"Vestergade 3 {p['crm address']}",
        "address1_postalcode": "8000",
        "address1_city": "Aarhus C",
    }
    bad = crm_appointment("crm-2", statecode=9, description=f"om {p['crm quarantined item']}")
    return [good, bad]


def _veu_items() -> list[dict[str, Any]]:
    p = PLANTED
    good = veu_contact(
        "veu-1",
        date="2026-10-09",
        purpose=f"Afklaring af {p['veu purpose']}",
        notes=f"Talte med {p['veu notes']} om AMU. {LOOK_ALIKES}",
        contact_person={"name": f"Bjørn {p['veu contact person']}", "email": "bjoern@jensen.dk"},
        consultant={"name": f"Sofie {p['veu consultant']}", "email": "sofie@veu.dk"},
        needs=[{"type": "upskilling", "code": None, "label": f"AMU {p['veu need label']}"}],
        internal_comment=f"se {p['veu extra field']}",
    )
    good["company"] = good["company"] | {
        "cvr": COMPANY_CVR,
        "name": f"Tømrer Jensen {p['veu company name']}",
        "postcode": "8000",
        "city": "Aarhus C",
    }
    bad = veu_contact("veu-2", date="2026-02-30", notes=f"borger {p['veu quarantined item']}")
    return [good, bad]


def _config(db_url: str, drop: Path, crm: FakeODataCrm, veu: FakeVeuApi) -> Config:
    sources = [
        {
            "name": "jobcenter-aarhus",
            "kind": "csv-drop",
            "organisation": JOBCENTER,
            "organisation_type": "jobcenter",
            "municipality_code": "751",
            "path": str(drop),
        },
        {
            "name": "vaeksthus-midt",
            "kind": "odata-crm",
            "organisation": VAEKSTHUS,
            "organisation_type": "vaeksthus",
            "base_url": crm.base_url,
            "token_url": crm.token_url,
            "client_id": "coordination",
            "client_secret_env": "CRM_SECRET",
            "max_retries": 0,
        },
        {
            "name": "veu-oestjylland",
            "kind": "rest-json",
            "organisation": VEU,
            "organisation_type": "veu",
            "base_url": veu.base_url,
            "api_key_env": "VEU_KEY",
            "max_retries": 0,
        },
    ]
    raw = {"database": {"url": db_url}, "sources": sources}
    return parse_config(raw, SECRETS, load_registry())


# --- one synced world for the module -------------------------------------------------------------


@dataclasses.dataclass
class Synced:
    engine: Any
    app: Any
    tokens: dict[tuple[str, str], str]  # (organisation, role) -> plain token


@pytest.fixture(scope="module")
def synced(_migrated_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("no-cpr")
    url = fresh_database_url(_migrated_url, folder)
    engine = make_engine(url)
    _csv_delivery(folder / "drop")
    crm = FakeODataCrm(_crm_items(), client_id="coordination", client_secret=SECRETS["CRM_SECRET"])
    veu = FakeVeuApi(_veu_items(), api_key=SECRETS["VEU_KEY"])
    with crm, veu:
        config = _config(url, folder / "drop", crm, veu)
        result = SyncEngine(engine, config, load_registry()).run()
    assert result.ok, result.outcomes
    assert {o.name: (o.counts.new, o.counts.quarantined) for o in result.outcomes} == {
        "jobcenter-aarhus": (1, 1),
        "vaeksthus-midt": (1, 1),
        "veu-oestjylland": (1, 1),
    }
    with session_scope(engine) as session:
        tokens = {
            (organisation, role): create_token(session, organisation, role)[1]
            for organisation in ORGANISATIONS
            for role in ROLES
        }
    app = create_app({"TESTING": True, "COORDINATION": config, "AUTH_MAX_FAILURES": 10**6})
    reset_failures()
    yield Synced(engine, app, tokens)
    app.extensions["coordination"]["engine"].dispose()
    engine.dispose()


# --- every answer of every GET endpoint ---------------------------------------------------------


def _text(answer) -> str:
    """An answer's body as text; a workbook's XML parts unpacked."""
    body = answer.get_data()
    if body[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(body)) as workbook:
            return "\n".join(workbook.read(name).decode("utf-8") for name in workbook.namelist())
    return body.decode("utf-8")


def _get(client, url: str, token: str) -> Any:
    answer = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code in (200, 403), (url, answer.status_code, answer.get_data()[:300])
    return answer


def _urls_of_every_answer(client, admin: str) -> list[str]:
    """Every GET endpoint, for every company, run, proposal status and report format."""
    api = "/api/v1"
    companies = _get(client, f"{api}/companies?page_size=1000", admin).json["items"]
    runs = _get(client, f"{api}/sync-runs?page_size=1000", admin).json["items"]
    period = "area=region-midtjylland&from=2026-01-01&to=2026-12-31"
    urls = [
        f"{api}/companies?page_size=1000",
        f"{api}/companies?q=Jensen",
        f"{api}/approaches?page_size=1000",
        f"{api}/flags",
        f"{api}/needs/unclassified?page_size=1000",
        f"{api}/identity/decisions?page_size=1000",
        f"{api}/sync-runs?page_size=1000",
        f"{api}/sync-runs/sources",
        f"{api}/reports/coordination?{period}",
        *(f"{api}/identity/proposals?status={s}" for s in ("proposed", "accepted", "rejected")),
        *(
            f"{api}/reports/competence-needs?{period}&group_by={group}&format={fmt}"
            for group in ("sector", "municipality", "organisation_type")
            for fmt in ("json", "csv", "xlsx")
        ),
        *(f"{api}/sync-runs/{run['id']}" for run in runs),
    ]
    for company in companies:
        prefixes = [f"{api}/companies/id/{company['id']}"]
        if company["cvr"]:
            prefixes.append(f"{api}/companies/{company['cvr']}")
        for prefix in prefixes:
            urls += [prefix, f"{prefix}/prior-contact?days=3650", f"{prefix}/planned"]
    return urls + [f"{api}/audit?page_size=1000"]  # last: it has seen every other call


@pytest.fixture(scope="module")
def answers(synced) -> dict[str, str]:
    """(organisation, role, url) -> answer text, for every token and every GET endpoint."""
    client = synced.app.test_client()
    urls = _urls_of_every_answer(client, synced.tokens[(JOBCENTER, "admin")])
    texts = {}
    for (organisation, role), token in synced.tokens.items():
        for url in urls:
            texts[f"{organisation} | {role} | {url}"] = _text(_get(client, url, token))
    return texts


def _holding(texts: dict[str, str], needles: tuple[str, ...]) -> list[str]:
    return [where for where, text in texts.items() if any(needle in text for needle in needles)]


# --- the tests ------------------------------------------------------------------------------------


def test_every_planted_number_is_a_cpr_number_with_a_valid_birth_date():
    assert all(cpr.is_valid(number.replace("-", "")) for number in PLANTED.values())
    assert len({number.replace("-", "") for number in PLANTED.values()}) == len(PLANTED)
    assert {("-" in number) for number in PLANTED.values()} == {True, False}


@pytest.mark.parametrize("planted_in", list(PLANTED))
def test_no_column_of_any_table_holds_the_cpr_number(synced, planted_in):
    found = [
        column
        for form in _forms(PLANTED[planted_in])
        for column in text_in_database(synced.engine, form)
    ]
    assert found == []


@pytest.mark.parametrize("planted_in", list(PLANTED))
def test_no_api_answer_for_any_role_shows_the_cpr_number(answers, planted_in):
    assert _holding(answers, _forms(PLANTED[planted_in])) == []


def test_labelled_p_numbers_and_phone_numbers_are_stored(synced):
    assert "sourcerecord.notes" in text_in_database(synced.engine, P_NUMBER)
    assert "sourcerecord.notes" in text_in_database(synced.engine, PHONE)


def test_labelled_p_numbers_and_phone_numbers_are_shown_to_the_notes_writers(answers):
    for organisation in ORGANISATIONS:
        own = {where: text for where, text in answers.items() if where.startswith(organisation)}
        assert _holding(own, (LOOK_ALIKES,)), organisation


def test_the_walk_saw_every_synced_approach_and_company(answers):
    approaches = json.loads(answers[f"{JOBCENTER} | admin | /api/v1/approaches?page_size=1000"])
    companies = json.loads(answers[f"{JOBCENTER} | admin | /api/v1/companies?page_size=1000"])
    assert approaches["total"] == 3
    assert [c["cvr"] for c in companies["items"]] == [COMPANY_CVR]
