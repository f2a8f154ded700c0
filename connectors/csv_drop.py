"""`csv-drop`: jobcenter exports dropped as CSV files in a folder (spec: sources.md, section 2).

Each matching file is identified by the SHA-256 of its bytes and turned into batches. A file is
streamed, never held whole (a national export is hundreds of MB): one pass hashes it in chunks,
a second decodes and parses it line by line, so memory stays within a batch and the longest
line. The state is ``{"files": {<sha256>: <file name>}}``: a file whose content was stored
before is skipped, whatever its name. One file is one unit of progress: only the *last* batch
of a file carries the state with that file's hash (of the bytes the second pass parsed), so a
crash half-way through a file makes the next run read the whole file again (the engine
de-duplicates rows by content). A file that cannot be read to its end is not marked processed.

Nothing in a file stops the run: undecodable bytes, rows of the wrong shape, huge fields, bad
dates or unknown codes each become a :class:`Rejected` with a readable reason. Only a missing
folder (or an unreadable state) is fatal.

Archiving (option ``archive_path``): a file is moved into the archive folder once the engine has
resumed the generator after the file's last batch, i.e. after it stored that batch and its state.
A file whose hash is already in the state (stored, but the move did not happen, e.g. the process
stopped right after storing) is moved when it is next seen. Without ``archive_path`` files are
never modified, moved or deleted.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import itertools
import logging
import re
import shutil
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from connectors.base import (
    Batch,
    CompanyRef,
    Connector,
    FatalError,
    NeedRef,
    PersonRef,
    Rejected,
    SourceRecordData,
    SourceSettings,
    record_problems,
)

log = logging.getLogger(__name__)

# The csv module refuses fields over 128 KiB by default. A legitimate note can be long, so allow
# 1 MiB; anything larger raises csv.Error, which becomes a Rejected row. (The limit is
# process-wide; raising it is harmless for other readers.)
FIELD_SIZE_LIMIT = 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))

# Canonical column names are the spec's header names; ``columns`` maps them to a source's own.
COLUMNS = (
    "KontaktID",
    "Dato",
    "CVR",
    "PNummer",
    "Virksomhed",
    "Adresse",
    "Postnr",
    "By",
    "Kontaktform",
    "Formål",
    "Kontaktperson",
    "KontaktpersonEmail",
    "KontaktpersonTelefon",
    "Medarbejder",
    "MedarbejderEmail",
    "Rekrutteringsbehov",
    "Kompetencebehov",
    "KoordineretMed",
    "Status",
    "Note",
)
REQUIRED_COLUMNS = ("KontaktID", "Dato")

# Spellings seen in exports, after _fold(): lower case, æøå spelled out, only letters kept.
CHANNEL_SPELLINGS = {
    "besoeg": "visit",
    "besog": "visit",
    "telefon": "phone",
    "telefonisk": "phone",
    "tlf": "phone",
    "moede": "meeting",
    "mode": "meeting",
    "email": "email",
    "mail": "email",
    "virtuelt": "online",
    "virtuel": "online",
    "online": "online",
    "teams": "online",
}
STATUS_SPELLINGS = {"": "completed", "aktiv": "completed", "annulleret": "cancelled"}

# dd-mm-yyyy or dd.mm.yyyy (same separator twice), optionally a space and a time.
DATE_RE = re.compile(
    r"(?P<d>[0-9]{1,2})(?P<sep>[-.])(?P<m>[0-9]{1,2})(?P=sep)(?P<y>[0-9]{4})"
    r"(?: +(?P<hh>[0-9]{1,2})[:.](?P<mm>[0-9]{2})(?:[:.](?P<ss>[0-9]{2}))?)?"
)
DISCO_RE = re.compile(r"[0-9]{4}")
BOM = b"\xef\xbb\xbf"
READ_CHUNK = 64 * 1024  # bytes read at a time while hashing a file
# csv.reader gets lines decoded with surrogateescape, so bytes that no encoding accepted show up
# as lone surrogates; a row holding one is rejected.
UNDECODABLE_RE = re.compile("[\udc80-\udcff]")


class _ColumnsField(fields.Dict):
    """``columns``: canonical column name -> the header name this source uses."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            keys=fields.String(validate=validate.OneOf(COLUMNS)),
            values=fields.String(validate=validate.Length(min=1, max=200)),
            **kwargs,
        )


class CsvDropOptions(Schema):
    path = fields.String(required=True, validate=validate.Length(min=1))
    pattern = fields.String(load_default="virksomhedskontakter_*.csv", validate=validate.Length(1))
    archive_path = fields.String(load_default=None, allow_none=True)
    batch_size = fields.Integer(load_default=2000, validate=validate.Range(min=1, max=100_000))
    columns = _ColumnsField(load_default=dict)


