"""Reading a source for the sync: its connector's batches in their stored form (``ReadBatch``).

The connector (fetching, parsing, mapping) and the database-free half of storing (validation,
redaction, the payload's JSON, the content hash) take about a third of a full sync's CPU time.
:func:`read_batches` runs them in a reader process for the source, one batch ahead of the
syncing process, which meanwhile resolves and stores the batch before: the second core does
that third. The reader only reads: it never touches the database, and a batch's cursor is
committed by the syncing process with the batch, as without it, so the crash model is the
same. It sends one batch at a time through a pipe and waits until the syncing process takes
it, so at most two batches are in flight (memory stays flat). An error in the reader is raised
in the syncing process where the connector would have raised it, and what the connector logs
is logged there too; a reader that dies is an error of the source, and a reader ends when the
syncing process does.

Readers are forked from multiprocessing's fork server, a small process of its own started
(from a fresh interpreter, with the connectors' modules imported) at the first reader, never
from the syncing process itself: a reader forked from the syncing process kept a private copy
of every page the syncing process wrote while it read (copy on write), most of a large first
load's memory (420 MB summed at 1,021,261 records against 275 MB without readers). The
fork server also spares the syncing process a fork from a thread (the scheduler's, a web
worker's), which Python 3.12 warns of. Where there is no fork server, for a connector that
cannot be sent to a reader (logged), and for every read after a source's first
(:func:`worth_a_process`), the batches are read in process.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import pickle
import sys
import threading
import traceback
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from connectors.base import Connector
from coordination.config import SourceConfig
from coordination.ingest import ReadBatch, read_batch

log = logging.getLogger(__name__)


class ReaderDied(RuntimeError):
    """The reader process of a source ended without finishing its batches."""


class ReaderFailed(RuntimeError):
    """An error in the reader process that could not be sent over as it was."""


def fork_available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def worth_a_process(state: Any) -> bool:
    """Whether reading from ``state`` on is worth a process of its own: only a source's first
    read (no saved state), which brings its whole history. A later read brings a night's
    delta, a batch or two, which the reader's start-up and the pickling would not pay back."""
    return state is None


def read_batches(
    sc: SourceConfig,
    registry: Mapping[str, type[Connector]],
    state: Any,
    source_id: int,
    in_process: bool = False,
) -> Iterator[ReadBatch]:
    """The source's batches from ``state`` on, each in its stored form (``read_batch``)."""
    if in_process or not fork_available() or not worth_a_process(state):
        yield from _read_here(sc, registry, state, source_id)
        return
    try:
        child, receiving = start_reader(sc, registry, state, source_id)
    except _CANNOT_START as exc:
        # A region's own connector whose class or settings cannot be sent to another process
        # still reads, only without the second core.
        log.warning("source %s is read without a reader process: %r", sc.name, exc)
        yield from _read_here(sc, registry, state, source_id)
        return
    try:
        while True:
            try:
                message = pickle.loads(receiving.recv_bytes())  # noqa: S301 - our own child
            except EOFError:
                child.join(5)
                raise ReaderDied(
                    f"the reader process of source {sc.name} ended (exit code {child.exitcode})"
                ) from None
            kind = message[0]
            if kind == "batch":
                yield message[1]
            elif kind == "log":
                _log_here(message[1])
            elif kind == "end":
                return
            else:  # "error"
                raise message[1]
    finally:
        receiving.close()
        if child.is_alive():  # the sync stopped early: the rest of the source is not read
            child.kill()
        child.join()


def _read_here(
    sc: SourceConfig, registry: Mapping[str, type[Connector]], state: Any, source_id: int
) -> Iterator[ReadBatch]:
    connector = sc.build_connector(registry)
    for batch in connector.read(state):
        yield read_batch(source_id, batch)


# What starting a reader raises when the connector's class, its settings or its state cannot be
# pickled (a class defined in a function, a lock or an open file among the settings), or the
# fork server could not be started.
_CANNOT_START = (pickle.PicklingError, TypeError, AttributeError, OSError, EOFError)


def start_fork_server(registry: Mapping[str, type[Connector]], states: Iterable[Any]) -> None:
    """Starts the readers' fork server, unless none of the sources' ``states`` is to be read
    in a reader; it boots in the background (the syncing process does not wait here)."""
    if fork_available() and any(worth_a_process(state) for state in states):
        _fork_server(registry)
        multiprocessing.forkserver.ensure_running()


