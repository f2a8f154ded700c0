"""Companies for consultants: search, detail, the prior-contact check and planned visits.

Functions take the caller's Session (the API's unit of work, a CLI command or a test) and never
commit; nothing here knows about HTTP.

Search (:func:`search_companies`)
    ``cvr`` (or a ``q`` that is a valid CVR number) finds that company exactly. Any other ``q`` is
    a name, matched fuzzily. The database picks candidates by index range scans over the
    normalised names (``company.name_key``): for each of the query's first words, the
    :data:`NEIGHBOURS` names on either side of the query from that word on, in name order, among
    those sharing the word's first three letters; when a postcode or municipality narrows the
    search, also every company there (at most :data:`MAX_AREA_CANDIDATES`). rapidfuzz then
    scores the candidates against the normalised query and keeps those scoring at least
    :data:`MIN_NAME_SCORE`, best first. So "Madsen og Bøg" finds "Madsen & Bøgh ApS", and
    "Bøgh" finds it within its postcode; a query that misspells a name's first three letters
    finds it only within a given postcode or municipality. ``postcode`` and ``municipality``
    filter. Companies merged into another are never listed.

The prior-contact check (:func:`check_prior_contact`)
    Records a :class:`~coordination.models.PriorContactCheck` by the caller's organisation,
    re-evaluates that company's coordination (the check may make the organisation's approaches of
    today coordinated), and answers with the company, its approaches of the last ``days`` days
    (newest first), upcoming planned visits, unresolved flags, a summary and, per configured
    source, how fresh its data is, so that "no prior contact" never hides a stale source.

Organisations
    A caller's organisation is the token's organisation name. It is matched to a stored
    organisation by normalised name; a name that matches none (a partner without a configured
    source) is stored with type :data:`OTHER_ORGANISATION_TYPE`, since nothing says which kind of
    organisation it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from rapidfuzz import fuzz, process
from sqlalchemy import Connection, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from coordination.approach_queries import (
    company_approaches,
    is_upcoming_planned,
    upcoming_planned_approaches,
)
from coordination.config import Config, Rules, SourceConfig
from coordination.flag_service import live_flags_of
from coordination.flagging import evaluate_companies
from coordination.identity.normalise import (
    fold_letters,
    normalise_company_name,
    normalise_organisation_name,
    normalise_postcode,
    valid_cvr,
)
from coordination.models import (
    Approach,
    ApproachOrganisation,
    AuditEntry,
    Company,
    ContactPerson,
    Organisation,
    PlannedVisit,
    PriorContactCheck,
    ProductionUnit,
    Source,
    utcnow,
)
from coordination.needs.codelists import load_codelists
from coordination.prior_contact_read import (
    SUMMARY_LONG_DAYS,
    SUMMARY_SHORT_DAYS,
    Snapshot,
    read_and_record,
    with_company,
)
from coordination.rules import CheckFacts, evaluate_company
from coordination.timeutil import local_date, local_today

# Bounds on the work of one name search: names compared per query word on each side of it in
# name order, query words used, and companies compared within a postcode or municipality.
NEIGHBOURS = 500
MAX_QUERY_WORDS = 5
MAX_AREA_CANDIDATES = 5000
MIN_NAME_SCORE = 75.0  # rapidfuzz WRatio, 0-100
OTHER_ORGANISATION_TYPE = "other"
STALE_AFTER = dt.timedelta(hours=48)
MERGE_DEPTH_LIMIT = 20  # a merge chain longer than this is a data error, not a company

_APPROACH = Approach.__table__
_PREFIX_CHARS = re.compile(r"[a-z0-9]+")


class CompanyNotFound(LookupError):
    """No company has this CVR number or id."""


class PlannedVisitNotFound(LookupError):
    """The company has no planned visit with this id."""


class NotYourPlannedVisit(PermissionError):
    """Only the organisation that registered a planned visit may delete it."""


class PlannedDateInPast(ValueError):
    """A planned visit must be dated today or later."""


class UnknownMunicipality(ValueError):
    """A municipality given by name that is not one of the region's."""


@dataclasses.dataclass(frozen=True)
class CompanyQuery:
    """Search criteria; every one given must hold (none: every company). ``text`` is a name or
    a CVR number."""

    text: str | None = None
    cvr: str | None = None
    postcode: str | None = None
    municipality_code: str | None = None