class _RowError(Exception):
    """A row cannot be understood; the message is the quarantine reason."""


@dataclasses.dataclass
class _Header:
    names: list[str]  # header names as they appear (stripped), for raw
    index: dict[str, int]  # canonical column -> position
    missing: tuple[str, ...]  # required canonical columns the header lacks


class CsvDropConnector(Connector):
    kind = "csv-drop"
    options_schema = CsvDropOptions

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        # The configuration loader already validated the options; loading them again is
        # idempotent and fills in defaults when a connector is built directly (tests, tools).
        try:
            self.opts = CsvDropOptions().load(dict(settings.options))
        except ValidationError as exc:
            raise FatalError(f"invalid csv-drop options: {exc.messages}") from exc
        self.folder = Path(self.opts["path"])
        archive = self.opts["archive_path"]
        self.archive = Path(archive) if archive else None
        self.columns = {c: self.opts["columns"].get(c, c).strip() for c in COLUMNS}

    # --- the run ------------------------------------------------------------------------------

    def read(self, state: Mapping[str, Any] | None) -> Iterator[Batch]:
        delivered = False
        for batch in self._read(state):
            delivered = True
            yield batch
        if state is None and not delivered:
            # A first read of an empty folder still leaves a cursor: the engine reads a source
            # without one as never read (its whole history, in a reader process of its own), so
            # a jobcentre that has not delivered yet would otherwise be that every night.
            yield Batch(records=[], rejected=[], state={"files": {}})

    def _read(self, state: Mapping[str, Any] | None) -> Iterator[Batch]:
        files = _files_from_state(state)
        for path in self._candidates():
            digest = _file_digest(path)
            if digest is None:
                continue
            if isinstance(digest, Rejected):
                # Unreadable now; not marked as processed, so it is tried again next run.
                yield Batch(records=[], rejected=[digest], state={"files": dict(files)})
                continue
            if digest in files:
                self._archive(path)
                continue
            done = yield from self._file_batches(path, files)
            if done is None:  # vanished or unreadable half-way: tried again next run
                continue
            files = done
            # Reached only when the engine asks for more after storing the file's last batch.
            self._archive(path)

    def _candidates(self) -> list[Path]:
        if not self.folder.is_dir():
            raise FatalError(f"drop folder {self.folder} does not exist or is not a folder")
        if self.archive is not None and not self.archive.is_dir():
            raise FatalError(f"archive folder {self.archive} does not exist or is not a folder")
        try:
            paths = [p for p in self.folder.glob(self.opts["pattern"]) if p.is_file()]
        except OSError as exc:
            raise FatalError(f"cannot list drop folder {self.folder}: {exc}") from exc
        return sorted(paths, key=_name_then_mtime)

    def _file_batches(
        self, path: Path, before: dict[str, str]
    ) -> Generator[Batch, None, dict[str, str] | None]:
        """Batches of one file; only the last one carries the file marked done, which is also
        returned. None when the file could not be read to its end (it stays not done)."""
        reading = _Reading(path)
        outcomes = _file_outcomes(path.name, reading.lines(), self.columns)
        size = self.opts["batch_size"]
        chunk = list(itertools.islice(outcomes, size))
        # One outcome ahead, not one batch: enough to know whether this batch is the file's last.
        while (following := next(outcomes, None)) is not None:
            yield _batch(chunk, before)
            chunk = [following]  # the yielded batch is the engine's alone while this one fills
            chunk.extend(itertools.islice(outcomes, size - 1))
        if reading.error is not None:
            yield from _failed_batch(path, reading.error, chunk, before)
            return None
        after = {**before, reading.digest.hexdigest(): path.name}
        # An empty file still yields one (empty) batch, so that its hash is stored.
        yield _batch(chunk, after)
        return after

    def _archive(self, path: Path) -> None:
        if self.archive is None:
            return
        target = self.archive / path.name
        if target.exists():
            # Never overwrite an archived file: a later drop may reuse a name with new content.
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
            target = self.archive / f"{path.stem}.{stamp}{path.suffix}"
        try:
            shutil.move(path, target)
        except OSError as exc:
            # The file is stored and in the state, so it will not be read again; it only stays.
            log.warning("could not move %s to %s: %s", path, target, exc)


# --- files and state --------------------------------------------------------------------------


def _files_from_state(state: Mapping[str, Any] | None) -> dict[str, str]:
    files = (state or {}).get("files") or {}
    if not isinstance(files, Mapping):
        raise FatalError("csv-drop state is unreadable: 'files' is not a mapping")
    return {str(k): str(v) for k, v in files.items()}


def _name_then_mtime(path: Path) -> tuple[str, float]:
    try:
        return path.name, path.stat().st_mtime
    except OSError:
        return path.name, 0.0


