"""Report downloads: a JSON report flattened to rows, written as CSV or XLSX.

CSV is written the way Danish Excel opens it by double-click: UTF-8 with a byte-order mark (so
æ, ø and å survive), ``;`` between fields, CRLF line ends, decimals with a comma. XLSX has a
header row (bold, frozen, with filters) and a second sheet describing the report. In both, a
suppressed figure is an empty cell and the ``suppressed`` column says why.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

import xlsxwriter

CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TOTAL = "total"
ALL_GROUPS_LABEL = "I alt"
ALL_NEEDS_LABEL = "Alle behov"

_FIGURES = (
    "companies",
    "approaches",
    "previous_companies",
    "previous_approaches",
    "change_companies",
    "change_approaches",
    "suppressed",
    "previous_suppressed",
)
COMPETENCE_NEEDS_COLUMNS = (
    "area",
    "period_from",
    "period_to",
    "group_by",
    "group",
    "group_label",
    "need_type",
    "need_type_label",
    "need_code",
    "need_label",
    *_FIGURES,
)


@dataclasses.dataclass(frozen=True)
class FlatReport:
    """A report as one table: ``columns`` name the values of every row; ``about`` describes the
    report (area, period, suppression rule) for the XLSX description sheet."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    about: Mapping[str, str]


def flatten_competence_needs(report: Mapping[str, Any]) -> FlatReport:
    """One row per need and group, then per need over all groups (group ``total``), per group
    over all needs (need code ``total``), and the grand total."""
    rows = []
    for need in report["needs"]:
        for cell in need["cells"]:
            rows.append(_row(report, cell, need, cell))
        rows.append(_row(report, None, need, need))
    for group in report["groups"]:
        rows.append(_row(report, group, None, group))
    rows.append(_row(report, None, None, report["total"]))
    return FlatReport("Kompetencebehov", COMPETENCE_NEEDS_COLUMNS, rows, _about(report))


def _row(report: Mapping, group: Mapping | None, need: Mapping | None, figure: Mapping) -> tuple:
    return (
        report["area"]["id"],
        report["period"]["from"],
        report["period"]["to"],
        report["group_by"],
        group["group"] if group else TOTAL,
        group["group_label"] if group else ALL_GROUPS_LABEL,
        need["need_type"] if need else "",
        need["need_type_label"] if need else "",
        need["code"] if need else TOTAL,
        need["label"] if need else ALL_NEEDS_LABEL,
        *(figure[name] for name in _FIGURES),
    )


def _about(report: Mapping[str, Any]) -> dict[str, str]:
    return {
        "Område": f"{report['area']['name']} ({report['area']['id']})",
        "Kommuner": ", ".join(report["area"]["municipalities"]),
        "Periode": f"{report['period']['from']} - {report['period']['to']}",
        "Forrige periode": (
            f"{report['previous_period']['from']} - {report['previous_period']['to']}"
        ),
        "Grupperet efter": report["group_by"],
        "Diskretionering": report["suppression"]["rule"],
    }


def to_csv(flat: FlatReport) -> bytes:
    """The table as CSV for Excel: UTF-8 with BOM, ``;``-separated, a header row."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(flat.columns)
    writer.writerows([_csv_value(value) for value in row] for row in flat.rows)
    return buffer.getvalue().encode("utf-8-sig")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).replace(".", ",")  # Danish Excel reads a comma as the decimal mark
    return str(value)


def to_xlsx(flat: FlatReport) -> bytes:
    """The table as an XLSX workbook: the rows under a header row, and a sheet "Om rapporten"."""
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    bold = workbook.add_format({"bold": True})
    sheet = workbook.add_worksheet(flat.title[:31])
    sheet.write_row(0, 0, flat.columns, bold)
    for number, row in enumerate(flat.rows, start=1):
        _write_row(sheet, number, row)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(flat.rows), 1), len(flat.columns) - 1)
    about = workbook.add_worksheet("Om rapporten")
    about.set_column(0, 0, 20)
    about.set_column(1, 1, 100)
    for number, (key, value) in enumerate(flat.about.items()):
        about.write_string(number, 0, key, bold)
        about.write_string(number, 1, value)
    workbook.close()
    return buffer.getvalue()


def _write_row(sheet, number: int, row: Sequence[Any]) -> None:
    for column, value in enumerate(row):
        if value is None:
            continue  # a suppressed figure stays an empty cell
        if isinstance(value, bool):
            sheet.write_boolean(number, column, value)
        elif isinstance(value, int | float):
            sheet.write_number(number, column, value)
        else:
            sheet.write_string(number, column, str(value))
