"""The report endpoints: downloads that open in Excel with æøå intact, the same numbers in every
format, who may ask, what is refused, and the audit trail."""

from __future__ import annotations

import csv
import datetime as dt
import io

import openpyxl
import pytest
from sqlalchemy import select
from sqlmodel import Session

from coordination.db import session_scope
from coordination.models import AuditEntry
from coordination.reports.export import (
    COMPETENCE_NEEDS_COLUMNS,
    XLSX_MEDIA_TYPE,
    FlatReport,
    to_csv,
)
from tests.reports import builders as b

NEEDS_URL = "/api/v1/reports/competence-needs?area=region-midtjylland&from=2025-01-01&to=2025-12-31"
COORDINATION_URL = "/api/v1/reports/coordination?area=rar-vestjylland&from=2025-01-01&to=2025-12-31"
GREEN = b.need("upskilling", "Grøn omstilling", "komp:groen-omstilling")
READING = b.need("upskilling", "Læsning", "komp:laesning-og-regning")
COMPANY_NAME = "Østergårds Maskinfabrik ApS"
CVR = "25313763"


@pytest.fixture
def stored(engine):
    """Companies in Herning and Aarhus with needs; one cell of two companies (suppressed)."""
    with session_scope(engine) as session:
        organisation = b.organisation(session, "Jobcenter Herning", "jobcenter", "657")
        source = b.source(session, organisation, "jobcenter-herning")
        named = b.company(session, "657", "C", name=COMPANY_NAME, cvr=CVR)
        b.approach(session, named, dt.date(2025, 3, 1), source, [GREEN, READING])
        for _ in range(3):
            b.approach(
                session, b.company(session, "657", "C"), dt.date(2025, 4, 1), source, [GREEN]
            )
        for _ in range(4):
            b.approach(
                session, b.company(session, "751", "F"), dt.date(2025, 5, 1), source, [GREEN]
            )
        for _ in range(2):
            b.approach(
                session, b.company(session, "751", "F"), dt.date(2025, 5, 1), source, [READING]
            )
        b.approach(session, b.company(session, "751", "C"), dt.date(2024, 5, 1), source, [GREEN])


def get(client, auth, url, role="council"):
    return client.get(url, headers=auth(role))


def json_numbers(report):
    """(group, need code) -> (companies, approaches) for every figure of the JSON report."""
    numbers = {("total", "total"): _pair(report["total"])}
    for need in report["needs"]:
        numbers[("total", need["code"])] = _pair(need)
        for cell in need["cells"]:
            numbers[(cell["group"], need["code"])] = _pair(cell)
    for group in report["groups"]:
        numbers[(group["group"], "total")] = _pair(group)
    return numbers


def _pair(figure):
    return figure["companies"], figure["approaches"]


def _number(text):
    return None if text == "" else int(text)


# --- CSV ------------------------------------------------------------------------------------------


def test_the_csv_opens_as_excel_reads_it_with_danish_letters_intact(client, auth, stored):
    answer = get(client, auth, NEEDS_URL + "&format=csv")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert answer.headers["Content-Disposition"] == (
        'attachment; filename="kompetencebehov-region-midtjylland-2025-01-01-2025-12-31.csv"'
    )
    assert answer.data.startswith(b"\xef\xbb\xbf")
    lines = answer.data.decode("utf-8-sig").splitlines()
    header = lines[0].split(";")
    assert tuple(header) == COMPETENCE_NEEDS_COLUMNS
    rows = [dict(zip(header, line.split(";"), strict=True)) for line in lines[1:]]
    labels = {row["need_label"] for row in rows} | {row["group_label"] for row in rows}
    assert "Grøn omstilling og ressourceeffektivitet" in labels
    assert "Læsning, skrivning og regning (FVU)" in labels
    assert "Industri, råstofindvinding og forsyningsvirksomhed" in labels


def test_the_csv_holds_the_same_numbers_as_the_json(client, auth, stored):
    expected = json_numbers(get(client, auth, NEEDS_URL).json)
    text = get(client, auth, NEEDS_URL + "&format=csv").data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    found = {
        (row["group"], row["need_code"]): (_number(row["companies"]), _number(row["approaches"]))
        for row in rows
    }
    assert found == expected
    assert found[("3", "komp:laesning-og-regning")] == (None, None)  # two companies: suppressed


def test_csv_values_are_written_for_danish_excel():
    flat = FlatReport("x", ("a", "b", "c", "d"), [(0.25, None, True, "Åbyhøj")], {})
    assert to_csv(flat).decode("utf-8-sig") == "a;b;c;d\r\n0,25;;true;Åbyhøj\r\n"


# --- XLSX -----------------------------------------------------------------------------------------


