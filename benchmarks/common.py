"""Shared parts of the benchmarks: the workload on disk, fake sources, fresh databases, children.

A :class:`Workload` is the scale scenario of ``coordination.demo.generator`` written once to a
cache folder (``$COORDINATION_BENCH_DATA``, default ``<tmp>/coordination-bench``) and reused by
every run at that scale:

- each source's deliveries as JSON lines (``<source>.jsonl``, one payload a line) with an index
  of byte offsets and change times (``<source>.idx``), so the fake APIs serve pages straight
  from the file and never hold the records as Python objects;
- each jobcentre's CSV drops (``csv/<source>/``): the full export and the delta file as the
  generator writes them;
- a *nightly delta*: the last ``delta`` records before the CRM's planned appointments are held
  back from the first deliveries. The fake APIs reveal them (stamped with the time of the
  reveal, as records changed that day) and each jobcentre gets one more CSV file with its share
  (``csv-nightly/<source>/``).

The fakes run in a child process (:class:`FakeSources`) and every measured step runs in a fresh
child (:func:`in_child`), so a step's peak memory (``ru_maxrss``) is its own. Databases are
fresh per run (:func:`fresh_database`): a SQLite file in a temporary folder, or a PostgreSQL
database ``bench_<pid>_<n>`` created on ``$COORDINATION_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped afterwards.
"""

from __future__ import annotations

import array
import bisect
import concurrent.futures
import contextlib
import csv
import dataclasses
import datetime as dt
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from coordination.demo.generator import (
    CSV_COLUMNS,
    CSV_DELTA_COLUMNS,
    Delivered,
    Scenario,
    csv_file_names,
    deliveries,
)

