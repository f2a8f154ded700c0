"""CLI: ``coordination tokens create|list|revoke``."""

from __future__ import annotations

import datetime as dt

import click
from sqlalchemy import select
from sqlmodel import Session

from coordination.config import ConfigError, load_config
from coordination.db import make_engine, session_scope
from coordination.models import ApiToken, AuditEntry
from coordination.tokens import ROLES, TokenError, create_token, revoke


def _engine():
    try:
        return make_engine(load_config().database_url)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def tokens() -> None:
    """API tokens: create (shown once), list, revoke."""


@tokens.command("create")
@click.option("--organisation", required=True, help="The organisation the token acts for.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--label", default=None, help="A note for the operator, e.g. who holds it.")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None)
def create(organisation: str, role: str, label: str | None, expires_in_days: int | None) -> None:
    """Print a new API token once; only its hash is stored."""
    expires = None
    if expires_in_days:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days)
    with session_scope(_engine()) as session:
        try:
            token, plain = create_token(session, organisation, role, label, expires)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        session.add(
            AuditEntry(
                actor="cli",
                action="token.create",
                target=f"token:{token.id}",
                details={"organisation": token.organisation, "role": role},
            )
        )
    click.echo(plain)


@tokens.command("list")
def list_tokens() -> None:
    """List tokens (never their secret)."""
    with Session(_engine()) as session:
        rows = session.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
        for t in rows:
            state = "revoked" if t.revoked_at else "active"
            expires = t.expires_at.date().isoformat() if t.expires_at else "never"
            click.echo(
                f"{t.id:>5}  {t.role:<11} {state:<8} expires {expires:<10} "
                f"{t.organisation}{'  (' + t.label + ')' if t.label else ''}"
            )


@tokens.command("revoke")
@click.argument("token_id", type=int)
def revoke_token(token_id: int) -> None:
    """Revoke a token by its id (see ``tokens list``)."""
    with session_scope(_engine()) as session:
        try:
            revoke(session, token_id)
        except TokenError as exc:
            raise click.ClickException(str(exc)) from exc
        session.add(AuditEntry(actor="cli", action="token.revoke", target=f"token:{token_id}"))
    click.echo(f"token {token_id} revoked")


commands = [tokens]