def test_the_xlsx_has_a_header_row_and_the_same_numbers_as_the_json(client, auth, stored):
    expected = json_numbers(get(client, auth, NEEDS_URL).json)
    answer = get(client, auth, NEEDS_URL + "&format=xlsx")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == XLSX_MEDIA_TYPE
    workbook = openpyxl.load_workbook(io.BytesIO(answer.data), read_only=True)
    sheet = workbook.worksheets[0]
    header, *rows = sheet.iter_rows(values_only=True)
    assert header == COMPETENCE_NEEDS_COLUMNS
    records = [dict(zip(header, row, strict=True)) for row in rows]
    found = {(r["group"], r["need_code"]): (r["companies"], r["approaches"]) for r in records}
    assert found == expected
    assert "Grøn omstilling og ressourceeffektivitet" in {r["need_label"] for r in records}
    assert "Om rapporten" in workbook.sheetnames


# --- the JSON report and its edge -----------------------------------------------------------------


def test_council_reports_carry_no_company_names_or_cvr_numbers(client, auth, stored):
    for url in (NEEDS_URL, NEEDS_URL + "&format=csv", COORDINATION_URL):
        body = get(client, auth, url).data.decode("utf-8-sig")
        assert COMPANY_NAME not in body and CVR not in body
        assert "Jobcenter Herning" not in body


@pytest.mark.parametrize("group_by", ["sector", "municipality", "organisation_type"])
def test_every_grouping_is_served(client, auth, stored, group_by):
    answer = get(client, auth, NEEDS_URL + f"&group_by={group_by}")
    assert answer.status_code == 200
    assert answer.json["group_by"] == group_by
    assert answer.json["total"]["companies"] == 10


@pytest.mark.parametrize("role", ["council", "coordinator", "admin"])
def test_councils_and_coordinators_may_read_reports(client, auth, stored, role):
    assert get(client, auth, NEEDS_URL, role).status_code == 200
    assert get(client, auth, COORDINATION_URL, role).status_code == 200


def test_visitors_may_not_read_reports(client, auth, stored):
    assert get(client, auth, NEEDS_URL + "&format=csv", "visitor").status_code == 403
    assert get(client, auth, COORDINATION_URL, "visitor").status_code == 403


def test_reports_need_a_token_before_anything_else(client):
    assert client.get("/api/v1/reports/competence-needs?area=nowhere").status_code == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("area=rar-nordjylland&from=2025-01-01&to=2025-12-31", "area"),
        ("area=999&from=2025-01-01&to=2025-12-31", "area"),
        ("from=2025-01-01&to=2025-12-31", "area"),
        ("area=657&from=2025-02-30&to=2025-12-31", "from"),
        ("area=657&from=2025-12-31&to=2025-01-01", "from"),
        ("area=657&from=0001-01-01&to=2025-01-01", "from"),
        ("area=657&from=2025-01-01&to=2025-12-31&group_by=industry", "group_by"),
        ("area=657&from=2025-01-01&to=2025-12-31&format=pdf", "format"),
        ("area=657&from=2025-01-01&to=2025-12-31&top=0", "top"),
    ],
)
def test_a_bad_competence_needs_request_is_422(client, auth, query, field):
    answer = get(client, auth, f"/api/v1/reports/competence-needs?{query}")
    assert answer.status_code == 422
    assert field in answer.json["errors"]["query"]


@pytest.mark.parametrize(
    "query",
    [
        "area=midtjylland&from=2025-01-01&to=2025-12-31",
        "area=657&from=2025-01-01&to=yesterday",
        "area=657&from=2025-06-01&to=2025-05-31",
    ],
)
def test_a_bad_coordination_request_is_422(client, auth, query):
    assert get(client, auth, f"/api/v1/reports/coordination?{query}").status_code == 422


def test_the_coordination_report_is_served_as_json(client, auth, stored):
    answer = get(client, auth, COORDINATION_URL)
    assert answer.status_code == 200
    assert (answer.json["companies"], answer.json["approaches"]) == (4, 4)
    assert answer.json["area"]["name"] == "RAR Vestjylland"


def test_every_report_answer_is_audited(client, auth, stored, engine):
    get(client, auth, NEEDS_URL + "&format=xlsx&group_by=municipality")
    get(client, auth, COORDINATION_URL)
    with Session(engine) as session:
        entries = session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
    assert [(e.action, e.target, e.role) for e in entries] == [
        ("report.download", "competence-needs", "council"),
        ("report.download", "coordination", "council"),
    ]
    assert entries[0].details == {
        "area": "region-midtjylland",
        "period": {"from": "2025-01-01", "to": "2025-12-31"},
        "group_by": "municipality",
        "format": "xlsx",
    }


def test_a_refused_report_is_not_audited(client, auth, engine):
    get(client, auth, "/api/v1/reports/competence-needs?area=x&from=2025-01-01&to=2025-01-02")
    with Session(engine) as session:
        assert session.execute(select(AuditEntry)).first() is None


def test_the_openapi_document_describes_the_downloads(client):
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/reports/competence-needs"]["get"]
    content = operation["responses"]["200"]["content"]
    assert {"application/json", "text/csv", XLSX_MEDIA_TYPE} <= set(content)
    parameters = {p["name"] for p in operation["parameters"]}
    assert {"area", "from", "to", "group_by", "format"} <= parameters
    assert "/api/v1/reports/coordination" in spec["paths"]
    assert "post" in spec["paths"]["/api/v1/needs/mappings"]
