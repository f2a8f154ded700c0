"""The ``coordination`` console script."""

from __future__ import annotations

import logging
import sys

import click

from coordination.config import ConfigError, load_config


def _load():
    try:
        return load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool) -> None:
    """Competence-needs coordination service."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not verbose:  # migrations narrate every step at INFO; operators need only problems
        logging.getLogger("alembic").setLevel(logging.WARNING)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the schema."""
    from coordination.db import upgrade

    config = _load()
    upgrade(config.database_url, revision)
    click.echo(f"database at {_safe_url(config.database_url)} is at revision {revision}")


@main.command()
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@click.option(
    "--rebuild-all",
    is_flag=True,
    help="First rebuild every company's approaches from its records and re-evaluate its flags: "
    "run once after changing joint_date_tolerance_days or a source's organisation.",
)
def sync(sources: tuple[str, ...], rebuild_all: bool) -> None:
    """Run the connectors once. Exit 1 when any source failed (the others still ran)."""
    from coordination.services import SyncAlreadyRunning, run_sync

    config = _load()
    try:
        result = run_sync(config, list(sources) or None, "cli", _tty(), rebuild_all=rebuild_all)
    except (ConfigError, SyncAlreadyRunning) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_result(result)
    sys.exit(0 if result.ok else 1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the API and web pages (development server; use gunicorn in production)."""
    from coordination import create_app

    app = create_app()
    app.run(host=host, port=port)


@main.command()
@click.option("--folder", default="coordination-demo", show_default=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Stop after the sync (for scripts and tests).")
def demo(folder: str, host: str, port: int, no_serve: bool) -> None:
    """Create a local demo database, sync realistic demo sources, and serve the pages."""
    from pathlib import Path

    from coordination.demo.run import run_demo

    run_demo(Path(folder), host=host, port=port, serve=not no_serve)


# Feature command groups live beside their features; each module exposes ``commands``.
FEATURE_COMMANDS = (
    "coordination.tokens_cli",
    "coordination.identity_cli",
    "coordination.jobs_cli",
    "coordination.privacy_cli",
)


def _register_feature_commands() -> None:
    import importlib

    for name in FEATURE_COMMANDS:
        for command in importlib.import_module(name).commands:
            main.add_command(command)


def _tty() -> bool:
    return sys.stdout.isatty()


def _print_result(result) -> None:
    click.echo(f"sync run {result.run_id}:")
    for o in result.outcomes:
        c = o.counts
        line = (
            f"  {o.name:<24} {o.status:<9} fetched={c.fetched} new={c.new} updated={c.updated} "
            f"unchanged={c.unchanged} removed={c.removed} quarantined={c.quarantined} "
            f"({o.seconds:.1f}s)"
        )
        click.echo(line + (f"\n    error: {o.error}" if o.error else ""))
    click.echo(f"  flags raised: {result.flags_raised}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


_register_feature_commands()
