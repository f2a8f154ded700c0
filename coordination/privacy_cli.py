"""CLI: ``coordination privacy retention`` and ``coordination privacy erase``."""

from __future__ import annotations

import click

from coordination.config import ConfigError, load_config
from coordination.db import make_engine, session_scope
from coordination.privacy import apply_retention, erase_contact_person


def _config():
    try:
        return load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def privacy() -> None:
    """Retention and erasure of personal data."""


@privacy.command("retention")
def retention() -> None:
    """Anonymise approaches and contact persons past their retention; drop old audit entries."""
    config = _config()
    with session_scope(make_engine(config.database_url)) as session:
        result = apply_retention(session, config)
    click.echo(
        f"anonymised {result.records_anonymised} source records and "
        f"{result.contact_persons_anonymised} contact persons; "
        f"deleted {result.audit_entries_deleted} audit entries"
    )


@privacy.command("erase")
@click.option("--email", default=None)
@click.option("--phone", default=None)
@click.option("--by", "requested_by", required=True, help="Who asked for the erasure.")
def erase(email: str | None, phone: str | None, requested_by: str) -> None:
    """Erase one contact person (by e-mail or phone) across all sources."""
    config = _config()
    with session_scope(make_engine(config.database_url)) as session:
        try:
            result = erase_contact_person(
                session, email=email, phone=phone, requested_by=requested_by
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"erased {result.contact_persons} contact person rows; "
        f"scrubbed {result.source_records} source records"
    )


commands = [privacy]
