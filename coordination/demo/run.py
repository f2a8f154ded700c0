"""``coordination demo``: a working service on a fresh machine, with realistic data.

Writes demo deliveries for Region Midtjylland in all three formats, serves the CRM and the VEU
APIs from local fake servers on 127.0.0.1, syncs everything through the real connectors into a
local SQLite database, prints what happened, creates one token per role, and serves the service.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from contextlib import ExitStack
from pathlib import Path

import click
from sqlalchemy import func, select
from sqlmodel import Session

from connectors.base import load_registry
from coordination.config import Config, parse_config
from coordination.db import make_engine, session_scope, upgrade
from coordination.demo.fakes import FakeODataCrm, FakeVeuApi
from coordination.demo.generator import DemoDeliveries, Scenario, write_demo_deliveries
from coordination.models import (
    Approach,
    Company,
    Flag,
    MatchProposal,
    Need,
    QuarantinedRecord,
    SourceRecord,
)
from coordination.services import run_sync
from coordination.tokens import ROLES, create_token

DEMO_SECRET = "demo-secret"  # noqa: S105 (the local fake server's own, printed demo secret)
DEMO_KEY = "demo-key"
ORGANISATION_TYPES = {"crm": "vaeksthus", "jobcenter": "jobcenter", "veu": "veu"}


@dataclasses.dataclass
class DemoSetup:
    config: Config
    deliveries: DemoDeliveries
    tokens: dict[str, str]


def run_demo(
    folder: Path = Path("coordination-demo"),
    host: str = "127.0.0.1",
    port: int = 5000,
    serve: bool = True,
) -> DemoSetup:
    with ExitStack() as stack:
        setup = prepare_demo(folder, stack)
        if serve:
            _serve(setup, host, port)
        return setup


def prepare_demo(folder: Path, stack: ExitStack, today: dt.date | None = None) -> DemoSetup:
    """Create the demo under ``folder`` (replacing an earlier demo there) and sync it. The fake
    servers stay up until ``stack`` closes."""
    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    scenario = Scenario.demo(end=today or dt.date.today())
    click.echo(f"Writing demo deliveries for Region Midtjylland to {folder}/deliveries ...")
    deliveries = write_demo_deliveries(folder / "deliveries", scenario)
    crm = stack.enter_context(
        FakeODataCrm.from_file(next(iter(deliveries.crm.values())), client_secret=DEMO_SECRET)
    )
    veus = {
        name: stack.enter_context(FakeVeuApi.from_file(path, api_key=DEMO_KEY))
        for name, path in deliveries.veu.items()
    }
    config = _config(folder, scenario, deliveries, crm, veus)
    click.echo(f"Creating the database {config.database_url} ...")
    upgrade(config.database_url)
    click.echo("Syncing all sources through the real connectors ...")
    engine = make_engine(config.database_url)
    result = run_sync(config, trigger="demo", interactive=_tty(), engine=engine)
    for outcome in result.outcomes:
        c = outcome.counts
        click.echo(
            f"  {outcome.name:<20} {outcome.status:<9} fetched {c.fetched:>4}  new {c.new:>4}  "
            f"removed {c.removed:>3}  quarantined {c.quarantined:>2}"
        )
    tokens = _tokens(engine)
    _print_summary(engine, tokens)
    engine.dispose()
    return DemoSetup(config, deliveries, tokens)


def _tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _config(folder, scenario, deliveries, crm, veus) -> Config:
    municipality = {name: code for name, _, code in scenario.jobcentres}
    sources = []
    environ = {}
    for name, organisation, kind in scenario.sources():
        entry = {
            "name": name,
            "kind": {"crm": "odata-crm", "jobcenter": "csv-drop", "veu": "rest-json"}[kind],
            "organisation": organisation,
            "organisation_type": ORGANISATION_TYPES[kind],
        }
        if kind == "crm":
            entry |= {
                "base_url": crm.base_url,
                "token_url": crm.token_url,
                "client_id": "demo-client",
                "client_secret_env": "DEMO_CRM_SECRET",
            }
            environ["DEMO_CRM_SECRET"] = DEMO_SECRET
        elif kind == "veu":
            variable = f"DEMO_{name.upper().replace('-', '_')}_KEY"
            entry |= {"base_url": veus[name].base_url, "api_key_env": variable}
            environ[variable] = DEMO_KEY
        else:
            entry |= {"path": str(folder / "deliveries" / name)}
            entry["municipality_code"] = municipality[name]
        sources.append(entry)
    raw = {"database": {"url": f"sqlite:///{folder / 'coordination.db'}"}, "sources": sources}
    return parse_config(raw, environ, load_registry())


def _tokens(engine) -> dict[str, str]:
    organisations = {
        "visitor": "Jobcenter Aarhus",
        "coordinator": "Væksthus Midtjylland",
        "council": "RAR Østjylland",
        "admin": "Region Midtjylland IT",
    }
    tokens = {}
    with session_scope(engine) as session:
        for role in ROLES:
            _, tokens[role] = create_token(session, organisations[role], role, label="demo")
    return tokens


def _print_summary(engine, tokens: dict[str, str]) -> None:
    with Session(engine) as session:

        def count(model, *where) -> int:
            query = select(func.count()).select_from(model)
            for condition in where:
                query = query.where(condition)
            return session.execute(query).scalar_one()

        click.echo("")
        click.echo("What the demo database now holds:")
        click.echo(f"  source records        {count(SourceRecord)}")
        click.echo(f"  quarantined records   {count(QuarantinedRecord)}")
        click.echo(f"  companies             {count(Company)}")
        click.echo(f"    without a CVR       {count(Company, Company.cvr.is_(None))}")
        click.echo(f"  approaches            {count(Approach)}")
        click.echo(f"    joint               {count(Approach, Approach.joint.is_(True))}")
        click.echo(f"    uncoordinated       {count(Approach, Approach.coordinated.is_(False))}")
        click.echo(f"  flags                 {count(Flag)}")
        click.echo(f"  match proposals       {count(MatchProposal)}")
        click.echo(
            f"  needs (unclassified)  {count(Need)} ({count(Need, Need.taxonomy_code.is_(None))})"
        )
    click.echo("")
    click.echo("API tokens for trying the service (demo only):")
    for role, token in tokens.items():
        click.echo(f"  {role:<12} {token}")


def _serve(setup: DemoSetup, host: str, port: int) -> None:
    from coordination import create_app

    app = create_app({"COORDINATION": setup.config})
    click.echo("")
    click.echo(f"Serving on http://{host}:{port}/ (log in with a token above; Ctrl+C stops)")
    click.echo(f"API documentation: http://{host}:{port}/api/v1/docs")
    app.run(host=host, port=port)
