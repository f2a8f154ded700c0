"""The nightly flags step evaluates only the companies whose evaluation can have changed since
the last successful nightly run, and that must come to the same as evaluating all companies."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import insert, select, update
from sqlmodel import Session

from coordination.config import Rules
from coordination.flag_service import act_on_flag
from coordination.flagging import all_company_ids, companies_due, evaluate_companies
from coordination.jobs import NIGHTLY_SYNC_ID, flags_due, last_success_day
from coordination.models import (
    Approach,
    Company,
    Flag,
    JobClaim,
    Organisation,
    PriorContactCheck,
    utcnow,
)
from coordination.sync import SyncResult

pytestmark = pytest.mark.integration

RULES = Rules()
ORGANISATIONS = ("Jobcenter Aarhus", "Væksthus Midtjylland", "VEU-center Østjylland")
START = dt.date(2025, 1, 1)
SPAN_DAYS = 500
# Days between two nightly runs: short and long gaps (longer than the rules' window too).
GAPS = (1, 7, 30, 120, 2, 60, 95, 3)


def _world(session: Session, rng: random.Random, companies: int = 80) -> None:
    """Companies with approaches spread over the span (planned ones included, some dated after
    the first night), a few joint ones, and prior-contact checks."""
    org_ids = {}
    for name in ORGANISATIONS:
        org_ids[name] = session.execute(
            insert(Organisation)
            .values(name=name, name_key=name.lower(), type="jobcenter")
            .returning(Organisation.id)
        ).scalar_one()
    key = 0
    for n in range(companies):
        company_id = session.execute(
            insert(Company)
            .values(name=f"Firma {n}", name_key=f"firma {n}", created_at=dt.datetime.now(dt.UTC))
            .returning(Company.id)
        ).scalar_one()
        for _ in range(rng.randint(0, 10)):
            key += 1
            organisations = sorted(rng.sample(ORGANISATIONS, 2 if rng.random() < 0.1 else 1))
            session.execute(
                insert(Approach).values(
                    group_key=key,
                    company_id=company_id,
                    date=START + dt.timedelta(days=rng.randrange(SPAN_DAYS)),
                    planned=rng.random() < 0.3,
                    joint=len(organisations) > 1,
                    coordinated=True,
                    organisations=organisations,
                    consultants=[],
                )
            )
        if rng.random() < 0.3:
            day = START + dt.timedelta(days=rng.randrange(SPAN_DAYS))
            session.execute(
                insert(PriorContactCheck).values(
                    company_id=company_id,
                    organisation_id=org_ids[rng.choice(ORGANISATIONS)],
                    checked_at=dt.datetime.combine(day, dt.time(10), dt.UTC),
                )
            )


def _stored(session: Session) -> tuple:
    flags = session.execute(
        select(
            Flag.company_id, Flag.raised_on, Flag.status, Flag.organisations, Flag.approach_ids
        ).order_by(Flag.id)
    ).all()
    coordinated = session.execute(select(Approach.id, Approach.coordinated)).all()
    return [tuple(row) for row in flags], sorted(coordinated)


def _assert_as_if_all_were_evaluated(session: Session, night: dt.date) -> tuple:
    """Evaluating every company for ``night`` changes nothing stored; what is stored."""
    stored = _stored(session)
    raised = evaluate_companies(session, all_company_ids(session), RULES, today=night)
    assert (raised, _stored(session)) == (0, stored), f"night {night}"
    return stored


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_evaluating_the_due_companies_each_night_equals_evaluating_all_of_them(engine, seed):
    rng = random.Random(seed)
    with Session(engine) as session:
        _world(session, rng)
        night = START + dt.timedelta(days=100)
        evaluate_companies(session, all_company_ids(session), RULES, today=night)
        since, fewer = night, []
        for gap in GAPS:
            night += dt.timedelta(days=gap)
            due = companies_due(session, night, since, RULES)
            fewer.append(len(due) < len(all_company_ids(session)))
            evaluate_companies(session, due, RULES, today=night)
            after_due = _assert_as_if_all_were_evaluated(session, night)
            since = night
        session.rollback()
    assert any(fewer)  # the filter leaves companies out: the comparison above is not vacuous
    assert after_due[0]  # and flags were raised


def test_without_a_successful_nightly_run_every_company_is_due(engine):
    with Session(engine) as session:
        _world(session, random.Random(3), companies=10)
        today = START + dt.timedelta(days=SPAN_DAYS)
        assert last_success_day(session, NIGHTLY_SYNC_ID, "Europe/Copenhagen") is None
        assert companies_due(session, today, None, RULES) == all_company_ids(session)


def test_the_last_successful_nightly_run_is_read_as_a_local_day(engine):
    def claim(fire: str, status: str) -> dict:
        moment = dt.datetime.fromisoformat(fire)
        return {
            "job_id": NIGHTLY_SYNC_ID,
            "fire_time": moment,
            "claimed_by": "test",
            "claimed_at": moment,
            "status": status,
        }

    with Session(engine) as session:
        session.execute(
            insert(JobClaim),
            [
                claim("2026-03-01T23:30:00+00:00", "succeeded"),  # 2 March in Copenhagen
                claim("2026-03-02T23:30:00+00:00", "failed"),
                claim("2026-03-03T23:30:00+00:00", "running"),
            ],
        )
        day = last_success_day(session, NIGHTLY_SYNC_ID, "Europe/Copenhagen")
        session.rollback()
    assert day == dt.date(2026, 3, 2)


def _sync_end(session: Session, company_ids: set[int], night: dt.date) -> SyncResult:
    """What a sync's end does for the flags step: evaluates ``company_ids`` for ``night``."""
    started = utcnow()
    evaluate_companies(session, company_ids, RULES, today=night)
    return SyncResult(0, [], 0, frozenset(company_ids), night, started)


