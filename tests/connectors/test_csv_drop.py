"""The csv-drop connector against small files written into a temporary drop folder."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError

import connectors.csv_drop
from connectors.base import Batch, FatalError, NeedRef, PersonRef, SourceSettings
from connectors.csv_drop import COLUMNS, CsvDropConnector, CsvDropOptions

SAMPLES = Path("/work/shared/samples")

GOOD = {
    "KontaktID": "1001",
    "Dato": "03-03-2026",
    "CVR": "DK-12 34 56 78",
    "PNummer": "1012345678",
    "Virksomhed": "Søren Bæk Ålborg ApS",
    "Adresse": "Åboulevarden 7",
    "Postnr": "8000",
    "By": "Aarhus C",
    "Kontaktform": "Besøg",
    "Formål": "Drøftelse af rekruttering",
    "Kontaktperson": "Åse Ærø",
    "KontaktpersonEmail": "aase@example.dk",
    "KontaktpersonTelefon": "31124567",
    "Medarbejder": "Jørgen Konsulent",
    "MedarbejderEmail": "jk@jobcenter.example.dk",
    "Rekrutteringsbehov": "7212|Svejser ",
    "Kompetencebehov": "Truckcertifikat| Førstehjælp",
    "KoordineretMed": "VEU-center Østjylland|Væksthus Midtjylland",
    "Status": "Aktiv",
    "Note": "Ønsker opfølgning i maj",
}


# --- helpers ----------------------------------------------------------------------------------


def row(**changes: str) -> dict[str, str]:
    return {**GOOD, **changes}


def csv_bytes(
    rows: list[dict[str, str]],
    columns: list[str] | tuple[str, ...] = COLUMNS,
    encoding: str = "utf-8",
    newline: str = "\r\n",
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", quotechar='"', lineterminator=newline)
    writer.writerow(columns)
    for values in rows:
        writer.writerow([values.get(c, "") for c in columns])
    return out.getvalue().encode(encoding)


def drop(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def connector(folder: Path, **options: Any) -> CsvDropConnector:
    loaded = CsvDropOptions().load({"path": str(folder), **options})
    return CsvDropConnector(SourceSettings(name="jobcenter-test", options=loaded, secrets={}))


def run(conn: CsvDropConnector, state: dict[str, Any] | None = None) -> list[Batch]:
    return list(conn.read(state))


def records(batches: list[Batch]) -> list[Any]:
    return [r for b in batches for r in b.records]


def rejected(batches: list[Batch]) -> list[Any]:
    return [r for b in batches for r in b.rejected]


def read_one(tmp_path: Path, content: bytes, **options: Any) -> list[Batch]:
    drop(tmp_path, "virksomhedskontakter_1.csv", content)
    return run(connector(tmp_path, **options))


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# --- encodings and layout ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8-sig", "utf-8"])
def test_danish_letters_survive_every_encoding(tmp_path: Path, encoding: str) -> None:
    content = csv_bytes([row()], encoding=encoding)
    if encoding == "utf-8-sig":
        assert content.startswith(b"\xef\xbb\xbf")
    batches = read_one(tmp_path, content)
    [record] = records(batches)
    assert rejected(batches) == []
    assert record.company.name == "Søren Bæk Ålborg ApS"
    assert record.company.address == "Åboulevarden 7"
    assert record.purpose == "Drøftelse af rekruttering"  # the header "Formål" matched too
    assert record.contact_person == PersonRef("Åse Ærø", "aase@example.dk", "31124567")
    assert record.raw["Virksomhed"] == "Søren Bæk Ålborg ApS"


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_crlf_and_lf_line_ends(tmp_path: Path, newline: str) -> None:
    content = csv_bytes([row(), row(KontaktID="1002")], newline=newline)
    batches = read_one(tmp_path, content)
    assert [r.source_id for r in records(batches)] == ["1001", "1002"]
    assert records(batches)[1].notes == "Ønsker opfølgning i maj"  # no stray "\r"


def test_a_file_mixing_utf8_and_cp1252_lines_reads_both(tmp_path: Path) -> None:
    utf8 = csv_bytes([row()])
    cp1252_line = csv_bytes([row(KontaktID="1002", Virksomhed="Må Øl ApS")], encoding="cp1252")
    content = utf8 + cp1252_line.split(b"\r\n", 1)[1]
    got = {r.source_id: r.company.name for r in records(read_one(tmp_path, content))}
    assert got == {"1001": "Søren Bæk Ålborg ApS", "1002": "Må Øl ApS"}


def test_reordered_columns(tmp_path: Path) -> None:
    content = csv_bytes([row()], columns=list(reversed(COLUMNS)))
    [record] = records(read_one(tmp_path, content))
    assert record.source_id == "1001"
    assert record.approach_date == dt.date(2026, 3, 3)
    assert record.channel == "visit"


def test_unknown_extra_column_is_ignored_but_kept_in_raw(tmp_path: Path) -> None:
    content = csv_bytes([row(Afdeling="Syd")], columns=[*COLUMNS[:3], "Afdeling", *COLUMNS[3:]])
    [record] = records(read_one(tmp_path, content))
    assert record.company.cvr == "DK-12 34 56 78"
    assert record.raw["Afdeling"] == "Syd"


def test_header_names_are_matched_after_stripping_spaces(tmp_path: Path) -> None:
    header, body = csv_bytes([row()]).split(b"\r\n", 1)
    content = b";".join(b" %s\t" % name for name in header.split(b";")) + b"\r\n" + body
    [record] = records(read_one(tmp_path, content))
    assert record.source_id == "1001"


def test_columns_option_maps_other_header_names(tmp_path: Path) -> None:
    names = {"KontaktID": "Id", "Dato": "Kontaktdato", "Virksomhed": "Firmanavn"}
    columns = [names.get(c, c) for c in COLUMNS]
    content = csv_bytes([{names.get(k, k): v for k, v in row().items()}], columns=columns)
    [record] = records(read_one(tmp_path, content, columns=names))
    assert (record.source_id, record.company.name) == ("1001", "Søren Bæk Ålborg ApS")


def test_columns_option_refuses_unknown_canonical_names(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        CsvDropOptions().load({"path": str(tmp_path), "columns": {"Kontakt": "Id"}})


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        CsvDropOptions().load({"path": str(tmp_path), "delimiter": ","})
    settings = SourceSettings(name="x", options={"path": str(tmp_path), "x": 1}, secrets={})
    with pytest.raises(FatalError):
        CsvDropConnector(settings)


def test_option_defaults() -> None:
    options = CsvDropOptions().load({"path": "/drop"})
    assert options["pattern"] == "virksomhedskontakter_*.csv"
    assert options["batch_size"] == 2000
    assert options["archive_path"] is None


# --- mapping ----------------------------------------------------------------------------------


def test_full_row_maps_every_field(tmp_path: Path) -> None:
    [record] = records(read_one(tmp_path, csv_bytes([row()])))
    assert record.status == "completed"
    assert record.company.cvr == "DK-12 34 56 78"  # as delivered; validated downstream
    assert record.company.p_number == "1012345678"
    assert (record.company.postcode, record.company.city) == ("8000", "Aarhus C")
    assert record.consultant == PersonRef("Jørgen Konsulent", "jk@jobcenter.example.dk")
    assert record.needs == (
        NeedRef(type="recruitment", label="7212", code="7212"),
        NeedRef(type="recruitment", label="Svejser", code=None),
        NeedRef(type="upskilling", label="Truckcertifikat"),
        NeedRef(type="upskilling", label="Førstehjælp"),
    )
    assert record.joint_with == ("VEU-center Østjylland", "Væksthus Midtjylland")
    assert record.modified_at is None
    assert record.raw["_file"] == "virksomhedskontakter_1.csv"
    assert record.raw["KontaktID"] == "1001"


def test_empty_cells_become_none(tmp_path: Path) -> None:
    empty = dict.fromkeys(COLUMNS, "  ")
    content = csv_bytes([{**empty, "KontaktID": "7", "Dato": "01-03-2026", "CVR": "12345678"}])
    [record] = records(read_one(tmp_path, content))
    assert record.company.name is None and record.company.p_number is None
    assert record.channel is None and record.purpose is None and record.notes is None
    assert record.contact_person is None and record.consultant is None
    assert record.needs == () and record.joint_with == ()
    assert record.status == "completed"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Annulleret", "cancelled"),
        ("ANNULLERET", "cancelled"),
        ("aktiv", "completed"),
        ("", "completed"),
    ],
)
def test_status(tmp_path: Path, status: str, expected: str) -> None:
    [record] = records(read_one(tmp_path, csv_bytes([row(Status=status)])))
    assert record.status == expected


def test_unknown_status_is_rejected(tmp_path: Path) -> None:
    batches = read_one(tmp_path, csv_bytes([row(Status="Slettet")]))
    [bad] = rejected(batches)
    assert "Status" in bad.reason and "Slettet" in bad.reason
    assert bad.source_id == "1001"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("03-03-2026", dt.date(2026, 3, 3)),
        ("03.03.2026", dt.date(2026, 3, 3)),
        ("3-3-2026", dt.date(2026, 3, 3)),
        ("03-03-2026 14:30", dt.date(2026, 3, 3)),
        ("03.03.2026 09.15", dt.date(2026, 3, 3)),
        ("03-03-2026 14:30:59", dt.date(2026, 3, 3)),
        ("29-02-2028", dt.date(2028, 2, 29)),
    ],
)
def test_date_forms(tmp_path: Path, value: str, expected: dt.date) -> None:
    [record] = records(read_one(tmp_path, csv_bytes([row(Dato=value)])))
    assert record.approach_date == expected


@pytest.mark.parametrize(
    "value",
    ["31-02-2026", "29-02-2026", "03-13-2026", "2026-03-03", "03-03.2026", "03-03-2026 25:00", ""],
)
def test_bad_date_is_rejected_and_the_rest_of_the_file_is_read(tmp_path: Path, value: str) -> None:
    content = csv_bytes([row(KontaktID="1"), row(KontaktID="2", Dato=value), row(KontaktID="3")])
    batches = read_one(tmp_path, content)
    assert [r.source_id for r in records(batches)] == ["1", "3"]
    [bad] = rejected(batches)
    assert bad.source_id == "2"
    assert "Dato" in bad.reason and "line 3" in bad.reason
    if value:
        assert value in bad.reason
    assert bad.raw["Dato"] == value and bad.raw["_file"] == "virksomhedskontakter_1.csv"


def test_missing_name_and_cvr_is_rejected(tmp_path: Path) -> None:
    content = csv_bytes([row(Virksomhed="", CVR=" "), row(KontaktID="2", Virksomhed="", CVR="x")])
    batches = read_one(tmp_path, content)
    [bad] = rejected(batches)
    assert "no company identification" in bad.reason
    assert [r.source_id for r in records(batches)] == ["2"]  # a CVR alone identifies


def test_missing_kontakt_id_is_rejected(tmp_path: Path) -> None:
    [bad] = rejected(read_one(tmp_path, csv_bytes([row(KontaktID=" ")])))
    assert "KontaktID" in bad.reason


@pytest.mark.parametrize(
    ("spelling", "channel"),
    [
        ("Besøg", "visit"),
        ("besoeg", "visit"),
        ("BESØG", "visit"),
        ("besog", "visit"),
        ("Telefon", "phone"),
        ("tlf", "phone"),
        ("Møde", "meeting"),
        ("moede", "meeting"),
        ("E-mail", "email"),
        ("email", "email"),
        ("mail", "email"),
        ("Virtuelt", "online"),
        ("virtuel", "online"),
        ("online", "online"),
        ("Teams", "online"),
    ],
)
def test_kontaktform_spellings(tmp_path: Path, spelling: str, channel: str) -> None:
    [record] = records(read_one(tmp_path, csv_bytes([row(Kontaktform=spelling)])))
    assert record.channel == channel


def test_unknown_kontaktform_is_rejected(tmp_path: Path) -> None:
    [bad] = rejected(read_one(tmp_path, csv_bytes([row(Kontaktform="Brevdue")])))
    assert "Kontaktform" in bad.reason and "Brevdue" in bad.reason


def test_too_long_field_is_rejected_by_the_record_check(tmp_path: Path) -> None:
    [bad] = rejected(read_one(tmp_path, csv_bytes([row(Note="x" * 20_001)])))
    assert "notes" in bad.reason


# --- broken files -----------------------------------------------------------------------------


def test_file_without_required_columns_rejects_every_row(tmp_path: Path) -> None:
    columns = [c for c in COLUMNS if c != "Dato"]
    batches = read_one(tmp_path, csv_bytes([row(), row(KontaktID="2")], columns=columns))
    assert records(batches) == []
    reasons = [r.reason for r in rejected(batches)]
    assert len(reasons) == 2
    assert all("required column" in reason and "Dato" in reason for reason in reasons)


def test_comma_separated_file_is_rejected_row_by_row(tmp_path: Path) -> None:
    content = b"KontaktID,Dato,Virksomhed\r\n1,01-03-2026,A\r\n"
    [bad] = rejected(read_one(tmp_path, content))
    assert "KontaktID" in bad.reason


def test_wrong_field_count_undecodable_and_huge_rows_are_rejected(tmp_path: Path) -> None:
    good = csv_bytes([row(KontaktID="1")])
    short = b"2;03-03-2026;12345678\r\n"
    undecodable = csv_bytes([row(KontaktID="3")]).split(b"\r\n", 1)[1].replace(b"7212", b"\x81\x8d")
    huge = b"4;" + b"x" * (2 * 1024 * 1024) + b"\r\n"
    last = csv_bytes([row(KontaktID="5")]).split(b"\r\n", 1)[1]
    batches = read_one(tmp_path, good + short + undecodable + huge + last)
    assert [r.source_id for r in records(batches)] == ["1", "5"]
    reasons = [r.reason for r in rejected(batches)]
    assert len(reasons) == 3
    assert "fields" in reasons[0]
    assert "neither UTF-8 nor Windows-1252" in reasons[1]
    assert "field larger than field limit" in reasons[2]
    assert "\ufffd" in rejected(batches)[1].raw["Rekrutteringsbehov"]  # storable raw
    assert sum(b.fetched for b in batches) == 5


def test_trailing_separator_on_data_rows_is_tolerated(tmp_path: Path) -> None:
    content = csv_bytes([row()]).rstrip(b"\r\n") + b";\r\n"
    [record] = records(read_one(tmp_path, content))
    assert record.notes == "Ønsker opfølgning i maj"


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    content = csv_bytes([row()]) + b"\r\n;;;\r\n   \r\n"
    batches = read_one(tmp_path, content)
    assert len(records(batches)) == 1 and rejected(batches) == []


def test_empty_file_is_marked_processed(tmp_path: Path) -> None:
    batches = read_one(tmp_path, b"")
    assert len(batches) == 1
    assert batches[0].records == [] and batches[0].rejected == []
    assert batches[0].state == {"files": {sha(b""): "virksomhedskontakter_1.csv"}}


def test_a_first_read_of_an_empty_folder_leaves_a_cursor(tmp_path: Path) -> None:
    first = run(connector(tmp_path))
    assert [(b.records, b.rejected, b.state) for b in first] == [([], [], {"files": {}})]
    assert run(connector(tmp_path), first[-1].state) == []  # later runs: nothing to store
    content = csv_bytes([row()])
    drop(tmp_path, "virksomhedskontakter_1.csv", content)
    [batch] = run(connector(tmp_path), first[-1].state)
    assert len(batch.records) == 1
    assert batch.state == {"files": {sha(content): "virksomhedskontakter_1.csv"}}


# --- state, order, partitions -----------------------------------------------------------------


def test_identical_file_dropped_again_is_skipped(tmp_path: Path) -> None:
    content = csv_bytes([row()])
    drop(tmp_path, "virksomhedskontakter_1.csv", content)
    conn = connector(tmp_path)
    first = run(conn)
    assert first[-1].state == {"files": {sha(content): "virksomhedskontakter_1.csv"}}
    assert run(conn, first[-1].state) == []
    # The same content under another name is the same delivery.
    drop(tmp_path, "virksomhedskontakter_2.csv", content)
    assert run(conn, first[-1].state) == []
    assert len(records(run(conn, None))) == 1  # without state: read once, the copy skipped


def test_delta_file_yields_the_updated_row_again(tmp_path: Path) -> None:
    drop(tmp_path, "virksomhedskontakter_20260301.csv", csv_bytes([row(), row(KontaktID="2")]))
    conn = connector(tmp_path)
    state = run(conn)[-1].state
    drop(tmp_path, "virksomhedskontakter_20260901.csv", csv_bytes([row(Status="Annulleret")]))
    batches = run(conn, state)
    [record] = records(batches)
    assert (record.source_id, record.status) == ("1001", "cancelled")
    assert record.raw["_file"] == "virksomhedskontakter_20260901.csv"
    assert len(batches[-1].state["files"]) == 2


def test_files_are_read_in_name_order_one_file_per_batch(tmp_path: Path) -> None:
    for n in (3, 1, 2):
        path = drop(tmp_path, f"virksomhedskontakter_{n}.csv", csv_bytes([row(KontaktID=str(n))]))
        os.utime(path, (1_000_000 - n, 1_000_000 - n))  # mtime order opposite to name order
    drop(tmp_path, "andet_4.csv", csv_bytes([row(KontaktID="4")]))  # not matching the pattern
    batches = run(connector(tmp_path))
    assert [[r.source_id for r in b.records] for b in batches] == [["1"], ["2"], ["3"]]
    assert [len(b.state["files"]) for b in batches] == [1, 2, 3]


def test_only_the_last_batch_of_a_file_carries_its_hash(tmp_path: Path) -> None:
    first = csv_bytes([row(KontaktID=str(n)) for n in range(5)])
    second = csv_bytes([row(KontaktID=str(n)) for n in range(10, 13)])
    drop(tmp_path, "virksomhedskontakter_1.csv", first)
    drop(tmp_path, "virksomhedskontakter_2.csv", second)
    start = {"files": {"0" * 64: "virksomhedskontakter_0.csv"}}
    batches = run(connector(tmp_path, batch_size=2), start)
    assert [len(b.records) for b in batches] == [2, 2, 1, 2, 1]
    assert [b.fetched for b in batches] == [2, 2, 1, 2, 1]
    after_first = {**start["files"], sha(first): "virksomhedskontakter_1.csv"}
    after_second = {**after_first, sha(second): "virksomhedskontakter_2.csv"}
    assert [b.state["files"] for b in batches] == [
        start["files"],
        start["files"],
        after_first,
        after_first,
        after_second,
    ]
    # A crash after the second batch: the stored state makes the next run read file 1 again.
    again = run(connector(tmp_path, batch_size=2), batches[1].state)
    assert len(records(again)) == 8
    assert start == {"files": {"0" * 64: "virksomhedskontakter_0.csv"}}  # input not mutated


def test_exact_multiple_of_batch_size_has_no_empty_tail(tmp_path: Path) -> None:
    content = csv_bytes([row(KontaktID=str(n)) for n in range(4)])
    batches = read_one(tmp_path, content, batch_size=2)
    assert [len(b.records) for b in batches] == [2, 2]
    assert batches[0].state == {"files": {}}
    assert sha(content) in batches[1].state["files"]


# --- streaming: memory and files that change or fail while read ------------------------------


def test_a_large_file_is_read_in_memory_bounded_by_the_batch_not_the_file(tmp_path: Path) -> None:
    # 4,000 rows with a 2 KB note each: an 8.5 MB file, several hashing chunks.
    note = "Lang note om virksomhedens behov. " * 60
    content = csv_bytes([row(KontaktID=str(n), Note=note) for n in range(4000)])
    drop(tmp_path, "virksomhedskontakter_1.csv", content)
    conn = connector(tmp_path, batch_size=20)
    count, last_state = 0, None
    tracemalloc.start()
    try:
        for batch in conn.read(None):  # each batch dropped before the next, as the engine does
            count += len(batch.records)
            last_state = batch.state
            del batch
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4000
    assert last_state == {"files": {sha(content): "virksomhedskontakter_1.csv"}}
    # Reading the file whole held its bytes and its decoded lines: over twice its size.
    assert len(content) > 8_000_000
    assert peak < len(content) / 8


def test_a_file_that_fails_half_way_is_not_marked_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = csv_bytes([row(KontaktID=str(n)) for n in range(5)])
    path = drop(tmp_path, "virksomhedskontakter_1.csv", content)
    real_open = Path.open
    opened = []

    def failing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        opened.append(self)
        if self != path or len(opened) < 2:  # the hashing pass reads it whole
            return handle
        return _FailingAfter(handle, lines=3)  # the header and two rows, then EIO

    monkeypatch.setattr(Path, "open", failing_open)
    batches = run(connector(tmp_path, batch_size=10))
    assert [r.source_id for r in records(batches)] == ["0", "1"]
    [failure] = rejected(batches)
    assert "cannot read file virksomhedskontakter_1.csv" in failure.reason
    assert [b.state for b in batches] == [{"files": {}}]  # read again next run
    monkeypatch.undo()
    again = run(connector(tmp_path, batch_size=10), batches[-1].state)
    assert len(records(again)) == 5
    assert again[-1].state == {"files": {sha(content): "virksomhedskontakter_1.csv"}}


class _FailingAfter:
    """A binary file whose iteration raises EIO after ``lines`` lines."""

    def __init__(self, handle: Any, lines: int) -> None:
        self.handle, self.left = handle, lines

    def __enter__(self) -> _FailingAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def __iter__(self) -> _FailingAfter:
        return self

    def __next__(self) -> bytes:
        if self.left == 0:
            raise OSError(5, "Input/output error")
        self.left -= 1
        return next(self.handle)


def test_a_file_rewritten_between_hashing_and_parsing_is_stored_under_the_parsed_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = csv_bytes([row(KontaktID="1")])
    second = csv_bytes([row(KontaktID="2")])
    path = drop(tmp_path, "virksomhedskontakter_1.csv", first)
    real_digest = connectors.csv_drop._file_digest

    def digest_then_rewrite(target: Path) -> Any:
        digest = real_digest(target)
        path.write_bytes(second)  # the exporter was still writing
        return digest

    monkeypatch.setattr(connectors.csv_drop, "_file_digest", digest_then_rewrite)
    batches = run(connector(tmp_path))
    assert [r.source_id for r in records(batches)] == ["2"]
    assert batches[-1].state == {"files": {sha(second): "virksomhedskontakter_1.csv"}}


# --- archive and the untouched folder ---------------------------------------------------------


def test_without_archive_files_are_left_untouched(tmp_path: Path) -> None:
    content = csv_bytes([row()])
    path = drop(tmp_path, "virksomhedskontakter_1.csv", content)
    os.utime(path, (1_000_000, 1_000_000))
    before = sorted(p.name for p in tmp_path.iterdir())
    run(connector(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert path.read_bytes() == content
    assert path.stat().st_mtime == 1_000_000


def test_archive_moves_a_file_once_its_last_batch_was_taken(tmp_path: Path) -> None:
    drop_dir, archive = tmp_path / "drop", tmp_path / "archive"
    drop_dir.mkdir()
    archive.mkdir()
    content = csv_bytes([row(KontaktID=str(n)) for n in range(3)])
    drop(drop_dir, "virksomhedskontakter_1.csv", content)
    reader = connector(drop_dir, archive_path=str(archive), batch_size=2).read(None)
    next(reader)
    last = next(reader)
    assert sha(content) in last.state["files"]
    # The engine has the last batch but has not stored it yet: the file is still there.
    assert (drop_dir / "virksomhedskontakter_1.csv").exists()
    assert list(reader) == []  # resumed after storing: now it moves
    assert not (drop_dir / "virksomhedskontakter_1.csv").exists()
    assert (archive / "virksomhedskontakter_1.csv").read_bytes() == content


def test_archive_never_overwrites_and_moves_already_stored_files(tmp_path: Path) -> None:
    drop_dir, archive = tmp_path / "drop", tmp_path / "archive"
    drop_dir.mkdir()
    archive.mkdir()
    (archive / "virksomhedskontakter_1.csv").write_bytes(b"older")
    content = csv_bytes([row()])
    drop(drop_dir, "virksomhedskontakter_1.csv", content)
    # Stored before, but the move did not happen (e.g. the process stopped right after storing).
    state = {"files": {sha(content): "virksomhedskontakter_1.csv"}}
    assert run(connector(drop_dir, archive_path=str(archive)), state) == []
    assert list(drop_dir.iterdir()) == []
    assert (archive / "virksomhedskontakter_1.csv").read_bytes() == b"older"
    [moved] = [p for p in archive.iterdir() if p.name != "virksomhedskontakter_1.csv"]
    assert moved.read_bytes() == content and moved.suffix == ".csv"


def test_missing_folder_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="does not exist"):
        run(connector(tmp_path / "nowhere"))


def test_missing_archive_folder_is_fatal(tmp_path: Path) -> None:
    drop(tmp_path, "virksomhedskontakter_1.csv", csv_bytes([row()]))
    with pytest.raises(FatalError, match="archive"):
        run(connector(tmp_path, archive_path=str(tmp_path / "nowhere")))
    assert (tmp_path / "virksomhedskontakter_1.csv").exists()


def test_malformed_state_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="state"):
        run(connector(tmp_path), {"files": ["not", "a", "mapping"]})


# --- the shipped samples ----------------------------------------------------------------------


def data_rows(folder: Path) -> int:
    """Non-blank lines after the header, counted independently of the connector."""
    total = 0
    for path in folder.glob("virksomhedskontakter_*.csv"):
        lines = [line for line in path.read_bytes().splitlines()[1:] if line.strip(b"; ")]
        total += len(lines)
    return total


@pytest.mark.parametrize(
    ("source", "expected_reason"),
    [
        ("jobcenter-aarhus", "31-02-2026"),
        ("jobcenter-herning", "no company identification"),
        ("jobcenter-randers", None),  # its shipped files hold only headers
    ],
)
def test_shipped_samples_read_without_crashing(source: str, expected_reason: str | None) -> None:
    folder = SAMPLES / source
    assert folder.is_dir(), f"the shared samples are expected beside the project: {folder}"
    batches = run(connector(folder))
    assert len(batches) == 2  # one partition per file
    assert len(batches[-1].state["files"]) == 2
    assert sum(b.fetched for b in batches) == data_rows(folder)
    assert len(records(batches)) + len(rejected(batches)) == data_rows(folder)
    bad = rejected(batches)
    if expected_reason is None:
        assert bad == []
    else:
        [only] = bad
        assert expected_reason in only.reason
        assert only.raw["_file"] == "virksomhedskontakter_20260901.csv"


def test_shipped_samples_are_left_untouched() -> None:
    folder = SAMPLES / "jobcenter-herning"
    assert folder.is_dir(), f"the shared samples are expected beside the project: {folder}"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime) for p in folder.iterdir()}
    run(connector(folder))
    assert {p.name: (p.read_bytes(), p.stat().st_mtime) for p in folder.iterdir()} == before