DATA_ROOT = Path(
    os.environ.get("COORDINATION_BENCH_DATA") or Path(tempfile.gettempdir()) / "coordination-bench"
)
POSTGRES_ADMIN_URL = os.environ.get(
    "COORDINATION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CRM_SECRET = "bench-secret"
VEU_KEY = "bench-key"
KINDS = {"crm": "odata-crm", "jobcenter": "csv-drop", "veu": "rest-json"}
ORGANISATION_TYPES = {"crm": "vaeksthus", "jobcenter": "jobcenter", "veu": "veu"}
CHANGE_TIME_FIELD = {"crm": "modifiedon", "veu": "updated_at"}
INDEX_VERSION = 2


# --- the workload on disk ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """A scale scenario plus the size of its nightly delta; equal workloads share one cache."""

    approaches: int
    companies: int
    delta: int = 5_000
    seed: int = 2014

    def scenario(self) -> Scenario:
        return Scenario.scale(approaches=self.approaches, companies=self.companies, seed=self.seed)

    @property
    def folder(self) -> Path:
        name = f"a{self.approaches}-c{self.companies}-d{self.delta}-s{self.seed}-v{INDEX_VERSION}"
        return DATA_ROOT / name


@dataclasses.dataclass(frozen=True)
class SourceFiles:
    name: str
    organisation: str
    kind: str  # crm | jobcenter | veu
    municipality_code: str | None
    initial: int  # payloads in the first deliveries
    nightly: int  # payloads held back for the nightly delta


@dataclasses.dataclass(frozen=True)
class Deliveries:
    """A prepared workload: where its files are and how many payloads each source has."""

    folder: Path
    sources: tuple[SourceFiles, ...]
    generated_seconds: float

    @property
    def initial(self) -> int:
        return sum(s.initial for s in self.sources)

    @property
    def nightly(self) -> int:
        return sum(s.nightly for s in self.sources)


def prepare(workload: Workload, log: Callable[[str], None] = print) -> Deliveries:
    """The workload's files, generated on first use (minutes for millions of approaches)."""
    manifest = workload.folder / "manifest.json"
    if not manifest.is_file():
        if workload.folder.exists():
            shutil.rmtree(workload.folder)  # an interrupted earlier attempt
        workload.folder.mkdir(parents=True)
        log(f"generating {workload.approaches:,} approaches into {workload.folder} ...")
        started = time.monotonic()
        sources = _generate(workload)
        payload = {
            "workload": dataclasses.asdict(workload),
            "sources": [dataclasses.asdict(s) for s in sources],
            "generated_seconds": round(time.monotonic() - started, 1),
        }
        manifest.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return read_deliveries(workload.folder)


def read_deliveries(folder: Path) -> Deliveries:
    """The deliveries written into ``folder``, as its ``manifest.json`` lists them."""
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return Deliveries(
        folder=folder,
        sources=tuple(SourceFiles(**s) for s in data["sources"]),
        generated_seconds=data["generated_seconds"],
    )


class _JsonLines:
    """One source's payloads, a JSON document a line, with the index the fakes page by."""

    def __init__(self, path: Path, change_field: str | None) -> None:
        self.file = path.open("wb")
        self.change_field = change_field
        self.positions = array.array("q")  # position in the whole delivery stream
        self.offsets = array.array("q")
        self.changed = array.array("d")  # change time (epoch seconds), +inf when unreadable

    def add(self, position: int, document: Any, payload: dict[str, Any]) -> None:
        self.positions.append(position)
        self.offsets.append(self.file.tell())
        if self.change_field is not None:
            self.changed.append(epoch_seconds(payload.get(self.change_field)))
        self.file.write(json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n")

    def close(self) -> None:
        self.offsets.append(self.file.tell())  # the end of the last line
        self.file.close()


def _generate(workload: Workload) -> list[SourceFiles]:
    scenario = workload.scenario()
    municipality = {name: code for name, _, code in scenario.jobcentres}
    sources = [
        (name, organisation, kind, municipality.get(name))
        for name, organisation, kind in scenario.sources()
    ]
    return write_deliveries(
        workload.folder, scenario, sources, deliveries(scenario), workload.delta
    )


def write_deliveries(
    folder: Path,
    scenario: Scenario,
    sources: list[tuple[str, str, str, str | None]],
    items: Iterable[Delivered],
    delta: int,
) -> list[SourceFiles]:
    """Write ``items`` (in delivery order) as the files of ``sources`` (``(name, organisation,
    kind, municipality code)``; a source without items gets empty files) into ``folder``,
    holding back the last ``delta`` items before the CRM's planned appointments as the nightly
    delta. ``scenario`` names the jobcentres' CSV files and their encodings."""
    kinds = {name: kind for name, _, kind, _ in sources}
    sinks = {
        name: _JsonLines(folder / f"{name}.jsonl", CHANGE_TIME_FIELD.get(kind))
        for name, kind in kinds.items()
    }
    planned_from = None
    position = 0
    for item in items:
        # The CRM's planned appointments close the stream; the nightly delta comes before them.
        if planned_from is None and item.truth.state == "planned":
            planned_from = position
        document = [item.file_index, item.payload] if item.kind == "jobcenter" else item.payload
        sinks[item.source_name].add(position, document, item.payload)
        position += 1
    planned_from = position if planned_from is None else planned_from
    nightly = range(max(0, planned_from - delta), planned_from)
    out = []
    for name, organisation, kind, municipality in sources:
        sink = sinks[name]
        sink.close()
        index = {"positions": sink.positions, "offsets": sink.offsets, "changed": sink.changed}
        _save_index(folder / f"{name}.idx", index, nightly)
        held_back = sum(1 for p in sink.positions if p in nightly)
        if kind == "jobcenter":
            _write_csv_drops(folder, scenario, name, nightly)
        out.append(
            SourceFiles(
                name=name,
                organisation=organisation,
                kind=kind,
                municipality_code=municipality,
                initial=len(sink.positions) - held_back,
                nightly=held_back,
            )
        )
    return out


def _write_csv_drops(folder: Path, scenario: Scenario, name: str, nightly: range) -> None:
    """The full export and the delta file, less the nightly rows, which get a file of their own
    dated the day after the delta file (so the connector reads it last)."""
    full, delta = csv_file_names(scenario)
    night = f"virksomhedskontakter_{scenario.end + dt.timedelta(days=2):%Y%m%d}.csv"
    first_encoding = "cp1252" if name in scenario.windows1252_sources else "utf-8-sig"
    targets = [
        (folder / "csv" / name / full, first_encoding, CSV_COLUMNS),
        (folder / "csv" / name / delta, "utf-8", CSV_DELTA_COLUMNS),
        (folder / "csv-nightly" / name / night, "utf-8", CSV_COLUMNS),
    ]
    index = _load_index(folder / f"{name}.idx")
    with contextlib.ExitStack() as stack:
        writers = []
        for path, encoding, columns in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(path.open("w", encoding=encoding, newline=""))
            writer = csv.writer(handle, delimiter=";", quotechar='"', lineterminator="\r\n")
            writer.writerow(columns)
            writers.append((writer, columns))
        lines = stack.enter_context((folder / f"{name}.jsonl").open("rb"))
        for position, line in zip(index["positions"], lines, strict=True):
            file_index, row = json.loads(line)
            writer, columns = writers[2 if position in nightly else file_index]
            writer.writerow([row[c] for c in columns])


def _save_index(path: Path, arrays: dict[str, array.array], nightly: range) -> None:
    """The arrays as raw machine values after a one-line JSON header."""
    header = {
        "nightly": [nightly.start, nightly.stop],
        "arrays": [[name, values.typecode, len(values)] for name, values in arrays.items()],
    }
    with path.open("wb") as out:
        out.write(json.dumps(header).encode() + b"\n")
        for values in arrays.values():
            values.tofile(out)


def _load_index(path: Path) -> dict[str, Any]:
    with path.open("rb") as source:
        header = json.loads(source.readline())
        index: dict[str, Any] = {"nightly": tuple(header["nightly"])}
        for name, typecode, count in header["arrays"]:
            values = array.array(typecode)
            values.fromfile(source, count)
            index[name] = values
    return index


def epoch_seconds(value: Any) -> float:
    """An ISO-8601 timestamp as epoch seconds (UTC when it names no zone); +inf when unreadable
    (the fakes serve such items after all others, as the demo fakes do)."""
    if not isinstance(value, str):
        return float("inf")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return float("inf")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


# --- fake sources served from the files -------------------------------------------------------


class _ServedItems:
    """One API source's payloads in change-time order, read from the file page by page.

    Before :meth:`reveal_nightly` the nightly delta is hidden; afterwards it comes last, its
    change time set to the moment of the reveal.
    """

    def __init__(self, folder: Path, name: str, change_field: str) -> None:
        index = _load_index(folder / f"{name}.idx")
        self.fd = os.open(folder / f"{name}.jsonl", os.O_RDONLY)
        self.change_field = change_field
        offsets, changed = index["offsets"], index["changed"]
        start, stop = index["nightly"]
        kept = [i for i, p in enumerate(index["positions"]) if not start <= p < stop]
        self.nightly = [i for i, p in enumerate(index["positions"]) if start <= p < stop]
        kept.sort(key=changed.__getitem__)
        self.start = array.array("q", (offsets[i] for i in kept))
        self.length = array.array("q", (offsets[i + 1] - offsets[i] - 1 for i in kept))
        self.changed = array.array("d", (changed[i] for i in kept))
        self._offsets = offsets
        self.revealed: list[bytes] = []
        self.revealed_at = float("inf")

    def reveal_nightly(self, moment: dt.datetime) -> None:
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        revealed = []
        for i in self.nightly:
            start, end = self._offsets[i], self._offsets[i + 1] - 1  # without the newline
            item = json.loads(self._read(start, end - start))
            if isinstance(item, dict):
                item[self.change_field] = stamp
            revealed.append(json.dumps(item, ensure_ascii=False).encode("utf-8"))
        self.revealed, self.revealed_at = revealed, moment.timestamp()

    def page(self, since: float | None, strict: bool, offset: int, limit: int):
        """``(raw JSON items, whether more follow)`` of the items changed after ``since``
        (``strict``: strictly after), skipping ``offset`` of them."""
        first = 0
        if since is not None:
            first = (bisect.bisect_right if strict else bisect.bisect_left)(self.changed, since)
        base = len(self.changed) - first
        late = self.revealed if since is None or self.revealed_at > since else []
        items = []
        for n in range(offset, min(offset + limit, base + len(late))):
            if n < base:
                items.append(self._read(self.start[first + n], self.length[first + n]))
            else:
                items.append(late[n - base])
        return items, offset + limit < base + len(late)

    def _read(self, start: int, length: int) -> bytes:
        return os.pread(self.fd, length, start)


def _served_crm(items: _ServedItems, **kwargs: Any):
    from werkzeug.wrappers import Response

    from coordination.demo.fakes import FakeODataCrm, json_response

    class FileODataCrm(FakeODataCrm):
        """The demo's fake CRM, paging through the workload file instead of a list."""

        def _page(self, request):
            query = request.args
            since = None
            if "$filter" in query:
                field, op, value = (query["$filter"].split(" ") + ["", "", ""])[:3]
                since = epoch_seconds(value)
                if field != "modifiedon" or op != "gt" or since == float("inf"):
                    return json_response({"error": {"message": "unsupported $filter"}}, 400)
            offset = int(query.get("$skiptoken", "0") or 0)
            size = self._page_size(request)
            rows, more = items.page(since, True, offset, size)
            parts = [
                b'{"@odata.context": "',
                f"{self.base_url}/$metadata#appointments".encode(),
                b'", "value": [',
                b",".join(rows),
                b"]",
            ]
            if more:
                following = dict(query) | {"$skiptoken": str(offset + size)}
                link = f"{self.base_url}/appointments?" + _query_string(following)
                parts.append(b', "@odata.nextLink": ' + json.dumps(link).encode())
            parts.append(b"}")
            return Response(b"".join(parts), 200, content_type="application/json; charset=utf-8")

    return FileODataCrm(client_secret=CRM_SECRET, **kwargs)


def _served_veu(items: _ServedItems, **kwargs: Any):
    import base64

    from werkzeug.wrappers import Response

    from coordination.demo.fakes import FakeVeuApi, json_response

    class FileVeuApi(FakeVeuApi):
        """The demo's fake VEU API, paging through the workload file instead of a list."""

        def _page(self, request):
            query = request.args
            since = epoch_seconds(query["updated_since"]) if "updated_since" in query else None
            if since == float("inf"):
                return json_response({"error": "updated_since is not a timestamp"}, 400)
            limit = int(query.get("limit", self.default_limit))
            if not 1 <= limit <= self.max_limit:
                return json_response({"error": f"limit must be 1..{self.max_limit}"}, 400)
            cursor = query.get("cursor")
            offset = 0
            if cursor:
                decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
                offset = int(decoded.partition(":")[2])
            rows, more = items.page(since, False, offset, limit)
            following = None
            if more:
                following = base64.urlsafe_b64encode(f"offset:{offset + limit}".encode()).decode()
            body = b'{"items": [' + b",".join(rows) + b'], "next_cursor": '
            body += json.dumps(following).encode() + b"}"
            return Response(body, 200, content_type="application/json; charset=utf-8")

    return FileVeuApi(api_key=VEU_KEY, **kwargs)


def _query_string(query: Mapping[str, str]) -> str:
    from urllib.parse import quote, urlencode

    return urlencode(query, quote_via=quote, safe="$:,'()")


def _serve_fakes(folder: str, sources: list[tuple[str, str]], connection) -> None:
    """Child process: serve the API sources until told to stop."""
    servers, served, urls = [], [], {}
    for name, kind in sources:
        items = _ServedItems(Path(folder), name, CHANGE_TIME_FIELD[kind])
        server = (_served_crm if kind == "crm" else _served_veu)(items).start()
        server.requests = _Discard()  # the demo fakes log every request; not millions here
        servers.append(server)
        served.append(items)
        urls[name] = {"base_url": server.base_url}
        if kind == "crm":
            urls[name]["token_url"] = server.token_url
    connection.send(urls)
    try:
        while True:
            message = connection.recv()
            if message == "reveal":
                moment = dt.datetime.now(dt.UTC).replace(microsecond=0)
                for items in served:
                    items.reveal_nightly(moment)
                connection.send("revealed")
            elif message == "stop":
                break
    finally:
        for server in servers:
            server.stop()


class _Discard(list):
    def append(self, _item: Any) -> None:
        pass


class FakeSources:
    """The workload's API sources on 127.0.0.1, served by a child process.

    ``urls`` maps source name to ``{"base_url": ..., ("token_url": ...)}``. ``reveal_nightly()``
    makes the nightly delta visible.
    """

    def __init__(self, deliveries: Deliveries) -> None:
        api = [(s.name, s.kind) for s in deliveries.sources if s.kind != "jobcenter"]
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve_fakes, args=(str(deliveries.folder), api, child_end), daemon=True
        )
        self._process.start()
        self.urls: dict[str, dict[str, str]] = self._connection.recv()

    def reveal_nightly(self) -> None:
        self._connection.send("reveal")
        self._connection.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()

    def __enter__(self) -> FakeSources:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- configuration --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SyncSetup:
    """What a child needs to build the service's configuration: the raw TOML-like mapping and
    the environment holding the secrets (both picklable)."""

    raw: dict[str, Any]
    environ: dict[str, str]

    def config(self):
        from connectors.base import load_registry
        from coordination.config import parse_config

        return parse_config(self.raw, self.environ, load_registry())


class DropFolders:
    """Per-run copies (hard links) of the jobcentres' drop folders, so that a run's nightly file
    and the connector's bookkeeping never leak into the next run."""

    def __init__(self, deliveries: Deliveries, root: Path) -> None:
        self.deliveries = deliveries
        self.root = root
        for source in self._jobcentres():
            _link_files(deliveries.folder / "csv" / source, root / source)

    def path(self, source: str) -> Path:
        return self.root / source

    def add_nightly(self) -> None:
        for source in self._jobcentres():
            _link_files(self.deliveries.folder / "csv-nightly" / source, self.root / source)

    def _jobcentres(self) -> list[str]:
        return [s.name for s in self.deliveries.sources if s.kind == "jobcenter"]


def _link_files(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        destination = target / path.name
        if not destination.exists():
            try:
                os.link(path, destination)
            except OSError:
                shutil.copy2(path, destination)


def sync_setup(
    database_url: str,
    deliveries: Deliveries,
    fakes: FakeSources,
    drops: DropFolders,
    page_size: int = 1000,
    csv_batch_size: int = 2000,
) -> SyncSetup:
    sources, environ = [], {"BENCH_CRM_SECRET": CRM_SECRET, "BENCH_VEU_KEY": VEU_KEY}
    for source in deliveries.sources:
        entry: dict[str, Any] = {
            "name": source.name,
            "kind": KINDS[source.kind],
            "organisation": source.organisation,
            "organisation_type": ORGANISATION_TYPES[source.kind],
        }
        if source.kind == "crm":
            entry |= fakes.urls[source.name] | {
                "client_id": "demo-client",
                "client_secret_env": "BENCH_CRM_SECRET",
                "page_size": page_size,
            }
        elif source.kind == "veu":
            entry |= fakes.urls[source.name] | {
                "api_key_env": "BENCH_VEU_KEY",
                "page_size": page_size,
            }
        else:
            entry |= {
                "path": str(drops.path(source.name)),
                "municipality_code": source.municipality_code,
                "batch_size": csv_batch_size,
            }
        sources.append(entry)
    return SyncSetup({"database": {"url": database_url}, "sources": sources}, environ)


def toml_text(raw: Mapping[str, Any]) -> str:
    """The configuration mapping as a TOML file (strings, numbers, one level of tables and
    arrays of tables: all that :func:`sync_setup` produces). JSON strings are TOML strings."""
    lines = []
    for key, value in raw.items():
        if isinstance(value, list):
            for entry in value:
                lines.append(f"[[{key}]]")
                lines.extend(f"{k} = {json.dumps(v)}" for k, v in entry.items() if v is not None)
        else:
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in value.items())
        lines.append("")
    return "\n".join(lines)


# --- databases --------------------------------------------------------------------------------

_database_numbers = itertools.count(1)


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """A new, migrated, empty database of ``kind`` (sqlite | postgres); dropped afterwards."""
    from coordination.db import upgrade

    number = next(_database_numbers)
    if kind == "sqlite":
        path = workdir / f"bench-{number}.db"
        url = f"sqlite:///{path}"
        try:
            upgrade(url)
            yield url
        finally:
            for suffix in ("", "-wal", "-shm", ".sync-lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r} (sqlite | postgres)")
    import psycopg
    from psycopg import sql

    name = f"bench_{os.getpid()}_{number}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = "postgresql+psycopg://" + POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    url += f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def database_size_mb(url: str) -> float:
    """The database's size on disk (SQLite: the file and its WAL)."""
    from sqlalchemy import text

    from coordination.db import make_engine

    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        return sum(
            Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
        ) / (1 << 20)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            size = connection.execute(text("SELECT pg_database_size(current_database())"))
            return size.scalar_one() / (1 << 20)
    finally:
        engine.dispose()


def dump_size(url: str, workdir: Path) -> dict[str, float] | None:
    """PostgreSQL: size and time of ``pg_dump -Fc`` of the database (None without pg_dump)."""
    import subprocess

    if not url.startswith("postgresql") or shutil.which("pg_dump") is None:
        return None
    target = workdir / f"dump-{time.monotonic_ns()}.pgdump"
    started = time.monotonic()
    libpq_url = "postgresql://" + url.split("://", 1)[1]
    subprocess.run(["pg_dump", "-Fc", "-f", str(target), libpq_url], check=True)
    seconds = time.monotonic() - started
    size = target.stat().st_size / (1 << 20)
    target.unlink()
    return {"mb": size, "seconds": seconds}


def table_sizes(url: str) -> dict[str, dict[str, float]]:
    """PostgreSQL: rows, table and index bytes per table, and bytes per row; SQLite: rows."""
    from sqlalchemy import func, literal, select
    from sqlmodel import SQLModel

    import coordination.models  # noqa: F401 (registers the tables)
    from coordination.db import make_engine

    engine = make_engine(url)
    sizes = {}
    try:
        with engine.connect() as connection:
            for name, table in sorted(SQLModel.metadata.tables.items()):
                rows = connection.execute(select(func.count()).select_from(table)).scalar_one()
                entry: dict[str, float] = {"rows": rows}
                if engine.dialect.name == "postgresql":
                    heap, indexes = connection.execute(
                        select(
                            func.pg_table_size(literal(name)), func.pg_indexes_size(literal(name))
                        )
                    ).one()
                    entry |= {
                        "table_mb": heap / (1 << 20),
                        "index_mb": indexes / (1 << 20),
                        "bytes_per_row": (heap + indexes) / rows if rows else 0.0,
                    }
                sizes[name] = entry
    finally:
        engine.dispose()
    return sizes


# --- children and the machine -----------------------------------------------------------------


def in_child(function: Callable[..., dict], *args: Any) -> dict:
    """Run ``function(*args)`` in a fresh process and return its result, with that process's
    peak resident memory added as ``peak_rss_mb``."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_measured, function, *args).result()


def _measured(function: Callable[..., dict], *args: Any) -> dict:
    result = function(*args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def machine() -> dict[str, Any]:
    """What the figures came from: CPUs, memory, CPU model, and the load right now."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_kb / (1 << 20), 1),
        "load": os.getloadavg(),
    }


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f}"


def backend_cpu_seconds(engine: Any) -> float | None:
    """CPU time (user + system, from ``/proc``) the PostgreSQL server processes of ``engine``'s
    open connections have used since they started: the server's share of what a sync waits for,
    steadier than elapsed time on a shared machine. None on SQLite (the database runs in the
    process itself). Connections the pool has closed on the way are not counted."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        pids = connection.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend'"
        ).scalars()
        pids = list(pids)
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
