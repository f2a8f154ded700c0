"""Fuzzing the csv-drop connector: whatever lands in the folder, ``read()`` never raises and
every data row comes out as a record or a Rejected."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Batch, SourceRecordData, SourceSettings, record_problems
from connectors.csv_drop import COLUMNS, FIELD_SIZE_LIMIT, CsvDropConnector, CsvDropOptions

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no example database in the source tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252")
# Cells without separators, quotes or line breaks, so each generated row is one CSV row.
CELL_ALPHABET = "abcæøåÆØÅé0123456789 -.:|@"
HEADER = ";".join(COLUMNS)

cells = st.text(alphabet=CELL_ALPHABET, max_size=12) | st.sampled_from(
    ["31-02-2026", "01-03-2026", "01.03.2026 10:00", "Besøg", "mail", "Annulleret", "7212"]
)

PLAUSIBLE = {
    "KontaktID": st.integers(1, 99999).map(str),
    "Dato": st.sampled_from(["01-03-2026", "1.3.2026", "29-02-2028 08:00", "31-02-2026"]),
    "Virksomhed": st.sampled_from(["Bæk & Søn ApS", "Ålborg Smed", ""]),
    "Kontaktform": st.sampled_from(["Besøg", "BESOEG", "tlf", "E-mail", "teams", "Fax", ""]),
    "Status": st.sampled_from(["", "Aktiv", "annulleret", "Slettet"]),
    "Rekrutteringsbehov": st.sampled_from(["7212|Svejser", "", "|"]),
}


def plausible_cell(column: str) -> st.SearchStrategy[str]:
    return PLAUSIBLE.get(column, cells)


def read_all(content: bytes, batch_size: int = 3) -> list[Batch]:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "virksomhedskontakter_fuzz.csv").write_bytes(content)
        options = CsvDropOptions().load({"path": folder, "batch_size": batch_size})
        conn = CsvDropConnector(SourceSettings(name="fuzz", options=options, secrets={}))
        return list(conn.read(None))


def check_invariants(batches: list[Batch]) -> tuple[int, int]:
    """Every batch is well-formed; returns (records, rejected)."""
    assert batches, "a file always yields at least one batch, to store its hash"
    assert len(batches[-1].state["files"]) == 1
    assert all(b.state == {"files": {}} for b in batches[:-1])
    for batch in batches:
        assert batch.fetched == len(batch.records) + len(batch.rejected)
        for record in batch.records:
            assert isinstance(record, SourceRecordData)
            assert record_problems(record) is None
        for bad in batch.rejected:
            assert bad.reason
            assert bad.raw["_file"] == "virksomhedskontakter_fuzz.csv"
            # Quarantined raw content must be storable as UTF-8 text.
            for value in bad.raw.values():
                str(value).encode("utf-8")
                assert "\x00" not in str(value)
    return sum(len(b.records) for b in batches), sum(len(b.rejected) for b in batches)


@FUZZ
@given(
    body=st.binary(max_size=2000),
    with_header=st.booleans(),
    encoding=st.sampled_from(ENCODINGS),
)
def test_random_bytes_never_raise(body: bytes, with_header: bool, encoding: str) -> None:
    prefix = (HEADER + "\r\n").encode(encoding) if with_header else b""
    check_invariants(read_all(prefix + body))


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A file of random row shapes in mixed encodings; returns it and its data-row count."""
    columns = draw(st.permutations(COLUMNS))
    columns = columns[: draw(st.integers(1, len(columns)))]  # a header is never blank
    if draw(st.booleans()):  # mostly-usable files, so that the record path is fuzzed too
        columns = ["KontaktID", "Dato", "Virksomhed"] + [
            c for c in columns if c not in ("KontaktID", "Dato", "Virksomhed")
        ]
    columns += draw(st.lists(st.sampled_from(["Ekstra", "Afdeling", ""]), max_size=2))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    lines = [";".join(columns).encode(draw(st.sampled_from(ENCODINGS)))]
    expected = 0
    for _ in range(draw(st.integers(0, 8))):
        width = draw(st.sampled_from([len(columns), len(columns), len(columns) + 1, 1, 3]))
        if width == len(columns) and draw(st.booleans()):
            row = [draw(plausible_cell(column)) for column in columns]
        else:
            row = draw(st.lists(cells, min_size=width, max_size=width))
        if row and draw(st.integers(0, 9)) == 0:
            row[draw(st.integers(0, len(row) - 1))] = "x" * (FIELD_SIZE_LIMIT + 1)
        # Each line in its own encoding: exports pasted together.
        encoding = draw(st.sampled_from(ENCODINGS[::2]))
        lines.append(";".join(row).encode(encoding))
        expected += any(cell.strip() for cell in row)
    return newline.encode().join(lines) + newline.encode(), expected


@FUZZ
@given(file=csv_files(), batch_size=st.integers(1, 4))
def test_every_data_row_becomes_a_record_or_a_rejected(
    file: tuple[bytes, int], batch_size: int
) -> None:
    content, expected = file
    found, bad = check_invariants(read_all(content, batch_size))
    assert found + bad == expected


@FUZZ
@given(file=csv_files(), cut=st.integers(0, 10_000), junk=st.binary(max_size=20))
def test_truncated_and_corrupted_files_never_raise(
    file: tuple[bytes, int], cut: int, junk: bytes
) -> None:
    content, _ = file
    cut = min(cut, len(content))
    check_invariants(read_all(content[:cut] + junk))


@FUZZ
@given(
    names=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5),
    rows=st.lists(st.lists(st.text(max_size=10), max_size=6), max_size=6),
    encoding=st.sampled_from(ENCODINGS),
)
def test_arbitrary_text_with_quotes_and_line_breaks_never_raises(
    names: list[str], rows: list[list[str]], encoding: str
) -> None:
    text = "\r\n".join(";".join(r) for r in [names, *rows])
    content = text.encode(encoding, errors="replace")
    check_invariants(read_all(content))
