"""Small builders that insert report test data directly: organisations, sources, companies,
source records with their needs, approaches linked to them, prior-contact checks and flags.

Every builder takes the session first and flushes, so the returned row has its id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import shutil
from collections.abc import Sequence

from sqlmodel import Session

from connectors.base import NeedRef
from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Company,
    Flag,
    Need,
    Organisation,
    PriorContactCheck,
    Source,
    SourceRecord,
)
from coordination.needs.codelists import load_codelists
from coordination.needs.mapping import NeedMapper, load_source_tables

KIND_OF_TYPE = {"vaeksthus": "odata-crm", "jobcenter": "csv-drop", "veu": "rest-json"}
_serial = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class NeedSpec:
    type: str
    label: str
    code: str | None = None
    taxonomy_code: str | None = None
    mapping_method: str = "test"


def need(type: str, label: str, taxonomy_code: str | None = None, code: str | None = None):
    """A need as stored, with the classification given by hand (None: unclassified)."""
    return NeedSpec(type, label, code, taxonomy_code, "test" if taxonomy_code else "none")


@functools.cache
def _mapper() -> NeedMapper:
    return NeedMapper(load_codelists(), load_source_tables())


def noted(source: Source, type: str, label: str, code: str | None = None) -> NeedSpec:
    """A need as ``source`` delivers it, classified by the shipped mapping like a sync does."""
    found = _mapper().classify(
        NeedRef(type, label, code), source_kind=source.kind, source_name=source.name
    )
    return NeedSpec(type, label, code, found.taxonomy_code, found.method)


def organisation(
    session: Session, name: str, type: str, municipality_code: str | None = None
) -> Organisation:
    row = Organisation(
        name=name, name_key=name.casefold(), type=type, municipality_code=municipality_code
    )
    session.add(row)
    session.flush()
    return row


def source(session: Session, organisation: Organisation, name: str | None = None) -> Source:
    """A source of ``organisation``, of the kind its organisation type delivers through."""
    row = Source(
        name=name or f"source-{next(_serial)}",
        kind=KIND_OF_TYPE[organisation.type],
        organisation_id=organisation.id,
    )
    session.add(row)
    session.flush()
    return row


def company(
    session: Session,
    municipality_code: str | None = "751",
    industry_section: str | None = None,
    name: str | None = None,
    cvr: str | None = None,
) -> Company:
    name = name or f"Virksomhed {next(_serial)} ApS"
    row = Company(
        name=name,
        name_key=name.casefold(),
        municipality_code=municipality_code,
        industry_section=industry_section,
        cvr=cvr,
    )
    session.add(row)
    session.flush()
    return row


def record(
    session: Session,
    source: Source,
    company: Company,
    on: dt.date,
    needs: Sequence[NeedSpec] = (),
    status: str = "completed",
) -> SourceRecord:
    row = SourceRecord(
        source_id=source.id,
        external_id=f"ext-{next(_serial)}",
        content_hash="0" * 64,
        status=status,
        approach_date=on,
        channel="visit",
        company_id=company.id,
        payload={},
    )
    session.add(row)
    session.flush()
    for spec in needs:
        session.add(
            Need(
                source_record_id=row.id,
                type=spec.type,
                code=spec.code,
                label=spec.label,
                taxonomy_code=spec.taxonomy_code,
                mapping_method=spec.mapping_method,
            )
        )
    session.flush()
    return row


def approach(
    session: Session,
    company: Company,
    on: dt.date,
    source: Source,
    needs: Sequence[NeedSpec] = (),
    *,
    joint: Sequence[tuple[Source, Sequence[NeedSpec]]] = (),
    coordinated: bool = True,
    planned: bool = False,
) -> Approach:
    """An approach to ``company`` on ``on`` by ``source``'s organisation noting ``needs``;
    ``joint`` adds the records of other sources (with their needs) to the same approach."""
    status = "planned" if planned else "completed"
    records = [record(session, source, company, on, needs, status)]
    records += [
        record(session, other, company, on, other_needs, status) for other, other_needs in joint
    ]
    organisation_ids = sorted({s.organisation_id for s in [source, *(o for o, _ in joint)]})
    names = sorted(session.get(Organisation, oid).name for oid in organisation_ids)
    row = Approach(
        group_key=min(r.id for r in records),
        company_id=company.id,
        date=on,
        channel="visit",
        planned=planned,
        joint=len(organisation_ids) > 1,
        coordinated=coordinated,
        organisations=names,
    )
    session.add(row)
    session.flush()
    for r in records:
        session.add(ApproachRecord(source_record_id=r.id, approach_id=row.id))
    for oid in organisation_ids:
        session.add(ApproachOrganisation(approach_id=row.id, organisation_id=oid))
    session.flush()
    return row


def check(
    session: Session, company: Company, organisation: Organisation, at: dt.datetime
) -> PriorContactCheck:
    row = PriorContactCheck(company_id=company.id, organisation_id=organisation.id, checked_at=at)
    session.add(row)
    session.flush()
    return row


def flag(
    session: Session,
    company: Company,
    raised_on: dt.date,
    organisations: Sequence[Organisation],
    status: str = "open",
) -> Flag:
    row = Flag(
        company_id=company.id,
        raised_on=raised_on,
        status=status,
        organisations=sorted(o.name for o in organisations),
    )
    session.add(row)
    session.flush()
    return row


def herning_moves_to_oestjylland(directory, valid_from: dt.date):
    """The shipped code lists copied into ``directory`` with a made-up reform: from
    ``valid_from`` RAR Østjylland also holds Herning (657)."""
    shutil.copytree(load_codelists().directory, directory)
    with (directory / "areas.toml").open("a", encoding="utf-8") as areas:
        areas.write(
            '\n[[area]]\nid = "rar-oestjylland"\nname = "RAR Østjylland"\n'
            f'valid_from = {valid_from.isoformat()}\nmunicipalities = ["657", "751"]\n'
        )
    return load_codelists(directory)
