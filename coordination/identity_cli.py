"""CLI: ``coordination identity proposals|accept|reject|merge|split|undo|decisions``.

The same operations as the API (``coordination/identity_review.py``); every decision names who
took it (``--by``) and why (``--reason``), and is written to the audit log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click
from sqlalchemy import Engine
from sqlmodel import Session

from coordination.config import ConfigError, load_config
from coordination.db import make_engine, session_scope
from coordination.identity_review import (
    PROPOSAL_STATUSES,
    IdentityReviewError,
    Reviewer,
    accept_proposal,
    list_decisions,
    list_proposals,
    merge_companies,
    reject_proposal,
    split_record,
    undo_decision,
)
from coordination.models import AuditEntry, IdentityDecision


def _config():
    try:
        return load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@contextlib.contextmanager
def _engine(config) -> Iterator[Engine]:
    """The database of ``config``, its connections closed when the command is done."""
    engine = make_engine(config.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _decision_options(command: Callable) -> Callable:
    command = click.option(
        "--organisation", default=None, help="The organisation the person acts for."
    )(command)
    command = click.option("--by", "by", required=True, help="Who takes the decision.")(command)
    return click.option("--reason", required=True, help="Why (kept with the decision).")(command)


def _decide(action: str, by: str, organisation: str | None, operation: Callable) -> None:
    """Run ``operation(session, reviewer, rules)`` in one transaction, audit it, report it."""
    config = _config()
    reviewer = Reviewer(by, organisation)
    with _engine(config) as engine, session_scope(engine) as session:
        try:
            decision: IdentityDecision = operation(session, reviewer, config.rules)
        except IdentityReviewError as exc:
            raise click.ClickException(str(exc)) from exc
        session.add(
            AuditEntry(
                actor=by,
                organisation=organisation,
                action=f"identity.{action}",
                target=f"identity-decision:{decision.id}",
                details={"company_id": decision.company_id, "other": decision.other_company_id},
            )
        )
    click.echo(f"decision {decision.id}: {_describe(decision)}")


def _describe(decision: IdentityDecision) -> str:
    words = {
        "accept": "company {c} merged into company {o}",
        "merge": "company {c} merged into company {o}",
        "reject": "company {c} is not company {o}",
        "split": "record moved from company {o} to company {c}",
        "undo": "undid decision {u}",
    }[decision.action]
    undoes = (decision.details or {}).get("undoes")
    return words.format(c=decision.company_id, o=decision.other_company_id, u=undoes)


@click.group()
def identity() -> None:
    """Review company matches: proposals, merges, splits, and their undo."""


@identity.command("proposals")
@click.option("--status", type=click.Choice(PROPOSAL_STATUSES), default="proposed")
@click.option("--page", type=click.IntRange(min=1), default=1)
@click.option("--page-size", type=click.IntRange(min=1, max=1000), default=50)
def proposals(status: str, page: int, page_size: int) -> None:
    """List match proposals, both companies side by side."""
    config = _config()
    with _engine(config) as engine, Session(engine) as session:
        found = list_proposals(session, status, page, page_size)
    click.echo(f"{found.total} {status} proposal(s)")
    for p in found.items:
        click.echo(f"#{p.id}  score {p.score:.1f}  {p.reason}")
        for label, side in (("company  ", p.company), ("candidate", p.candidate)):
            click.echo(
                f"    {label} {side.id}: {side.name} | CVR {side.cvr or '-'} | "
                f"{side.address or ''} {side.postcode or ''} {side.city or ''} | "
                f"{side.records} record(s): {', '.join(side.organisations)}"
            )


@identity.command("accept")
@click.argument("proposal_id", type=int)
@_decision_options
def accept(proposal_id: int, reason: str, by: str, organisation: str | None) -> None:
    """Accept proposal PROPOSAL_ID: merge its company into the candidate."""
    _decide(
        "accept",
        by,
        organisation,
        lambda s, who, rules: accept_proposal(s, proposal_id, who, reason, rules),
    )


@identity.command("reject")
@click.argument("proposal_id", type=int)
@_decision_options
def reject(proposal_id: int, reason: str, by: str, organisation: str | None) -> None:
    """Reject proposal PROPOSAL_ID: the two are different companies."""
    _decide(
        "reject",
        by,
        organisation,
        lambda s, who, rules: reject_proposal(s, proposal_id, who, reason, rules),
    )


@identity.command("merge")
@click.argument("company_id", type=int)
@click.argument("into_company_id", type=int)
@_decision_options
def merge(
    company_id: int, into_company_id: int, reason: str, by: str, organisation: str | None
) -> None:
    """Merge company COMPANY_ID into company INTO_COMPANY_ID."""
    _decide(
        "merge",
        by,
        organisation,
        lambda s, who, rules: merge_companies(s, company_id, into_company_id, who, reason, rules),
    )


@identity.command("split")
@click.argument("source")
@click.argument("source_id")
@click.option("--into", "into_company_id", type=int, default=None, help="An existing company.")
@_decision_options
def split(
    source: str,
    source_id: str,
    into_company_id: int | None,
    reason: str,
    by: str,
    organisation: str | None,
) -> None:
    """Move record SOURCE_ID of source SOURCE out of its company (into a new one, or --into)."""
    _decide(
        "split",
        by,
        organisation,
        lambda s, who, rules: split_record(
            s, source, source_id, who, reason, rules, into_company_id=into_company_id
        ),
    )


@identity.command("undo")
@click.argument("decision_id", type=int)
@_decision_options
def undo(decision_id: int, reason: str, by: str, organisation: str | None) -> None:
    """Undo decision DECISION_ID (see ``identity decisions``)."""
    _decide(
        "undo",
        by,
        organisation,
        lambda s, who, rules: undo_decision(s, decision_id, who, reason, rules),
    )


@identity.command("decisions")
@click.option("--company", "company_id", type=int, default=None)
@click.option("--page", type=click.IntRange(min=1), default=1)
@click.option("--page-size", type=click.IntRange(min=1, max=1000), default=50)
def decisions(company_id: int | None, page: int, page_size: int) -> None:
    """List identity decisions, newest first."""
    config = _config()
    with _engine(config) as engine, Session(engine) as session:
        found = list_decisions(session, page, page_size, company_id=company_id)
        for d in found.items:
            undone = f"  (undone by {d.undone_by_id})" if d.undone_by_id else ""
            click.echo(
                f"{d.id:>6}  {d.decided_at:%Y-%m-%d %H:%M}  {d.action:<6} {_describe(d)}  "
                f"by {d.decided_by}{' / ' + d.organisation if d.organisation else ''}: "
                f"{d.reason or ''}{undone}"
            )


commands = [identity]