def _file_digest(path: Path) -> str | Rejected | None:
    """SHA-256 of the file, read in chunks; None when it vanished since listing; Rejected when
    it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _unreadable(path, exc)
    return digest.hexdigest()


def _unreadable(path: Path, exc: OSError) -> Rejected:
    return Rejected(raw={"_file": path.name}, reason=f"cannot read file {path.name}: {exc}")


class _Reading:
    """One pass over a file: its lines as bytes, the SHA-256 of what was read, and the error
    that ended the pass early, if any (kept rather than raised, so that the rows read before
    it still come out as batches)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.error: OSError | None = None

    def lines(self) -> Iterator[bytes]:
        """The lines as ``bytes.splitlines(keepends=True)`` of the whole file would give them,
        a leading BOM dropped: a file line ends at b"\n", and within one only a lone b"\r"
        can still split it."""
        try:
            with self.path.open("rb") as handle:
                for number, line in enumerate(handle):
                    self.digest.update(line)
                    if number == 0 and line.startswith(BOM):
                        line = line[len(BOM) :]
                    yield from line.splitlines(keepends=True)
        except OSError as exc:
            self.error = exc


def _failed_batch(
    path: Path, error: OSError, pending: list[SourceRecordData | Rejected], files: dict[str, str]
) -> Iterator[Batch]:
    """The rows read before ``error``, and the error itself unless the file simply vanished;
    with the state before the file."""
    if isinstance(error, FileNotFoundError) and not pending:
        return
    batch = _batch(pending, files)
    if not isinstance(error, FileNotFoundError):
        batch.rejected.append(_unreadable(path, error))
    yield batch