def municipality_code_for(value: str) -> str:
    """A 3-digit municipality code as given, or the code of the region's municipality with this
    name (case and æøå spelling do not matter). :class:`UnknownMunicipality` otherwise."""
    value = value.strip()
    if re.fullmatch(r"\d{3}", value):
        return value
    wanted = fold_letters(value)
    for municipality in load_codelists().municipalities.values():
        if fold_letters(municipality.name) == wanted:
            return municipality.code
    raise UnknownMunicipality(value)


# --- search -----------------------------------------------------------------------------------


def search_companies(
    session: Session, query: CompanyQuery, page: int, page_size: int
) -> tuple[list[dict], int]:
    """One page of companies matching ``query`` and the total number of matches.

    Items: ``id, cvr, name, address, postcode, city, municipality_code, resolved, score``;
    ``score`` (0-100) only for a name search, which is ordered best first; otherwise by name.
    """
    conditions = [Company.merged_into_id.is_(None)]
    if query.cvr:
        conditions.append(Company.cvr == query.cvr)
    if query.postcode:
        conditions.append(Company.postcode == normalise_postcode(query.postcode))
    if query.municipality_code:
        conditions.append(Company.municipality_code == query.municipality_code)
    text = (query.text or "").strip()
    cvr_in_text = valid_cvr(text) if text else None
    if cvr_in_text:
        conditions.append(Company.cvr == cvr_in_text)
    key = normalise_company_name(text) if text and not cvr_in_text else ""
    if not key:
        return _listed(session, conditions, page, page_size)
    narrowed = bool(query.postcode or query.municipality_code or query.cvr)
    return _name_matches(session, key, conditions, narrowed, page, page_size)


