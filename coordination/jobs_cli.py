"""CLI: ``coordination scheduler`` (run the nightly jobs) and ``coordination jobs`` (their
history)."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import click
from sqlmodel import Session

from coordination.config import ConfigError, load_config


def _config():
    try:
        return load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option(
    "--every-seconds",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    help="FOR TESTS ONLY: fire every N seconds (at wall-clock multiples of N, so that several "
    "processes compute the same fire times) instead of [schedule].sync_cron.",
)
def scheduler(every_seconds: int | None) -> None:
    """Run the nightly jobs until stopped (SIGTERM/SIGINT: finish the current batch, then exit).

    Safe to start on several machines at once: each occurrence runs in exactly one process.
    Never run it inside the web server's workers.
    """
    from coordination.scheduler import JobScheduler

    config = _config()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # our own lines say what ran
    JobScheduler(config, every_seconds=every_seconds).run_until_stopped()


@click.command()
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@click.option(
    "--abandoned-after-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=12.0,
    show_default=True,
    help="A run still unfinished after this long belongs to a process that died.",
)
def jobs(limit: int, abandoned_after_hours: float) -> None:
    """Show the latest scheduled job runs (newest first), including abandoned ones."""
    from coordination.db import make_engine
    from coordination.scheduler import claims_status

    config = _config()
    zone = ZoneInfo(config.schedule.timezone)
    engine = make_engine(config.database_url)
    with Session(engine) as session:
        views = claims_status(
            session, abandoned_after=dt.timedelta(hours=abandoned_after_hours), limit=limit
        )
    if not views:
        click.echo("no scheduled job has run yet")
    for view in views:
        fired = view.fire_time.astimezone(zone).isoformat(timespec="seconds")
        took = ""
        if view.finished_at is not None:
            took = f" {(view.finished_at - view.claimed_at).total_seconds():.0f}s"
        line = f"{view.job_id:<14} {fired}  {view.status:<10} {view.claimed_by}{took}"
        click.echo(line + (f"\n    {view.error}" if view.error else ""))
    engine.dispose()


commands = [scheduler, jobs]
