"""The sync lock: at most one sync run (CLI, API or scheduler) works on a database at a time.

A caller that cannot get the lock is refused at once with :class:`SyncAlreadyRunning`; nobody
waits. A holder that dies, however it dies, never keeps the lock:

- **PostgreSQL** (any number of machines): a session-level advisory lock
  (``pg_try_advisory_lock``) taken on a connection of its own and kept open for as long as the
  run lasts. When the holding process dies its connection closes, and PostgreSQL releases the
  lock with it.
- **SQLite** (one machine, as SQLite itself is): an exclusive ``flock`` on a file beside the
  database file, ``<database>.sync-lock``. The kernel releases it when the holding process exits
  or is killed. The file only records who holds the lock (host, pid, since when) for the
  refusal message; its existence means nothing, so it is never deleted.

Usage::

    with sync_lock(engine):          # raises SyncAlreadyRunning when another run holds it
        ...

or ``lock = sync_lock(engine); if lock.try_acquire(): ... lock.release()`` when the lock must be
handed to another thread (the API starts the run in the background after answering).
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Self

from sqlalchemy import Connection, Engine, func, select

log = logging.getLogger(__name__)

# The advisory-lock key of the sync lock: a fixed 64-bit number, the same in every process.
# (The first 8 bytes of sha256("coordination.sync"); any constant would do.)
SYNC_LOCK_KEY = int.from_bytes(hashlib.sha256(b"coordination.sync").digest()[:8], signed=True)


class SyncAlreadyRunning(Exception):
    """Another sync run holds the sync lock; this run was refused and nothing was changed."""

    def __init__(self, holder: str | None = None) -> None:
        message = "a sync run is already in progress; try again when it has finished"
        if holder:
            message += f" (lock held by {holder})"
        super().__init__(message)
        self.holder = holder


class SyncLock(abc.ABC):
    """A non-blocking, non-reentrant lock shared by every process on the database."""

    @abc.abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if it is free; False (at once) when someone holds it."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock back; does nothing when this object does not hold it."""

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """Whether this object holds the lock now."""

    def holder(self) -> str | None:
        """Who holds the lock, when the lock can tell (for messages only)."""
        return None

    def __enter__(self) -> Self:
        if not self.try_acquire():
            raise SyncAlreadyRunning(self.holder())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def sync_lock(engine: Engine) -> SyncLock:
    """The sync lock of the database behind ``engine`` (not yet acquired)."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, SYNC_LOCK_KEY)
    return FileLock(lock_file_for(engine))


def lock_file_for(engine: Engine) -> Path:
    """``<database file>.sync-lock``; for a database without a file, one in the temp folder."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).resolve()
        return path.with_name(path.name + ".sync-lock")
    digest = hashlib.sha256(str(engine.url).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"coordination-{digest}.sync-lock"


def holder_description() -> str:
    """This process, as lock holders and job claims name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class AdvisoryLock(SyncLock):
    """A PostgreSQL session-level advisory lock on a connection kept for the lock alone."""

    def __init__(self, engine: Engine, key: int) -> None:
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def try_acquire(self) -> bool:
        if self._connection is not None:
            raise RuntimeError("this sync lock is already held by this object")
        connection = self._engine.connect()
        try:
            got = connection.execute(select(func.pg_try_advisory_lock(self._key))).scalar_one()
            # A session-level lock outlives the transaction; ending it keeps the connection from
            # sitting "idle in transaction" for the hours a sync may take.
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(select(func.pg_advisory_unlock(self._key)))
            connection.commit()
        except Exception:
            # Closing the connection for real releases the lock whatever went wrong here.
            log.warning("could not unlock the sync lock; closing its connection", exc_info=True)
            connection.invalidate()
        finally:
            connection.close()


# The descriptors of the FileLocks this process holds. A forked child closes its copies at
# once: the lock's open file, shared with the child, would otherwise stay locked after the
# holder dies until the child has ended too. (The sync's readers are not forked from the
# syncing process, but a process that holds the lock may still fork.)
_HELD_FDS: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)  # the child's copy only: the parent's lock stays
    _HELD_FDS.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class FileLock(SyncLock):
    """An exclusive ``flock`` on a file; the kernel drops it when the holding process ends.

    ``flock`` locks belong to the open file, so two FileLock objects conflict even inside one
    process, just as two PostgreSQL connections do."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            raise RuntimeError("this sync lock is already held by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder_description()} since {since}\n".encode(), 0)
        self._fd = fd
        _HELD_FDS.add(fd)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD_FDS.discard(fd)
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None