def start_reader(
    sc: SourceConfig, registry: Mapping[str, type[Connector]], state: Any, source_id: int
):
    """A started reader process of the source and the end of the pipe its batches come by."""
    if registry[sc.kind].__module__ == "__main__":  # a reader does not import it
        raise pickle.PicklingError(f"connector class {registry[sc.kind]!r} is in __main__")
    context = _fork_server(registry)
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_read_in_child,
        args=(sending, sc, registry, state, source_id, logging.getLogger().getEffectiveLevel()),
        name=f"sync-reader-{sc.name}",
        daemon=True,
    )
    try:
        with _main_left_out():
            child.start()
    except BaseException:
        receiving.close()
        raise
    finally:
        sending.close()
    return child, receiving


_MAIN_SWAP = threading.Lock()


@contextlib.contextmanager
def _main_left_out() -> Iterator[None]:
    """Starts a reader without its importing this process's main module again. multiprocessing
    has every process it starts import the starting process's ``__main__`` (as ``__mp_main__``)
    unless the fork server has imported it, which Python 3.11's never does (it drops the path):
    the console script's imports of the whole service, or gunicorn's or pytest's, 0.3 s a
    reader. A reader needs nothing of it: its target and arguments come from importable modules
    (a connector class of ``__main__`` is read in process, :func:`read_batches`). So while the
    reader starts, ``__main__`` is an empty module, for which nothing is imported."""
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


_PRELOADED = threading.Lock()


def _fork_server(registry: Mapping[str, type[Connector]]):
    """The fork server's context; the server, when it starts, imports what every reader needs,
    once."""
    context = multiprocessing.get_context("forkserver")
    with _PRELOADED:
        connectors = sorted({kind.__module__ for kind in registry.values()})
        context.set_forkserver_preload([__name__, *connectors])
    return context


def _log_here(record: logging.LogRecord) -> None:
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


class _LogToSyncingProcess(logging.handlers.QueueHandler):
    """Sends the reader's log records to the syncing process, which logs them as its own."""

    def __init__(self, sending) -> None:
        super().__init__(None)
        self.sending = sending

    def enqueue(self, record: logging.LogRecord) -> None:
        self.sending.send_bytes(pickle.dumps(("log", record), pickle.HIGHEST_PROTOCOL))


def _read_in_child(
    sending,
    sc: SourceConfig,
    registry: Mapping[str, type[Connector]],
    state,
    source_id: int,
    log_level: int,
) -> None:
    _end_with_syncing_process()
    root = logging.getLogger()
    root.handlers[:] = [_LogToSyncingProcess(sending)]
    root.setLevel(log_level)
    # The fork server's modules are the reader's too: keep the collector off their pages.
    gc.freeze()
    try:
        connector = sc.build_connector(registry)
        for batch in connector.read(state):
            read = read_batch(source_id, batch)
            for row in read.rows:
                # A new record's payload goes as its JSON; the syncing process reads a changed
                # record's back (``prepare_read``).
                del row["payload"]
            sending.send_bytes(pickle.dumps(("batch", read), pickle.HIGHEST_PROTOCOL))
        sending.send_bytes(pickle.dumps(("end",)))
    except BaseException as exc:  # noqa: BLE001 - every error goes to the syncing process
        # the syncing process logs its own traceback; the child's goes with the error
        exc.add_note("in the reader process:\n" + "".join(traceback.format_exception(exc)))
        sending.send_bytes(_error_message(exc))
    finally:
        sending.close()


def _end_with_syncing_process() -> None:
    """Ends the reader when the syncing process ends (killed, say) while it reads. The fork
    server would not end it: the server lives on while any of its readers does, and a reader
    may wait long on a source. The syncing process holds one end of a pipe to the reader while
    the reader runs (multiprocessing's parent sentinel); the reader sees it close."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="end-with-syncing-process", daemon=True).start()


def _error_message(exc: BaseException) -> bytes:
    """The error as it can be raised again in the syncing process; an error that does not
    survive pickling is sent as :class:`ReaderFailed` with its type, text and traceback."""
    try:
        message = pickle.dumps(("error", exc), pickle.HIGHEST_PROTOCOL)
        pickle.loads(message)  # noqa: S301 - made just above
        return message
    except Exception:  # noqa: BLE001
        failed = ReaderFailed(f"{type(exc).__name__}: {exc}")
        failed.__notes__ = list(getattr(exc, "__notes__", ()))
        return pickle.dumps(("error", failed), pickle.HIGHEST_PROTOCOL)