def _resolve_an_open_flag(session: Session, company_ids: set[int], night: dt.date) -> int | None:
    """A coordinator resolves an open flag of one of ``company_ids``; its company."""
    flag = session.execute(
        select(Flag).where(Flag.status == "open", Flag.company_id.in_(company_ids)).limit(1)
    ).scalar()
    if flag is None:
        return None
    act_on_flag(session, flag.id, "resolve", "handled", "coordinator", None, night)
    return flag.company_id


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_flags_step_after_a_sync_leaves_out_what_it_evaluated_and_comes_to_the_same(
    engine, seed
):
    rng = random.Random(seed)
    with Session(engine) as session:
        _world(session, rng)
        night = START + dt.timedelta(days=100)
        evaluate_companies(session, all_company_ids(session), RULES, today=night)
        since, left_out, resolved = night, [], []
        for gap in GAPS:
            night += dt.timedelta(days=gap)
            due = companies_due(session, night, since, RULES)
            touched = set(rng.sample(all_company_ids(session), 30))
            sync = _sync_end(session, touched, night)
            resolved.append(_resolve_an_open_flag(session, touched & set(due), night))
            step = flags_due(session, night, since, sync, RULES)
            assert set(step) == set(due) - (touched - {resolved[-1]})
            left_out.append(len(due) - len(step))
            evaluate_companies(session, step, RULES, today=night)
            _assert_as_if_all_were_evaluated(session, night)
            since = night
        session.rollback()
    assert any(left_out) and any(resolved)  # the comparison above is not vacuous


def test_a_sync_of_another_day_leaves_nothing_out(engine):
    with Session(engine) as session:
        _world(session, random.Random(2), companies=20)
        night = START + dt.timedelta(days=SPAN_DAYS)
        sync = _sync_end(session, set(all_company_ids(session)), night - dt.timedelta(days=1))
        due = companies_due(session, night, night - dt.timedelta(days=60), RULES)
        assert due
        assert flags_due(session, night, night - dt.timedelta(days=60), sync, RULES) == due
        session.rollback()


def _dated_companies(session: Session, today: dt.date, since: dt.date) -> set[int]:
    """The companies with an approach dated from ``since`` to ``today``: those due before the
    due ones were narrowed to those whose new approaches are uncoordinated."""
    query = select(Approach.company_id).where(Approach.date.between(since, today))
    return set(session.execute(query).scalars())


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_evaluating_the_due_companies_every_night_equals_evaluating_all_of_them(engine, seed):
    """Night after night (the nightly job's case): the due companies are fewer than those with
    an approach falling due, and evaluating them comes to evaluating all companies."""
    rng = random.Random(seed)
    with Session(engine) as session:
        _world(session, rng, companies=60)
        night = START + dt.timedelta(days=150)
        # some approaches not yet due stored as uncoordinated (as a rescheduled one may be)
        later = Approach.date > night + dt.timedelta(days=1)
        session.execute(
            update(Approach).where(later, Approach.id % 5 == 0).values(coordinated=False)
        )
        evaluate_companies(session, all_company_ids(session), RULES, today=night)
        narrowed = raised = 0
        for _ in range(40):
            since, night = night, night + dt.timedelta(days=1)
            due = companies_due(session, night, since, RULES)
            dated = _dated_companies(session, night, since)
            assert set(due) <= dated
            narrowed += len(dated) - len(due)
            raised += evaluate_companies(session, due, RULES, today=night)
            _assert_as_if_all_were_evaluated(session, night)
        session.rollback()
    assert narrowed and raised  # the comparison above is not vacuous