def _batch(outcomes: list[SourceRecordData | Rejected], files: dict[str, str]) -> Batch:
    records = [o for o in outcomes if isinstance(o, SourceRecordData)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    return Batch(
        records=records, rejected=rejected, state={"files": dict(files)}, fetched=len(outcomes)
    )


# --- decoding and parsing ---------------------------------------------------------------------


def _decode_line(line: bytes) -> str:
    """Decode one line: UTF-8, else Windows-1252.

    Danish text in Windows-1252 (æ = 0xE6 followed by a letter) is never valid UTF-8, so for a
    clean file this equals choosing one encoding for the whole file; a file with mixed lines
    (two exports pasted together) still reads correctly. Bytes neither accepts (0x81, 0x8D, ...
    in invalid UTF-8) are kept as surrogates so that the row holding them is rejected.
    """
    for encoding in ("utf-8", "cp1252"):
        try:
            return line.decode(encoding)
        except UnicodeDecodeError:
            pass
    return line.decode("utf-8", "surrogateescape")


def _parse_rows(lines: Iterable[str]) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(line number, fields, None) per row, or (line number, None, error) for a broken row.

    Blank rows are skipped: they carry nothing to quarantine."""
    reader = csv.reader(lines, delimiter=";", quotechar='"')
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader starts afresh with the next line, so one broken row costs one row.
            yield reader.line_num, None, str(exc)
            continue
        if any(field.strip() for field in row):
            yield reader.line_num, row, None


def _file_outcomes(
    name: str, lines: Iterable[bytes], columns: Mapping[str, str]
) -> Iterator[SourceRecordData | Rejected]:
    rows = _parse_rows(map(_decode_line, lines))
    header: _Header | None = None
    for line_no, row, error in rows:
        if header is None:
            # The first row is the header; an unreadable header leaves no columns to match.
            header = _read_header(row or [], columns)
            if error is None:
                continue
        if error is not None:
            raw = {"_file": name, "_line": line_no}
            yield Rejected(raw=raw, reason=f"{name} line {line_no}: unreadable row: {error}")
            continue
        assert row is not None
        yield _row_outcome(name, line_no, row, header)


def _read_header(row: list[str], columns: Mapping[str, str]) -> _Header:
    names = [_clean_text(cell.strip().strip("\ufeff").strip()) for cell in row]
    positions: dict[str, int] = {}
    for position, header_name in enumerate(names):
        positions.setdefault(header_name, position)  # first of duplicate names wins
    index = {c: positions[h] for c, h in columns.items() if h in positions}
    missing = tuple(columns[c] for c in REQUIRED_COLUMNS if c not in index)
    return _Header(names=names, index=index, missing=missing)


def _clean_text(value: str) -> str:
    """Make text storable: undecodable bytes and NUL become U+FFFD."""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value.replace("\x00", "\ufffd")


def _raw(name: str, header: _Header, row: list[str]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for position, value in enumerate(row):
        key = header.names[position] if position < len(header.names) else f"_extra{position}"
        if key in raw:
            key = f"{key}_{position}"
        raw[key] = _clean_text(value)
    raw["_file"] = name
    return raw


# --- mapping one row --------------------------------------------------------------------------


def _row_outcome(
    name: str, line_no: int, row: list[str], header: _Header
) -> SourceRecordData | Rejected:
    raw = _raw(name, header, row)
    source_id = _value(row, header, "KontaktID")
    try:
        _check_shape(row, header)
        record = _to_record(row, header, raw)
    except _RowError as exc:
        return Rejected(raw=raw, reason=f"{name} line {line_no}: {exc}", source_id=source_id)
    problem = record_problems(record)
    if problem:
        return Rejected(raw=raw, reason=f"{name} line {line_no}: {problem}", source_id=source_id)
    return record


def _check_shape(row: list[str], header: _Header) -> None:
    if header.missing:
        found = ", ".join(n for n in header.names if n) or "none"
        raise _RowError(
            f"file lacks required column(s) {', '.join(header.missing)} (columns found: {found})"
        )
    extra = row[len(header.names) :]
    # A trailing separator on data rows (an empty last field) is a common export quirk.
    if len(row) < len(header.names) or any(field.strip() for field in extra):
        raise _RowError(f"row has {len(row)} fields, the header has {len(header.names)}")
    if any(UNDECODABLE_RE.search(field) for field in row):
        raise _RowError("row holds bytes that are neither UTF-8 nor Windows-1252")
    if any("\x00" in field for field in row):
        raise _RowError("row holds NUL characters")


def _value(row: list[str], header: _Header, column: str) -> str | None:
    """The stripped cell of a canonical column; None when empty or the column is absent."""
    position = header.index.get(column)
    if position is None or position >= len(row):
        return None
    value = row[position].strip()
    return value or None


def _to_record(row: list[str], header: _Header, raw: dict[str, Any]) -> SourceRecordData:
    def get(column: str) -> str | None:
        return _value(row, header, column)

    source_id = get("KontaktID")
    if source_id is None:
        raise _RowError("KontaktID is empty")
    return SourceRecordData(
        source_id=source_id,
        approach_date=_parse_date(get("Dato")),
        status=_parse_status(get("Status")),
        company=CompanyRef(
            name=get("Virksomhed"),
            cvr=get("CVR"),  # as delivered; validated downstream
            p_number=get("PNummer"),
            address=get("Adresse"),
            postcode=get("Postnr"),
            city=get("By"),
        ),
        channel=_parse_channel(get("Kontaktform")),
        purpose=get("Formål"),
        contact_person=_person(
            get("Kontaktperson"), get("KontaktpersonEmail"), get("KontaktpersonTelefon")
        ),
        consultant=_person(get("Medarbejder"), get("MedarbejderEmail"), None),
        needs=_needs(get("Rekrutteringsbehov"), get("Kompetencebehov")),
        joint_with=tuple(_split(get("KoordineretMed"))),
        notes=get("Note"),
        raw=raw,
    )


def _parse_date(value: str | None) -> dt.date:
    if value is None:
        raise _RowError("Dato is empty")
    match = DATE_RE.fullmatch(value)
    if match is None:
        raise _RowError(f"Dato {value!r} is not dd-mm-yyyy or dd.mm.yyyy (optionally with a time)")
    try:
        date = dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
        if match["hh"] is not None:
            dt.time(int(match["hh"]), int(match["mm"]), int(match["ss"] or 0))
    except ValueError as exc:
        raise _RowError(f"Dato {value!r} is not a real date or time ({exc})") from None
    return date


def _fold(value: str) -> str:
    """Lower case, æ/ø/å spelled out, letters only: 'E-mail' -> 'email', 'BESØG' -> 'besoeg'."""
    value = value.casefold().replace("æ", "ae").replace("ø", "oe").replace("å", "aa")
    return "".join(ch for ch in value if ch.isalpha())


def _parse_channel(value: str | None) -> str | None:
    if value is None:
        return None
    channel = CHANNEL_SPELLINGS.get(_fold(value))
    if channel is None:
        raise _RowError(f"unknown Kontaktform {value!r}")
    return channel


def _parse_status(value: str | None) -> str:
    status = STATUS_SPELLINGS.get((value or "").casefold())
    if status is None:
        raise _RowError(f"unknown Status {value!r} (expected Aktiv or Annulleret)")
    return status


def _person(name: str | None, email: str | None, phone: str | None) -> PersonRef | None:
    if name is None and email is None and phone is None:
        return None
    return PersonRef(name=name, email=email, phone=phone)


def _split(value: str | None) -> list[str]:
    if value is None:
        return []
    return [part.strip() for part in value.split("|") if part.strip()]


def _needs(recruitment: str | None, upskilling: str | None) -> tuple[NeedRef, ...]:
    needs = [
        NeedRef(type="recruitment", label=label, code=label if DISCO_RE.fullmatch(label) else None)
        for label in _split(recruitment)
    ]
    needs += [NeedRef(type="upskilling", label=label) for label in _split(upskilling)]
    return tuple(needs)
