"""Small builders shared by tests: jobcentre CSV drops and configurations around them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from sqlalchemy import select
from sqlmodel import SQLModel

from connectors.base import load_registry
from connectors.csv_drop import COLUMNS
from coordination.config import Config, parse_config

CSV_HEADER = list(COLUMNS)


def csv_row(**values: str) -> dict[str, str]:
    """A jobcentre row with sensible defaults; pass columns by their header names."""
    row = {name: "" for name in CSV_HEADER}
    row.update(
        {
            "Dato": "01-09-2026",
            "Virksomhed": "Østjysk Robotteknik ApS",
            "Postnr": "8680",
            "By": "Ry",
            "Kontaktform": "Besøg",
            "Medarbejder": "Jørgen Møller",
            "MedarbejderEmail": "jm@aarhus.dk",
        }
    )
    row.update(values)
    return row


def write_csv(
    folder: Path, name: str, rows: Iterable[Mapping[str, str]], encoding: str = "utf-8-sig"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [";".join(CSV_HEADER)]
    lines += [";".join(row.get(column, "") for column in CSV_HEADER) for row in rows]
    path = folder / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def csv_config(db_url: str, folders: Mapping[str, Path], **rules: int) -> Config:
    """A configuration with one csv-drop source per (organisation name → folder)."""
    sources = [
        {
            "name": f"jobcenter-{index}",
            "kind": "csv-drop",
            "organisation": organisation,
            "organisation_type": "jobcenter",
            "path": str(folder),
        }
        for index, (organisation, folder) in enumerate(folders.items(), start=1)
    ]
    raw = {"database": {"url": db_url}, "rules": dict(rules), "sources": sources}
    return parse_config(raw, {}, load_registry())


def text_in_database(engine, needle: str) -> list[str]:
    """Every table.column whose text (or JSON text) contains ``needle``."""
    import coordination.models  # noqa: F401  (registers the tables)

    hits = []
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for column in table.columns:
                rows = connection.execute(select(column).where(column.is_not(None))).scalars()
                for value in rows:
                    text = value if isinstance(value, str) else repr(value)
                    if needle.casefold() in text.casefold():
                        hits.append(f"{table.name}.{column.name}")
                        break
    return hits
