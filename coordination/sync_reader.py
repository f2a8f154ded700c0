"""Reading a source for the sync: its connector's batches in their stored form (``ReadBatch``).

The connector (fetching, parsing, mapping) and the database-free half of storing (validation,
redaction, the payload's JSON, the content hash) take about a third of a full sync's CPU time.
:func:`read_batches` runs them in a child process forked for the source, one batch ahead of
the syncing process, which meanwhile resolves and stores the batch before: the second core
does that third. The child only reads: it never touches the database, and a batch's cursor is
committed by the syncing process with the batch, as without it, so the crash model is the
same. It sends one batch at a time through a pipe and waits until the syncing process takes
it, so at most two batches are in flight (memory stays flat). An error in the child is raised
in the syncing process where the connector would have raised it; a child that dies is an
error of the source. Where ``fork`` is unavailable, and for every read after a source's first
(:func:`worth_a_process`), the batches are read in process.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import pickle
import signal
import stat
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.base import Connector
from coordination.config import SourceConfig
from coordination.ingest import ReadBatch, read_batch


class ReaderDied(RuntimeError):
    """The reader process of a source ended without finishing its batches."""


class ReaderFailed(RuntimeError):
    """An error in the reader process that could not be sent over as it was."""


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def worth_a_process(state: Any) -> bool:
    """Whether reading from ``state`` on is worth a process of its own: only a source's first
    read (no saved state), which brings its whole history. A later read brings a night's
    delta, a batch or two; forking a syncing process that holds the company index costs about
    40 ms a source at 300,000 companies (its pages fault on their next write after a fork),
    more than such a delta's overlap saves (the nightly job on 2,000,000 approaches measured
    0.5 s slower with a process for each of its 25 sources)."""
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
        connector = sc.build_connector(registry)
        for batch in connector.read(state):
            yield read_batch(source_id, batch)
        return
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_read_in_child,
        args=(sending, sc, registry, state, source_id, os.getpid()),
        name=f"sync-reader-{sc.name}",
        daemon=True,
    )
    child.start()
    sending.close()
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
            elif kind == "end":
                return
            else:  # "error"
                raise message[1]
    finally:
        receiving.close()
        if child.is_alive():  # the sync stopped early: the rest of the source is not read
            child.kill()
        child.join()


def _read_in_child(
    sending,
    sc: SourceConfig,
    registry: Mapping[str, type[Connector]],
    state,
    source_id: int,
    parent: int,
) -> None:
    _die_with_parent()
    if os.getppid() != parent:  # died before the child could ask to die with it
        os._exit(1)
    _close_sockets()
    # The parent's objects are the child's too: keep the collector off their pages.
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
        os._exit(0)  # nothing of the parent's (its connections) is closed or flushed here


def _die_with_parent() -> None:
    """A syncing process that is killed takes its reader with it (Linux; elsewhere the reader
    ends at its next batch, when the pipe is gone)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1


def _close_sockets() -> None:
    """Closes the child's copies of the parent's sockets (its database connections, the
    PostgreSQL sync lock's among them; a server's listening socket): a connection's server
    sees it end when the parent's ends, not when the child's does. The parent's stay open."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd <= 2:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            pass


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
