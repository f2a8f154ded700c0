"""The identity stage of the sync pipeline: link changed source records to companies.

Records are linked, never rewritten: a ``CompanyLink`` row says which company, by which rule,
with what score. Links a person decided (``decided_by`` set) are never touched by a sync.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import bindparam, delete, insert, select, update
from sqlmodel import Session

from connectors.base import CompanyRef, PersonRef
from coordination.identity.contacts import contact_key
from coordination.identity.normalise import (
    normalise_company_name,
    normalise_email,
    normalise_phone,
    normalise_postcode,
)
from coordination.identity.resolver import CompanyIndex, KnownCompany
from coordination.identity.survivorship import CompanyFacts, choose_display
from coordination.models import (
    Company,
    CompanyLink,
    ContactPerson,
    IdentityDecision,
    MatchProposal,
    ProductionUnit,
    SourceRecord,
)
from coordination.needs.codelists import load_codelists

_RECORD = SourceRecord.__table__
_COMPANY = Company.__table__
_LINK = CompanyLink.__table__


class IdentityStage:
    """Holds the in-memory company index for one sync run; each batch calls :meth:`link`."""

    def __init__(self, session: Session) -> None:
        self.index = CompanyIndex()
        self.rejected: set[tuple[str, int]] = set()
        self._load(session)

    def _load(self, session: Session) -> None:
        units: dict[int, set[str]] = defaultdict(set)
        for p_number, company_id in session.execute(
            select(ProductionUnit.p_number, ProductionUnit.company_id)
        ):
            units[company_id].add(p_number)
        query = select(_COMPANY.c.id, _COMPANY.c.cvr, _COMPANY.c.name_key, _COMPANY.c.postcode)
        for cid, cvr, key, postcode in session.execute(
            query.where(_COMPANY.c.merged_into_id.is_(None))
        ):
            self.index.add(
                KnownCompany(
                    cid, cvr, key, normalise_postcode(postcode), frozenset(units.get(cid, ()))
                )
            )
        for key, company_id in session.execute(
            select(IdentityDecision.record_key, IdentityDecision.other_company_id).where(
                IdentityDecision.action.in_(("reject", "split")),
                IdentityDecision.record_key.is_not(None),
            )
        ):
            if company_id is not None:
                self.rejected.add((key, company_id))

    def forget(self, company_id: int) -> None:
        if company_id in self.index:
            self.index.remove(company_id)

    def link(self, session: Session, record_ids: list[int]) -> set[int]:
        """Link ``record_ids`` to companies; return every company whose records changed."""
        if not record_ids:
            return set()
        manual = self._manual_links(session, record_ids)
        rows = self._records(session, [rid for rid in record_ids if rid not in manual])
        links, proposals, affected = [], [], set(manual.values())
        for row in rows:
            company_id, resolution = self._resolve(session, row)
            links.append(
                {
                    "source_record_id": row.id,
                    "company_id": company_id,
                    "rule": resolution.rule,
                    "score": resolution.score,
                    "reason": resolution.reason or None,
                    "decided_by": None,
                    "linked_at": dt.datetime.now(dt.UTC),
                }
            )
            if resolution.proposal_company_id:
                proposals.append((company_id, resolution))
            affected.add(company_id)
            if row.company_id is not None:
                affected.add(row.company_id)
        self._write_links(session, links)
        self._write_proposals(session, proposals)
        self._production_units(session, rows, {lk["source_record_id"]: lk for lk in links})
        refresh_companies(session, affected)
        return affected

    # -- steps ----------------------------------------------------------------------------------

    def _manual_links(self, session: Session, ids: list[int]) -> dict[int, int]:
        query = select(_LINK.c.source_record_id, _LINK.c.company_id).where(
            _LINK.c.source_record_id.in_(ids), _LINK.c.decided_by.is_not(None)
        )
        return dict(session.execute(query).all())

    def _records(self, session: Session, ids: list[int]):
        columns = [
            _RECORD.c[name]
            for name in [
                "id",
                "cvr",
                "cvr_raw",
                "p_number",
                "company_name",
                "address",
                "postcode",
                "city",
                "company_id",
            ]
        ]
        return session.execute(select(*columns).where(_RECORD.c.id.in_(ids))).all()

    def _resolve(self, session: Session, row):
        ref = CompanyRef(
            name=row.company_name,
            cvr=row.cvr_raw,
            p_number=row.p_number,
            address=row.address,
            postcode=row.postcode,
            city=row.city,
        )
        resolution = self.index.resolve(ref, rejected_pairs=self.rejected)
        if resolution.company_id is None:
            company_id = self._create_company(session, row, ref, resolution.rule == "new_cvr")
            return company_id, resolution
        if row.cvr:
            self._learn_cvr(session, resolution.company_id, row.cvr)
        return resolution.company_id, resolution

    def _learn_cvr(self, session: Session, company_id: int, cvr: str) -> None:
        """A record with a valid CVR joined a company without one (by P-number or exact name):
        the company now has that CVR, so no second CVR can reach it."""
        known = self.index.get(company_id)
        if known is None or known.cvr is not None:
            return
        session.execute(update(_COMPANY).where(_COMPANY.c.id == company_id).values(cvr=cvr))
        self.index.update(dataclasses.replace(known, cvr=cvr))

    def _create_company(self, session: Session, row, ref: CompanyRef, with_cvr: bool) -> int:
        name = row.company_name or (f"CVR {row.cvr}" if row.cvr else "(ukendt)")
        key = normalise_company_name(name)
        cvr = row.cvr if with_cvr else None
        values = {
            "cvr": cvr,
            "name": name,
            "name_key": key,
            "address": row.address,
            "postcode": row.postcode,
            "city": row.city,
            "municipality_code": municipality_code(row.postcode),
            "created_at": dt.datetime.now(dt.UTC),
        }
        company_id = session.execute(insert(_COMPANY).returning(_COMPANY.c.id), values).scalar_one()
        known = KnownCompany.from_ref(company_id, ref)
        self.index.add(known if with_cvr else dataclasses.replace(known, cvr=None))
        return company_id

    def _write_links(self, session: Session, links: list[dict]) -> None:
        if not links:
            return
        ids = [lk["source_record_id"] for lk in links]
        session.execute(delete(_LINK).where(_LINK.c.source_record_id.in_(ids)))
        session.execute(insert(_LINK), links)
        session.connection().execute(
            update(_RECORD)
            .where(_RECORD.c.id == bindparam("b_id"))
            .values(company_id=bindparam("b_company")),
            [{"b_id": lk["source_record_id"], "b_company": lk["company_id"]} for lk in links],
        )

    def _write_proposals(self, session: Session, proposals) -> None:
        table = MatchProposal.__table__
        for company_id, resolution in proposals:
            exists = session.execute(
                select(table.c.id).where(
                    table.c.company_id == company_id,
                    table.c.candidate_company_id == resolution.proposal_company_id,
                )
            ).first()
            if exists is None:
                session.execute(
                    insert(table).values(
                        company_id=company_id,
                        candidate_company_id=resolution.proposal_company_id,
                        score=resolution.score,
                        reason=resolution.reason,
                        status="proposed",
                        created_at=dt.datetime.now(dt.UTC),
                    )
                )

    def _production_units(self, session: Session, rows, links: dict[int, dict]) -> None:
        table = ProductionUnit.__table__
        wanted = {
            row.p_number: (links[row.id]["company_id"], row)
            for row in rows
            if row.p_number and row.id in links
        }
        if not wanted:
            return
        known = set(
            session.execute(select(table.c.p_number).where(table.c.p_number.in_(list(wanted))))
            .scalars()
            .all()
        )
        fresh = [
            {
                "p_number": p,
                "company_id": cid,
                "address": row.address,
                "postcode": row.postcode,
                "city": row.city,
            }
            for p, (cid, row) in wanted.items()
            if p not in known
        ]
        if fresh:
            session.execute(insert(table), fresh)


def refresh_companies(session: Session, company_ids: Iterable[int]) -> None:
    """Re-derive display fields and contact persons of ``company_ids`` from their records."""
    ids = sorted(set(company_ids))
    if not ids:
        return
    columns = [
        _RECORD.c[name]
        for name in [
            "company_id",
            "cvr",
            "company_name",
            "address",
            "postcode",
            "city",
            "approach_date",
            "modified_at",
            "payload",
        ]
    ]
    by_company: dict[int, list] = defaultdict(list)
    for row in session.execute(select(*columns).where(_RECORD.c.company_id.in_(ids))):
        by_company[row.company_id].append(row)
    updates = []
    for company_id in ids:
        rows = by_company.get(company_id)
        if not rows:
            continue
        display = choose_display([_facts(row) for row in rows])
        updates.append(
            {
                "b_id": company_id,
                "b_name": display.name or "(ukendt)",
                "b_key": normalise_company_name(display.name or ""),
                "b_address": display.address,
                "b_postcode": display.postcode,
                "b_city": display.city,
                "b_mun": municipality_code(display.postcode),
            }
        )
    if updates:
        session.connection().execute(
            update(_COMPANY)
            .where(_COMPANY.c.id == bindparam("b_id"))
            .values(
                name=bindparam("b_name"),
                name_key=bindparam("b_key"),
                address=bindparam("b_address"),
                postcode=bindparam("b_postcode"),
                city=bindparam("b_city"),
                municipality_code=bindparam("b_mun"),
            ),
            updates,
        )
    _refresh_contacts(session, ids, by_company)


def municipality_code(postcode: str | None) -> str | None:
    municipality = load_codelists().municipality_for_postcode(postcode) if postcode else None
    return municipality.code if municipality else None


def _facts(row) -> CompanyFacts:
    modified = row.modified_at
    if modified is not None and modified.tzinfo is None:  # SQLite hands back naive UTC
        modified = modified.replace(tzinfo=dt.UTC)
    return CompanyFacts(
        cvr=row.cvr,
        name=row.company_name,
        address=row.address,
        postcode=row.postcode,
        city=row.city,
        approach_date=row.approach_date,
        modified_at=modified,
    )


def _refresh_contacts(session: Session, ids: list[int], by_company: dict[int, list]) -> None:
    table = ContactPerson.__table__
    existing = {
        (row.company_id, row.person_key): row
        for row in session.execute(select(table).where(table.c.company_id.in_(ids)))
    }
    merged: dict[tuple[int, str], dict] = {}
    for company_id, rows in by_company.items():
        for row in sorted(rows, key=lambda r: r.approach_date):
            person = (row.payload or {}).get("contact_person")
            if not person:
                continue
            ref = PersonRef(person.get("name"), person.get("email"), person.get("phone"))
            key = contact_key(ref)
            if (
                key is None
                or (company_id, key) in existing
                and existing[(company_id, key)].anonymised_at
            ):
                continue
            entry = merged.setdefault(
                (company_id, key), {"company_id": company_id, "person_key": key}
            )
            entry["name"] = ref.name or entry.get("name")
            entry["email"] = normalise_email(ref.email) or entry.get("email")
            entry["phone"] = normalise_phone(ref.phone) or entry.get("phone")
            entry["last_seen_on"] = row.approach_date
    fresh = [dict(v) for k, v in merged.items() if k not in existing]
    if fresh:
        session.execute(insert(table), fresh)
    changed = [
        {f"b_{k}": v for k, v in entry.items() if k != "company_id"}
        | {"b_company_id": entry["company_id"]}
        for k, entry in merged.items()
        if k in existing
    ]
    if changed:
        session.connection().execute(
            update(table)
            .where(
                table.c.company_id == bindparam("b_company_id"),
                table.c.person_key == bindparam("b_person_key"),
            )
            .values(
                name=bindparam("b_name"),
                email=bindparam("b_email"),
                phone=bindparam("b_phone"),
                last_seen_on=bindparam("b_last_seen_on"),
            ),
            changed,
        )
