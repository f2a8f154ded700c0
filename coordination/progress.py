"""Progress of a sync: a live display on a terminal, plain log lines otherwise."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from coordination.ingest import BatchCounts

log = logging.getLogger("coordination.sync")


@contextlib.contextmanager
def progress_reporter(interactive: bool) -> Iterator:
    if not interactive:
        yield _log_progress()
        return
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), TextColumn("{task.fields[status]}"))
    with Progress(*columns, TimeElapsedColumn(), transient=False) as bar:
        tasks: dict[str, tuple[int, float]] = {}

        def report(source: str, counts: BatchCounts) -> None:
            if source not in tasks:
                tasks[source] = (bar.add_task(source, status=""), time.monotonic())
            task, started = tasks[source]
            rate = counts.fetched / max(time.monotonic() - started, 1e-6)
            bar.update(task, status=f"{_summary(counts)}  {rate:,.0f} records/s")

        yield report


def _log_progress():
    last: dict[str, float] = {}

    def report(source: str, counts: BatchCounts) -> None:
        if not counts.fetched:  # just started: the first line comes with the first records
            return
        now = time.monotonic()
        if now - last.get(source, 0.0) >= 10:  # quiet: one line per source every 10 s at most
            last[source] = now
            log.info("source=%s progress %s", source, _summary(counts))

    return report


def _summary(c: BatchCounts) -> str:
    return (
        f"fetched {c.fetched:,} new {c.new:,} updated {c.updated:,} "
        f"unchanged {c.unchanged:,} quarantined {c.quarantined:,}"
    )