def _listed(session: Session, conditions: list, page: int, page_size: int):
    total = session.execute(
        select(func.count()).select_from(Company).where(*conditions)
    ).scalar_one()
    companies = session.execute(
        select(Company)
        .where(*conditions)
        .order_by(Company.name_key, Company.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).scalars()
    return [hit(company, None) for company in companies], total


def _name_matches(
    session: Session, key: str, conditions: list, narrowed: bool, page: int, page_size: int
):
    # Plain rows through the connection: thousands of candidates, no ORM objects needed.
    connection = session.connection()
    candidates: dict[int, str] = {}
    for start in _word_starts(key):
        candidates.update(_neighbours(connection, start, conditions))
    if narrowed:
        query = select(Company.id, Company.name_key).where(*conditions).limit(MAX_AREA_CANDIDATES)
        candidates.update(connection.execute(query).all())
    scored = process.extract(
        key, candidates, scorer=fuzz.WRatio, score_cutoff=MIN_NAME_SCORE, limit=None
    )
    ranked = sorted(((score, cid, name) for name, score, cid in scored), key=_best_first)
    chosen = ranked[(page - 1) * page_size : page * page_size]
    by_id = {
        company.id: company
        for company in session.execute(
            select(Company).where(Company.id.in_([cid for _, cid, _ in chosen]))
        ).scalars()
    }
    return [hit(by_id[cid], round(score, 1)) for score, cid, _ in chosen], len(ranked)


def _best_first(entry: tuple[float, int, str]) -> tuple[float, str, int]:
    score, company_id, name_key = entry
    return -score, name_key, company_id


def _word_starts(key: str) -> list[str]:
    """The normalised query from each of its first words on: "madsen og boegh", "og boegh",
    "boegh"."""
    words = key.split()
    return [" ".join(words[i:]) for i in range(min(len(words), MAX_QUERY_WORDS))]


def _neighbours(connection, start: str, conditions: list) -> list:
    """(id, name_key) of up to :data:`NEIGHBOURS` names on each side of ``start`` in name order,
    among the names that share its first three letters (two index range scans). A name
    misspelled after its first letters sorts close to the right one."""
    match = _PREFIX_CHARS.match(start)
    if match is None:
        return []
    prefix = match.group()[:3]
    upper = _next_prefix(prefix)
    # Bounds of ASCII letters and digits sort the same in every collation.
    block = [Company.name_key >= prefix]
    if upper is not None:
        block.append(Company.name_key < upper)
    names = select(Company.id, Company.name_key).where(*conditions, *block)
    after = names.where(Company.name_key >= start).order_by(Company.name_key.asc())
    before = names.where(Company.name_key < start).order_by(Company.name_key.desc())
    return [
        *connection.execute(after.limit(NEIGHBOURS)).all(),
        *connection.execute(before.limit(NEIGHBOURS)).all(),
    ]


def _next_prefix(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (of a-z and 0-9)."""
    following = {"9": "a", "z": None}
    while prefix:
        last = prefix[-1]
        bumped = following[last] if last in following else chr(ord(last) + 1)
        if bumped is not None:
            return prefix[:-1] + bumped
        prefix = prefix[:-1]
    return None


def hit(company: Company, score: float | None) -> dict:
    """A company as a search result lists it."""
    return {
        "id": company.id,
        "cvr": company.cvr,
        "name": company.name,
        "address": company.address,
        "postcode": company.postcode,
        "city": company.city,
        "municipality_code": company.municipality_code,
        "resolved": company.cvr is not None,
        "score": score,
    }


# --- one company ------------------------------------------------------------------------------


def company_by_cvr(session: Session, cvr: str) -> Company:
    """The company with this (valid, 8-digit) CVR number; :class:`CompanyNotFound` if none."""
    company = session.execute(select(Company).where(Company.cvr == cvr)).scalar_one_or_none()
    if company is None:
        raise CompanyNotFound(cvr)
    return _surviving(session, company)


def company_by_id(session: Session, company_id: int) -> Company:
    """The company with this id, or the one it was merged into; :class:`CompanyNotFound`."""
    company = session.get(Company, company_id)
    if company is None:
        raise CompanyNotFound(company_id)
    return _surviving(session, company)


def _surviving(session: Session, company: Company) -> Company:
    for _ in range(MERGE_DEPTH_LIMIT):
        if company.merged_into_id is None:
            return company
        company = session.get(Company, company.merged_into_id)
        if company is None:
            break
    raise CompanyNotFound("merge chain")


def company_detail(session: Session, company: Company, with_contacts: bool) -> dict:
    """The company with its production units and, when ``with_contacts``, its contact persons
    (anonymised ones left out). Without, the ``contact_persons`` key is absent."""
    units = session.execute(
        select(ProductionUnit)
        .where(ProductionUnit.company_id == company.id)
        .order_by(ProductionUnit.p_number)
    ).scalars()
    detail = {
        **hit(company, None),
        "industry_section": company.industry_section,
        "size_band": company.size_band,
        "production_units": [
            {"p_number": u.p_number, "address": u.address, "postcode": u.postcode, "city": u.city}
            for u in units
        ],
    }
    detail.pop("score")
    if with_contacts:
        persons = session.execute(
            select(ContactPerson)
            .where(ContactPerson.company_id == company.id, ContactPerson.anonymised_at.is_(None))
            .order_by(ContactPerson.name, ContactPerson.id)
        ).scalars()
        detail["contact_persons"] = [
            {"name": p.name, "email": p.email, "phone": p.phone, "last_seen_on": p.last_seen_on}
            for p in persons
        ]
    return detail


# --- organisations ----------------------------------------------------------------------------


def find_organisation(session: Session, name: str) -> Organisation | None:
    """The stored organisation whose normalised name is that of ``name`` (the oldest, if two
    share it)."""
    return session.execute(
        select(Organisation)
        .where(Organisation.name_key == normalise_organisation_name(name))
        .order_by(Organisation.id)
        .limit(1)
    ).scalar_one_or_none()


def organisation_named(session: Session, name: str) -> Organisation:
    """:func:`find_organisation`, storing the organisation (type ``other``) if it is new.

    Safe when two requests store the same new name at once (INSERT ... ON CONFLICT DO NOTHING).
    """
    found = find_organisation(session, name)
    if found is not None:
        return found
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(Organisation.__table__)
        .values(
            name=name.strip(),
            name_key=normalise_organisation_name(name),
            type=OTHER_ORGANISATION_TYPE,
        )
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.execute(
        select(Organisation).where(Organisation.name == name.strip())
    ).scalar_one()


# --- the prior-contact check ------------------------------------------------------------------


def record_check(
    session: Session,
    company_id: int,
    organisation: str,
    consultant: str | None,
    rules: Rules,
    today: dt.date,
    at: dt.datetime | None = None,
) -> PriorContactCheck:
    """Store a prior-contact check of the company by ``organisation`` and re-evaluate the
    company's coordination with it."""
    checker = organisation_named(session, organisation)
    # Serialise evaluations of one company (PostgreSQL; SQLite writes are serial anyway), so
    # two checks at once cannot both raise the same flag.
    session.execute(select(Company.id).where(Company.id == company_id).with_for_update())
    check = PriorContactCheck(
        company_id=company_id,
        organisation_id=checker.id,
        consultant=consultant,
        checked_at=at or utcnow(),
    )
    session.add(check)
    session.flush()
    evaluate_companies(session, [company_id], rules, today=today)
    return check


def check_prior_contact(
    session: Session,
    company: Company,
    config: Config,
    organisation: str,
    consultant: str | None,
    days: int,
    with_contacts: bool,
    audit: dict | None = None,
) -> dict:
    """Record the check and answer it (:func:`prior_contact`), with the check's id,
    organisation and time under ``"check"``. ``audit`` holds the column values of an
    :class:`~coordination.models.AuditEntry` to store with the check (the company's id is
    added to its details as ``company_id``).

    Tries :func:`quick_prior_contact_check` first; when the check changes the company's
    coordination it re-evaluates the company under a lock (:func:`answer_recorded_check`), and
    when the organisation is new it records the check with :func:`record_check`, answering
    from the separate queries, so the answer and the stored flags are always those of the
    rules.
    """
    quick = quick_prior_contact_check(
        session, config, organisation, consultant, days, with_contacts, audit, company_id=company.id
    )
    if quick.answer is not None:
        return quick.answer
    if quick.recorded is not None:
        return answer_recorded_check(
            session, company, quick.recorded, config, organisation, days, with_contacts
        )
    return full_prior_contact_check(
        session, company, config, organisation, consultant, days, with_contacts, audit
    )


def full_prior_contact_check(
    session: Session,
    company: Company,
    config: Config,
    organisation: str,
    consultant: str | None,
    days: int,
    with_contacts: bool,
    audit: dict | None = None,
) -> dict:
    """:func:`check_prior_contact` without the fast path: for a caller whose
    :func:`quick_prior_contact_check` has just declined without recording the check, so the
    snapshot is not read twice."""
    today = local_today(config.schedule.timezone)
    check = record_check(session, company.id, organisation, consultant, config.rules, today)
    if audit is not None:
        session.add(AuditEntry(**with_company(audit, company.id)))
    return _answer(session, company, check, config, organisation, days, with_contacts, today)


def answer_recorded_check(
    session: Session,
    company: Company,
    check_id: int,
    config: Config,
    organisation: str,
    days: int,
    with_contacts: bool,
) -> dict:
    """The answer of a check that :func:`quick_prior_contact_check` has recorded but not
    answered, because it changes the company's coordination: the company re-evaluated with
    it (under the lock :func:`record_check` takes), then answered as
    :func:`full_prior_contact_check` answers."""
    today = local_today(config.schedule.timezone)
    session.execute(select(Company.id).where(Company.id == company.id).with_for_update())
    evaluate_companies(session, [company.id], config.rules, today=today)
    check = session.get(PriorContactCheck, check_id)
    return _answer(session, company, check, config, organisation, days, with_contacts, today)


def _answer(
    session: Session,
    company: Company,
    check: PriorContactCheck,
    config: Config,
    organisation: str,
    days: int,
    with_contacts: bool,
    today: dt.date,
) -> dict:
    answer = prior_contact(session, company, config, organisation, days, with_contacts, today)
    answer["check"] = {
        "id": check.id,
        "organisation": session.get(Organisation, check.organisation_id).name,
        "checked_at": check.checked_at,
    }
    return answer


@dataclasses.dataclass(frozen=True)
class QuickCheck:
    """What :func:`quick_prior_contact_check` did: whether the company exists, the answer
    (None when the check needs more work in a transaction) and the id of the check it
    recorded without answering (None when it recorded none)."""

    found: bool
    answer: dict | None = None
    recorded: int | None = None


def quick_prior_contact_check(
    session: Session | Connection,
    config: Config,
    organisation: str,
    consultant: str | None,
    days: int,
    with_contacts: bool,
    audit: dict | None = None,
    *,
    company_id: int | None = None,
    cvr: str | None = None,
) -> QuickCheck:
    """:func:`check_prior_contact` of the company with ``company_id`` or ``cvr`` in one read
    and one write (on PostgreSQL one statement, :func:`read_and_record`), when that is
    enough. Nothing is recorded when the company was merged into another or the organisation
    is not stored yet (no answer, no ``recorded``: the caller records the check in full). The
    rules are then evaluated on what was read, as ``flagging.evaluate_companies`` would
    evaluate them right after storing the check; when the check changes the company's
    coordination, it is recorded but not answered (``recorded``: the caller re-evaluates the
    company, :func:`answer_recorded_check`). On PostgreSQL each statement commits on its own
    when the caller runs this without a transaction. ``session`` may be a Core ``Connection``
    (cheaper per statement than a Session)."""
    today = local_today(config.schedule.timezone)
    at = utcnow()
    snapshot, check_id = read_and_record(
        session,
        organisation,
        days,
        today,
        company_id=company_id,
        cvr=cvr,
        consultant=consultant,
        at=at,
        audit=audit,
        durable=config.durable_checks,
    )
    if snapshot is None:
        return QuickCheck(found=False)
    if check_id is None:
        return QuickCheck(found=True)
    if _check_changes_coordination(snapshot, config.rules, today, at):
        return QuickCheck(found=True, recorded=check_id)
    company = snapshot.company
    answer = snapshot.answer(company, config, organisation, with_contacts, at)
    answer["check"] = {"id": check_id, "organisation": snapshot.organisation[1], "checked_at": at}
    return QuickCheck(found=True, answer=answer)


def _check_changes_coordination(
    snapshot: Snapshot, rules: Rules, today: dt.date, at: dt.datetime
) -> bool:
    """Whether evaluating the company with the new check (as ``flagging.evaluate_companies``
    would, right after storing it) changes any approach's coordination or any flag."""
    checks = [*snapshot.check_facts(), CheckFacts(snapshot.organisation[1], local_date(at))]
    evaluation = evaluate_company(
        snapshot.approach_facts(today), checks, snapshot.existing_flags(), rules
    )
    if evaluation.changes.create or evaluation.changes.update:
        return True
    return any(
        bool(a["coordinated"]) == (a["id"] in evaluation.uncoordinated)
        for a in snapshot.approaches
        if a["date"] <= today
    )


def prior_contact(
    session: Session,
    company: Company,
    config: Config,
    viewer: str,
    days: int,
    with_contacts: bool,
    today: dt.date,
    now: dt.datetime | None = None,
) -> dict:
    """What a consultant sees before contacting the company (see the module doc)."""
    since = today - dt.timedelta(days=days)
    return {
        "company": company_detail(session, company, with_contacts),
        "days": days,
        "approaches": company_approaches(session, company.id, since, today, viewer),
        "planned": planned_for(session, company.id, today),
        "open_flags": live_flags_of(session, company.id),
        "summary": contact_summary(session, company.id, today),
        "sources": source_freshness(session, config.sources, now or utcnow()),
    }


def contact_summary(session: Session, company_id: int, today: dt.date) -> dict:
    """Approaches in the last 30 and 90 days (counting today), distinct organisations in the
    last 90 days, and the date of the latest approach ever (upcoming planned ones left out)."""
    short = today - dt.timedelta(days=SUMMARY_SHORT_DAYS)
    long = today - dt.timedelta(days=SUMMARY_LONG_DAYS)
    happened = [
        _APPROACH.c.company_id == company_id,
        _APPROACH.c.date <= today,
        ~is_upcoming_planned(today),
    ]
    counts = session.execute(
        select(
            func.coalesce(func.sum(case((_APPROACH.c.date >= short, 1), else_=0)), 0),
            func.coalesce(func.sum(case((_APPROACH.c.date >= long, 1), else_=0)), 0),
            func.max(_APPROACH.c.date),
        ).where(*happened)
    ).one()
    organisations = session.execute(
        select(func.count(func.distinct(ApproachOrganisation.organisation_id)))
        .join(_APPROACH, _APPROACH.c.id == ApproachOrganisation.approach_id)
        .where(*happened, _APPROACH.c.date >= long)
    ).scalar_one()
    return {
        "approaches_30d": int(counts[0]),
        "approaches_90d": int(counts[1]),
        "organisations_90d": int(organisations),
        "last_approach": counts[2],
    }


def source_freshness(
    session: Session, sources: tuple[SourceConfig, ...], now: dt.datetime
) -> list[dict]:
    """Per configured source: its organisation, last successful sync, last run's status, and
    whether it is stale (never succeeded, its last run did not succeed, or its last success is
    more than 48 hours old)."""
    rows = session.execute(
        select(Source.name, Source.last_success_at, Source.last_status).where(
            Source.name.in_([s.name for s in sources])
        )
    )
    stored = {
        name: {"last_success_at": last_success_at, "last_status": last_status}
        for name, last_success_at, last_status in rows
    }
    return freshness(sources, stored, now)


def freshness(
    sources: tuple[SourceConfig, ...], stored: dict[str, dict], now: dt.datetime
) -> list[dict]:
    """:func:`source_freshness` from the stored sources' ``last_success_at`` and
    ``last_status`` by name."""
    answer = []
    for configured in sources:
        source = stored.get(configured.name)
        last_success = _aware(source["last_success_at"]) if source else None
        last_status = source["last_status"] if source else None
        answer.append(
            {
                "source": configured.name,
                "organisation": configured.organisation,
                "last_success_at": last_success,
                "last_status": last_status,
                "stale": last_success is None
                or last_status != "succeeded"
                or now - last_success > STALE_AFTER,
            }
        )
    return answer


# --- planned visits ---------------------------------------------------------------------------


def planned_for(session: Session, company_id: int, today: dt.date) -> list[dict]:
    """Upcoming visits to the company, soonest first: those registered through the service
    (until their date has passed) and planned approaches from the sources dated today or later.

    Items: ``id`` (of the registered visit, else None), ``approach_id`` (of the planned
    approach, else None), ``date``, ``organisations``, ``purpose``, ``registered_by``.
    """
    registered = session.execute(
        select(PlannedVisit, Organisation.name)
        .join(Organisation, Organisation.id == PlannedVisit.organisation_id)
        .where(PlannedVisit.company_id == company_id, PlannedVisit.date >= today)
    ).all()
    items = [
        {
            "id": visit.id,
            "approach_id": None,
            "date": visit.date,
            "organisations": [organisation],
            "purpose": visit.purpose,
            "registered_by": visit.created_by,
        }
        for visit, organisation in registered
    ]
    items.extend(
        {
            "id": None,
            "approach_id": row.id,
            "date": row.date,
            "organisations": list(row.organisations or ()),
            "purpose": row.purpose,
            "registered_by": None,
        }
        for row in upcoming_planned_approaches(session, company_id, today)
    )
    return sorted(items, key=lambda i: (i["date"], i["id"] or 0, i["approach_id"] or 0))


def add_planned_visit(
    session: Session,
    company_id: int,
    organisation: str,
    date: dt.date,
    purpose: str | None,
    created_by: str | None,
    today: dt.date,
) -> dict:
    """Register a planned visit by ``organisation``; :class:`PlannedDateInPast` before today."""
    if date < today:
        raise PlannedDateInPast(date)
    planner = organisation_named(session, organisation)
    visit = PlannedVisit(
        company_id=company_id,
        organisation_id=planner.id,
        date=date,
        purpose=purpose,
        created_by=created_by,
    )
    session.add(visit)
    session.flush()
    return {
        "id": visit.id,
        "approach_id": None,
        "date": visit.date,
        "organisations": [planner.name],
        "purpose": visit.purpose,
        "registered_by": visit.created_by,
    }


def delete_planned_visit(
    session: Session, company_id: int, visit_id: int, organisation: str
) -> None:
    """Delete a planned visit of the company. :class:`PlannedVisitNotFound` if the company has
    none with this id; :class:`NotYourPlannedVisit` unless ``organisation`` registered it."""
    visit = session.get(PlannedVisit, visit_id)
    if visit is None or visit.company_id != company_id:
        raise PlannedVisitNotFound(visit_id)
    caller = find_organisation(session, organisation)
    if caller is None or caller.id != visit.organisation_id:
        raise NotYourPlannedVisit(visit_id)
    session.delete(visit)
    session.flush()


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


__all__ = [
    "CompanyNotFound",
    "CompanyQuery",
    "NotYourPlannedVisit",
    "PlannedDateInPast",
    "PlannedVisitNotFound",
    "UnknownMunicipality",
    "add_planned_visit",
    "check_prior_contact",
    "company_by_cvr",
    "company_by_id",
    "company_detail",
    "contact_summary",
    "delete_planned_visit",
    "find_organisation",
    "freshness",
    "hit",
    "local_today",
    "municipality_code_for",
    "organisation_named",
    "planned_for",
    "QuickCheck",
    "prior_contact",
    "quick_prior_contact_check",
    "record_check",
    "search_companies",
    "source_freshness",
]