def _approach(session: Session, key: int, company_id: int, day: dt.date, *orgs, **values) -> None:
    session.execute(
        insert(Approach).values(
            group_key=key,
            company_id=company_id,
            date=day,
            joint=values.get("joint", len(orgs) > 1),
            coordinated=values.get("coordinated", True),
            organisations=sorted(orgs),
            consultants=[],
        )
    )


def test_a_company_is_due_when_an_approach_falling_due_is_or_was_uncoordinated(engine):
    """The edges of what decides a company due: the look-back window (inclusive), the
    prior-contact check's days (inclusive, as a local date), joint approaches, an approach
    stored as uncoordinated, and a flag a person resolved."""
    a, b = ORGANISATIONS[0], ORGANISATIONS[1]
    today = dt.date(2026, 3, 10)
    since = today - dt.timedelta(days=1)
    with Session(engine) as session:
        _world(session, random.Random(1), companies=0)  # the organisations
        org_b = session.execute(select(Organisation.id).where(Organisation.name == b)).scalar_one()
        companies = {}
        for name in (
            "window edge",
            "past the window",
            "checked",
            "checked too early",
            "checked late evening UTC",
            "joint",
            "stored uncoordinated",
            "planned later",
            "same day",
            "flag resolved",
        ):
            companies[name] = session.execute(
                insert(Company)
                .values(name=name, name_key=name, created_at=dt.datetime.now(dt.UTC))
                .returning(Company.id)
            ).scalar_one()

        def days(n: int) -> dt.date:
            return today - dt.timedelta(days=n)

        def check(company: str, moment: dt.datetime) -> None:
            session.execute(
                insert(PriorContactCheck).values(
                    company_id=companies[company], organisation_id=org_b, checked_at=moment
                )
            )

        c = companies
        _approach(session, 1, c["window edge"], days(91), a)  # 90 days before since
        _approach(session, 2, c["window edge"], since, b)
        _approach(session, 3, c["past the window"], days(92), a)
        _approach(session, 4, c["past the window"], since, b)
        for key, name in ((5, "checked"), (7, "checked too early")):
            _approach(session, key, c[name], days(30), a)
            _approach(session, key + 1, c[name], today, b)
        check("checked", dt.datetime.combine(days(14), dt.time(10), dt.UTC))
        check("checked too early", dt.datetime.combine(days(15), dt.time(10), dt.UTC))
        _approach(session, 9, c["checked late evening UTC"], days(30), a)
        _approach(session, 10, c["checked late evening UTC"], since, b)
        # 23:30 UTC is 00:30 the next day in Copenhagen: 14 days before ``since``, so in time
        check(
            "checked late evening UTC",
            dt.datetime.combine(days(16), dt.time(23, 30), dt.UTC),
        )
        _approach(session, 11, c["joint"], days(5), a)
        _approach(session, 12, c["joint"], today, b, joint=True)
        _approach(session, 13, c["stored uncoordinated"], days(5), b)
        _approach(session, 14, c["stored uncoordinated"], today, b, coordinated=False)
        _approach(session, 15, c["planned later"], days(5), a)
        _approach(session, 16, c["planned later"], today + dt.timedelta(days=1), b)
        _approach(session, 17, c["planned later"], today, a)
        _approach(session, 18, c["same day"], today, a)
        _approach(session, 19, c["same day"], today, b)
        _approach(session, 20, c["flag resolved"], days(5), a)
        _approach(session, 21, c["flag resolved"], today, a)
        flag_id = session.execute(
            insert(Flag)
            .values(
                company_id=c["flag resolved"],
                raised_on=days(200),
                organisations=[a, b],
                approach_ids=[],
            )
            .returning(Flag.id)
        ).scalar_one()
        act_on_flag(session, flag_id, "resolve", "handled", "coordinator", None, today)
        due = companies_due(session, today, since, RULES)
        session.rollback()
    names = {company_id: name for name, company_id in companies.items()}
    assert sorted(names[company_id] for company_id in due) == [
        "checked too early",
        "flag resolved",
        "stored uncoordinated",
        "window edge",
    ]
