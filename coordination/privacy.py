"""Personal data on purpose: retention (anonymise old approaches and contact persons, drop old
audit entries) and erasure of one contact person on request. Both are recorded in the audit log.

Anonymising keeps what the councils' statistics need (company, date, channel, organisations,
needs) and removes what identifies people: notes, consultants, the contact person in the stored
payload and the ``contactperson`` rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import bindparam, delete, or_, select, update
from sqlmodel import Session

from coordination.config import Config
from coordination.identity.normalise import normalise_email, normalise_phone
from coordination.models import (
    AuditEntry,
    ContactPerson,
    Source,
    SourceRecord,
    utcnow,
)

ERASED = "[slettet]"
_RECORD = SourceRecord.__table__
_PERSON = ContactPerson.__table__


@dataclasses.dataclass
class RetentionResult:
    records_anonymised: int = 0
    contact_persons_anonymised: int = 0
    audit_entries_deleted: int = 0


def apply_retention(
    session: Session, config: Config, today: dt.date | None = None
) -> RetentionResult:
    today = today or dt.date.today()
    result = RetentionResult()
    sources = session.execute(select(Source.id, Source.name)).all()
    for source_id, name in sources:
        cutoff = _years_before(today, config.retention.years_for(name))
        result.records_anonymised += _anonymise_records(session, source_id, cutoff)
    oldest_kept = _years_before(today, config.retention.approach_years)
    result.contact_persons_anonymised = _anonymise_persons(session, oldest_kept)
    audit_cutoff = dt.datetime.combine(
        _years_before(today, config.retention.audit_years), dt.time(), dt.UTC
    )
    deleted = session.execute(delete(AuditEntry).where(AuditEntry.at < audit_cutoff))
    result.audit_entries_deleted = deleted.rowcount or 0
    session.add(
        AuditEntry(actor="retention", action="retention.run", details=dataclasses.asdict(result))
    )
    return result


def _anonymise_records(session: Session, source_id: int, cutoff: dt.date) -> int:
    rows = session.execute(
        select(_RECORD.c.id, _RECORD.c.payload).where(
            _RECORD.c.source_id == source_id,
            _RECORD.c.approach_date < cutoff,
            _RECORD.c.consultant_email.is_not(None) | _RECORD.c.notes.is_not(None),
        )
    ).all()
    if rows:
        session.connection().execute(
            update(_RECORD)
            .where(_RECORD.c.id == bindparam("b_id"))
            .values(
                notes=None,
                consultant_name=None,
                consultant_email=None,
                payload=bindparam("b_payload"),
            ),
            [{"b_id": rid, "b_payload": {"anonymised": True}} for rid, _ in rows],
        )
    return len(rows)


def _anonymise_persons(session: Session, cutoff: dt.date) -> int:
    result = session.execute(
        update(_PERSON)
        .where(_PERSON.c.last_seen_on < cutoff, _PERSON.c.anonymised_at.is_(None))
        .values(name=None, email=None, phone=None, anonymised_at=utcnow())
    )
    return result.rowcount or 0


@dataclasses.dataclass
class ErasureResult:
    contact_persons: int = 0
    source_records: int = 0


def erase_contact_person(
    session: Session,
    *,
    email: str | None = None,
    phone: str | None = None,
    requested_by: str,
    organisation: str | None = None,
) -> ErasureResult:
    """Erase one person, found by e-mail or phone, from every source's stored data."""
    email_key, phone_key = normalise_email(email), normalise_phone(phone)
    if not email_key and not phone_key:
        raise ValueError("give a valid e-mail address or phone number of the person to erase")
    conditions = []
    if email_key:
        conditions.append(_PERSON.c.email == email_key)
    if phone_key:
        conditions.append(_PERSON.c.phone == phone_key)
    persons = session.execute(select(_PERSON).where(or_(*conditions))).all()
    needles = {email_key, phone_key} | {p.name for p in persons} | {p.email for p in persons}
    needles |= {p.phone for p in persons}
    needles.discard(None)
    result = ErasureResult(contact_persons=len(persons))
    if persons:
        session.execute(delete(_PERSON).where(_PERSON.c.id.in_([p.id for p in persons])))
    result.source_records = _scrub_payloads(session, needles)
    session.add(
        AuditEntry(
            actor=requested_by,
            organisation=organisation,
            action="contact_person.erase",
            details={
                "by": "email" if email_key else "phone",
                "contact_persons": result.contact_persons,
                "source_records": result.source_records,
            },
        )
    )
    return result


def _scrub_payloads(session: Session, needles: set[str]) -> int:
    """Replace the person's details wherever a stored payload or note holds them."""
    folded = {n.casefold() for n in needles}
    phones = {normalise_phone(n) for n in needles} - {None}
    changed = []
    query = select(_RECORD.c.id, _RECORD.c.payload, _RECORD.c.notes)
    for rid, payload, notes in session.execute(query).yield_per(2000):
        new_payload = _scrub(payload, folded, phones, needles)
        new_notes = _scrub_text(notes, needles)
        if new_payload != payload or new_notes != notes:
            changed.append({"b_id": rid, "b_payload": new_payload, "b_notes": new_notes})
    if changed:
        session.connection().execute(
            update(_RECORD)
            .where(_RECORD.c.id == bindparam("b_id"))
            .values(payload=bindparam("b_payload"), notes=bindparam("b_notes")),
            changed,
        )
    return len(changed)


def _scrub(value: Any, folded: set[str], phones: set[str], needles: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, folded, phones, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, folded, phones, needles) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.casefold() in folded or (normalise_phone(text) or "") in phones:
            return ERASED
        return _scrub_text(value, needles)  # free text such as a note naming the person
    return value


def _scrub_text(text: str | None, needles: set[str]) -> str | None:
    if not text:
        return text
    for needle in sorted(needles, key=len, reverse=True):
        if len(needle) >= 5:
            text = _replace_casefold(text, needle, ERASED)
    return text


def _replace_casefold(text: str, needle: str, replacement: str) -> str:
    lowered, target = text.casefold(), needle.casefold()
    start = lowered.find(target)
    while start != -1 and len(lowered) == len(text):
        text = text[:start] + replacement + text[start + len(needle) :]
        lowered = text.casefold()
        start = lowered.find(target, start + len(replacement))
    return text


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)
