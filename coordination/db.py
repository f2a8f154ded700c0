"""Database engine and sessions. Nothing connects at import time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pool_pre_ping: it costs a round trip on every checkout (12% of a /healthz). When the
    # server drops connections (a restart), the first statement on one fails, SQLAlchemy then
    # invalidates the whole pool, and the next request reconnects; pool_recycle retires
    # connections before server or firewall idle timeouts can cut them.
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


# A sync's batches insert into indexes keyed at random (external ids, CVR numbers, company ids),
# so each batch dirties pages all over them, and with SQLite's default checkpoint every 1,000
# WAL pages each such page was copied into the database again after nearly every batch: the
# bytes written per record grew with the database (11 KB per record at 17,771 records, 30 KB at
# 223,171). A checkpoint every 10,000 pages (a WAL of about 40 MB) copies a page written by
# several batches once. (A page cache of 64 MB instead of 2 MB also spared re-reading pages, but
# the full sync's peak memory at 223,171 records rose to 728 MB: SQLite's sorts may each use as
# much memory as the cache, and the report facts' build sorts for eight window functions.)
SQLITE_CHECKPOINT_PAGES = 10_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    cursor.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` (``coordination db upgrade``)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def int_list(name: str = "ids") -> BindParameter:
    """An expanding IN-list parameter of integers, rendered into the SQL text when executed:
    thousands of bound parameters cost the driver more than the statement itself (psycopg
    parses the query for them). Integers only: the values become SQL literals."""
    return bindparam(name, expanding=True, literal_execute=True)


class DriverStatement:
    """A Core statement run straight on psycopg's connection under a SQLAlchemy ``Connection``,
    for the few statements of a hot path (the prior-contact check): about a third of the client
    CPU of ``Connection.execute``, which builds an execution context and a result for each one.

    Compiled once with positional ``$n`` parameters (psycopg has no placeholders to parse, which
    it does on every execution for a statement longer than 4 KB) and prepared on the server at
    its first use on a connection. Values go through their types' bind processing as with
    SQLAlchemy, and the engine's ``before_cursor_execute`` and ``after_cursor_execute`` events
    still see the statement (tests and benchmarks count statements with them).

    PostgreSQL only, and only on a connection in autocommit mode (``runs_on``): a transaction
    the driver began here would be invisible to SQLAlchemy. Errors are the driver's; run it in
    ``engine.begin()``, whose rollback on the way out meets a lost connection and makes
    SQLAlchemy drop the pool's connections as after its own statements."""

    def __init__(self, statement, dialect) -> None:
        compiled = statement.compile(dialect=type(dialect)(paramstyle="numeric_dollar"))
        self.text = str(compiled)
        self.sql = self.text.encode()
        self.names = tuple(compiled.positiontup)
        self.defaults = {name: bind.value for name, bind in compiled.binds.items()}
        processors = (
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.names
        )
        self.processors = tuple((i, f) for i, f in enumerate(processors) if f is not None)

    @staticmethod
    def runs_on(connection) -> bool:
        """Whether ``connection`` (a Session or a Connection) can run driver statements."""
        return (
            isinstance(connection, Connection)
            and connection.dialect.driver == "psycopg"
            and connection.connection.driver_connection.autocommit
        )

    def first_row(self, connection: Connection, values: dict) -> tuple | None:
        """The first row of the statement (one that returns rows) with ``values`` (by bind
        name), or None."""
        from psycopg import RawCursor

        parameters = [values[n] if n in values else self.defaults[n] for n in self.names]
        for index, process in self.processors:
            parameters[index] = process(parameters[index])
        driver = connection.connection.driver_connection
        announce = connection.dispatch
        with RawCursor(driver) as cursor:
            if announce.before_cursor_execute:
                announce.before_cursor_execute(
                    connection, cursor, self.text, parameters, None, False
                )
            cursor.execute(self.sql, parameters, prepare=True)
            row = cursor.fetchone()
            if announce.after_cursor_execute:
                announce.after_cursor_execute(
                    connection, cursor, self.text, parameters, None, False
                )
        return row


def among(session: Session, column, values: list):
    """``column IN values``; on PostgreSQL ``column = ANY(array)``: one parameter, where a
    list of thousands makes a statement text the driver must rewrite on every execution."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


@contextlib.contextmanager
def local_settings(connection: Connection, settings: Mapping[str, str]) -> Iterator[None]:
    """PostgreSQL ``settings`` while the block runs, in the transaction only (``set_config``'s
    local form); nothing on SQLite. Left as they are if the block fails: the transaction is
    rolled back, and they with it."""
    if connection.dialect.name != "postgresql":
        yield
        return
    names = list(settings)
    before = connection.execute(select(*(func.current_setting(name) for name in names))).one()
    connection.execute(select(*(func.set_config(n, v, True) for n, v in settings.items())))
    yield
    connection.execute(
        select(*(func.set_config(n, v, True) for n, v in zip(names, before, strict=True)))
    )
