"""The coordination rules over a real database: hand-made timelines stored the way the sync
pipeline stores them (source records grouped into approaches by the real approach stage), then
evaluated by ``coordination.flagging.evaluate_companies``.

Default rules: window 90 days, checks valid 14 days, threshold 2, joint tolerance 1 day.
:class:`Timeline` is also the data builder of the API tests in ``tests/api``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from coordination.approach_building import rebuild_approaches
from coordination.config import Rules
from coordination.db import session_scope
from coordination.flag_service import act_on_flag
from coordination.flagging import evaluate_companies
from coordination.identity.normalise import normalise_company_name, normalise_organisation_name
from coordination.models import (
    Approach,
    ApproachRecord,
    Company,
    Flag,
    Need,
    Organisation,
    PriorContactCheck,
    Source,
    SourceRecord,
)

DAY_ZERO = dt.date(2024, 1, 1)
LATER = dt.date(2100, 1, 1)  # an evaluation date after every hand-made timeline
COPENHAGEN = ZoneInfo("Europe/Copenhagen")

JOBCENTER = "Jobcenter Aarhus"
VAEKSTHUS = "Væksthus Midtjylland"
VEU = "VEU-center Østjylland"
ORGANISATIONS = {
    JOBCENTER: ("jobcenter", "jobcenter-aarhus"),
    VAEKSTHUS: ("vaeksthus", "vaeksthus-midt"),
    VEU: ("veu", "veu-oestjylland"),
}


def day(n: int) -> dt.date:
    return DAY_ZERO + dt.timedelta(days=n)


class Timeline:
    """Builds companies and their contact history directly in the database.

    Each organisation gets one source (names from :data:`ORGANISATIONS`). Every approach is a
    source record; after each change the company's approaches are rebuilt by the real approach
    stage, so joint visits recorded in two systems become one approach, as after a sync.
    """

    def __init__(self, engine: Engine, rules: Rules | None = None) -> None:
        self.engine = engine
        self.rules = rules or Rules()
        self._external_ids = itertools.count(1)

    # -- companies and organisations -------------------------------------------------------------

    def company(
        self,
        name: str = "Madsen & Bøgh ApS",
        cvr: str | None = None,
        postcode: str | None = "8000",
        city: str | None = "Aarhus C",
        municipality_code: str | None = "751",
    ) -> int:
        with session_scope(self.engine) as session:
            company = Company(
                cvr=cvr,
                name=name,
                name_key=normalise_company_name(name),
                postcode=postcode,
                city=city,
                municipality_code=municipality_code,
                address="Søndergade 1",
            )
            session.add(company)
            session.flush()
            return company.id

    def source(self, organisation: str) -> int:
        """The id of the organisation's source, stored on first use."""
        kind, source_name = ORGANISATIONS.get(organisation, ("other", _slug(organisation)))
        with session_scope(self.engine) as session:
            source = session.execute(
                select(Source).where(Source.name == source_name)
            ).scalar_one_or_none()
            if source is not None:
                return source.id
            stored = session.execute(
                select(Organisation).where(Organisation.name == organisation)
            ).scalar_one_or_none()
            if stored is None:
                stored = Organisation(
                    name=organisation,
                    name_key=normalise_organisation_name(organisation),
                    type=kind,
                )
                session.add(stored)
                session.flush()
            source = Source(name=source_name, kind="csv-drop", organisation_id=stored.id)
            session.add(source)
            session.flush()
            return source.id

    def sync_state(
        self, organisation: str, last_status: str | None, last_success_at: dt.datetime | None
    ) -> None:
        """Set what the last sync runs of the organisation's source left behind."""
        source_id = self.source(organisation)
        with session_scope(self.engine) as session:
            source = session.get(Source, source_id)
            source.last_status = last_status
            source.last_success_at = last_success_at

    # -- approaches, needs, checks ---------------------------------------------------------------

    def approach(
        self,
        company_id: int,
        organisation: str,
        on: dt.date,
        *,
        joint_with: Iterable[str] = (),
        status: str = "completed",
        channel: str = "visit",
        purpose: str | None = None,
        consultant: str | None = None,
        notes: str | None = None,
        needs: Iterable[tuple[str, str | None, str, str | None]] = (),
    ) -> int:
        """Store one source record of ``organisation``; returns the record id. ``needs`` are
        (type, delivered code, delivered label, taxonomy code or None)."""
        source_id = self.source(organisation)
        number = next(self._external_ids)
        with session_scope(self.engine) as session:
            record = SourceRecord(
                source_id=source_id,
                external_id=f"rec-{number}",
                content_hash=f"{number:064d}",
                status=status,
                approach_date=on,
                channel=channel,
                purpose=purpose,
                consultant_name=consultant,
                consultant_email=f"{_slug(consultant)}@example.dk" if consultant else None,
                joint_with=list(joint_with),
                notes=notes,
                payload={},
                company_id=company_id,
            )
            session.add(record)
            session.flush()
            for need_type, code, label, taxonomy_code in needs:
                session.add(
                    Need(
                        source_record_id=record.id,
                        type=need_type,
                        code=code,
                        label=label,
                        taxonomy_code=taxonomy_code,
                    )
                )
            rebuild_approaches(session, [company_id], self.rules.joint_date_tolerance_days)
            return record.id

    def cancel(self, record_id: int) -> None:
        """The source cancels the record; its approach is rebuilt without it."""
        with session_scope(self.engine) as session:
            record = session.get(SourceRecord, record_id)
            record.status = "cancelled"
            session.flush()
            rebuild_approaches(session, [record.company_id], self.rules.joint_date_tolerance_days)

    def check(self, company_id: int, organisation: str, on: dt.date) -> None:
        """A prior-contact check by ``organisation`` at noon, Danish time, on ``on``."""
        self.source(organisation)
        with session_scope(self.engine) as session:
            checker = session.execute(
                select(Organisation).where(Organisation.name == organisation)
            ).scalar_one()
            noon = dt.datetime.combine(on, dt.time(12), tzinfo=COPENHAGEN)
            session.add(
                PriorContactCheck(
                    company_id=company_id,
                    organisation_id=checker.id,
                    checked_at=noon.astimezone(dt.UTC),
                )
            )

    def evaluate(self, company_id: int, today: dt.date = LATER) -> int:
        """Run the coordination rules for the company; returns the number of flags raised."""
        with session_scope(self.engine) as session:
            return evaluate_companies(session, [company_id], self.rules, today=today)

    # -- reading back ----------------------------------------------------------------------------

    def approach_of(self, record_id: int) -> Approach:
        with session_scope(self.engine) as session:
            return session.execute(
                select(Approach)
                .join(ApproachRecord, ApproachRecord.approach_id == Approach.id)
                .where(ApproachRecord.source_record_id == record_id)
            ).scalar_one()

    def flags(self, company_id: int) -> list[Flag]:
        with session_scope(self.engine) as session:
            return list(
                session.execute(
                    select(Flag).where(Flag.company_id == company_id).order_by(Flag.id)
                ).scalars()
            )

    def resolve(self, flag_id: int, comment: str = "Talt med partnerne") -> None:
        with session_scope(self.engine) as session:
            act_on_flag(session, flag_id, "resolve", comment, "koordinator", "Region", LATER)

    def flagged_company(self) -> tuple[int, list[int]]:
        """A company with one open flag: Jobcenter (day 0), Væksthus (day 10), Jobcenter
        (day 20); the last two are uncoordinated. Returns the company and those record ids."""
        company = self.company()
        self.approach(company, JOBCENTER, day(0))
        second = self.approach(company, VAEKSTHUS, day(10))
        third = self.approach(company, JOBCENTER, day(20))
        self.evaluate(company)
        return company, [second, third]


def _slug(text: str) -> str:
    return "-".join(normalise_organisation_name(text).split()) or "x"


def local_date(moment: dt.datetime) -> dt.date:
    """The Danish calendar date of a stored moment (SQLite hands back naive UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(COPENHAGEN).date()


# --- uncoordinated approaches -----------------------------------------------------------------


def test_another_organisation_approaching_within_the_window_is_uncoordinated(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    first = timeline.approach(company, JOBCENTER, day(0))
    second = timeline.approach(company, VAEKSTHUS, day(30))

    timeline.evaluate(company)

    assert timeline.approach_of(first).coordinated is True
    assert timeline.approach_of(second).coordinated is False


def test_a_joint_approach_recorded_by_both_organisations_is_one_coordinated_approach(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    ours = timeline.approach(company, VAEKSTHUS, day(30), joint_with=[VEU])
    theirs = timeline.approach(company, VEU, day(31), joint_with=[VAEKSTHUS])

    timeline.evaluate(company)

    joint = timeline.approach_of(ours)
    assert joint.id == timeline.approach_of(theirs).id
    assert joint.organisations == sorted([VAEKSTHUS, VEU])
    assert joint.joint is True
    assert joint.coordinated is True


def test_an_approach_naming_a_partner_in_its_joint_with_field_is_coordinated(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    named = timeline.approach(company, VAEKSTHUS, day(30), joint_with=[JOBCENTER])

    timeline.evaluate(company)

    assert timeline.approach_of(named).coordinated is True
    assert timeline.flags(company) == []


def test_a_follow_up_by_the_same_organisation_is_coordinated(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    follow_up = timeline.approach(company, JOBCENTER, day(10), consultant="Anne Møller")

    timeline.evaluate(company)

    assert timeline.approach_of(follow_up).coordinated is True
    assert timeline.flags(company) == []


def test_an_approach_90_days_after_another_organisations_is_inside_the_window(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    edge = timeline.approach(company, VAEKSTHUS, day(90))

    timeline.evaluate(company)

    assert timeline.approach_of(edge).coordinated is False


def test_an_approach_91_days_after_another_organisations_is_outside_the_window(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    beyond = timeline.approach(company, VAEKSTHUS, day(91))

    timeline.evaluate(company)

    assert timeline.approach_of(beyond).coordinated is True


def test_a_check_recorded_through_the_api_coordinates_an_approach_13_days_later(
    engine, client, auth
):
    timeline = Timeline(engine)
    company = timeline.company(cvr="25313763")
    answer = client.get(
        "/api/v1/companies/25313763/prior-contact", headers=auth("visitor", VAEKSTHUS)
    )
    assert answer.status_code == 200
    checked_on = _stored_check_date(engine)
    timeline.approach(company, JOBCENTER, checked_on - dt.timedelta(days=10))
    later = timeline.approach(company, VAEKSTHUS, checked_on + dt.timedelta(days=13))

    timeline.evaluate(company, today=checked_on + dt.timedelta(days=30))

    assert timeline.approach_of(later).coordinated is True


def test_a_check_recorded_through_the_api_does_not_coordinate_an_approach_15_days_later(
    engine, client, auth
):
    timeline = Timeline(engine)
    company = timeline.company(cvr="25313763")
    answer = client.get(
        "/api/v1/companies/25313763/prior-contact", headers=auth("visitor", VAEKSTHUS)
    )
    assert answer.status_code == 200
    checked_on = _stored_check_date(engine)
    timeline.approach(company, JOBCENTER, checked_on - dt.timedelta(days=10))
    later = timeline.approach(company, VAEKSTHUS, checked_on + dt.timedelta(days=15))

    timeline.evaluate(company, today=checked_on + dt.timedelta(days=30))

    assert timeline.approach_of(later).coordinated is False


def test_a_check_through_the_api_coordinates_the_checkers_approach_of_the_same_day(
    engine, client, auth
):
    from coordination.companies import local_today

    timeline = Timeline(engine)
    company = timeline.company(cvr="25313763")
    timeline.approach(company, JOBCENTER, local_today() - dt.timedelta(days=20))
    todays = timeline.approach(company, VAEKSTHUS, local_today())
    timeline.evaluate(company, today=local_today())
    assert timeline.approach_of(todays).coordinated is False

    client.get("/api/v1/companies/25313763/prior-contact", headers=auth("visitor", VAEKSTHUS))

    assert timeline.approach_of(todays).coordinated is True


def test_a_check_by_another_organisation_does_not_coordinate(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    timeline.check(company, VEU, day(25))
    approach = timeline.approach(company, VAEKSTHUS, day(30))

    timeline.evaluate(company)

    assert timeline.approach_of(approach).coordinated is False


# --- flags ------------------------------------------------------------------------------------


def test_a_flag_is_raised_on_the_date_the_threshold_is_reached(engine):
    timeline = Timeline(engine)
    company, (second, third) = timeline.flagged_company()

    [flag] = timeline.flags(company)

    assert flag.status == "open"
    assert flag.raised_on == day(20)
    assert flag.organisations == sorted([JOBCENTER, VAEKSTHUS])
    assert flag.approach_ids == sorted(
        [timeline.approach_of(second).id, timeline.approach_of(third).id]
    )


def test_one_uncoordinated_approach_below_the_threshold_raises_no_flag(engine):
    timeline = Timeline(engine)
    company = timeline.company()
    timeline.approach(company, JOBCENTER, day(0))
    timeline.approach(company, VAEKSTHUS, day(10))

    assert timeline.evaluate(company) == 0
    assert timeline.flags(company) == []


def test_evaluating_twice_gives_one_flag(engine):
    timeline = Timeline(engine)
    company, _ = timeline.flagged_company()

    assert timeline.evaluate(company) == 0

    assert len(timeline.flags(company)) == 1


def test_a_cancelled_approach_leaves_a_resolved_flag_resolved(engine):
    timeline = Timeline(engine)
    company, (second, _) = timeline.flagged_company()
    [flag] = timeline.flags(company)
    timeline.resolve(flag.id)

    timeline.cancel(second)
    timeline.evaluate(company)

    [after] = timeline.flags(company)
    assert (after.id, after.status, after.approach_ids) == (flag.id, "resolved", flag.approach_ids)


def test_a_resolved_flag_stays_resolved_until_new_uncoordinated_approaches_raise_a_new_one(
    engine,
):
    timeline = Timeline(engine)
    company, _ = timeline.flagged_company()
    [resolved] = timeline.flags(company)
    timeline.resolve(resolved.id)
    timeline.approach(company, VEU, day(40))
    assert timeline.evaluate(company) == 0  # one new uncoordinated approach is below threshold

    timeline.approach(company, VAEKSTHUS, day(50))
    timeline.evaluate(company)

    old, new = timeline.flags(company)
    assert (old.id, old.status) == (resolved.id, "resolved")
    assert (new.status, new.raised_on) == ("open", day(50))


def test_a_flag_goes_through_its_life_cycle_through_the_api(engine, client, auth):
    timeline = Timeline(engine)
    company, _ = timeline.flagged_company()
    [flag] = timeline.flags(company)
    coordinator = auth("coordinator", "Region Midtjylland")

    acknowledged = client.post(
        f"/api/v1/flags/{flag.id}/acknowledge",
        json={"comment": "Vi ser på det"},
        headers=coordinator,
    )
    resolved = client.post(
        f"/api/v1/flags/{flag.id}/resolve",
        json={"comment": "Aftalt fælles besøg"},
        headers=coordinator,
    )
    again = client.post(
        f"/api/v1/flags/{flag.id}/resolve", json={"comment": "Igen"}, headers=coordinator
    )

    assert (acknowledged.status_code, acknowledged.json["status"]) == (200, "acknowledged")
    assert (resolved.status_code, resolved.json["status"]) == (200, "resolved")
    assert again.status_code == 409
    assert [e["action"] for e in resolved.json["events"]] == ["raised", "acknowledge", "resolve"]


def test_a_flag_resolved_through_the_api_is_not_reopened_by_the_next_evaluation(
    engine, client, auth
):
    timeline = Timeline(engine)
    company, _ = timeline.flagged_company()
    [flag] = timeline.flags(company)
    client.post(
        f"/api/v1/flags/{flag.id}/resolve",
        json={"comment": "Løst"},
        headers=auth("coordinator", "Region Midtjylland"),
    )

    timeline.evaluate(company)

    assert [(f.id, f.status) for f in timeline.flags(company)] == [(flag.id, "resolved")]


def _stored_check_date(engine) -> dt.date:
    with session_scope(engine) as session:
        checked_at = session.execute(select(PriorContactCheck.checked_at)).scalar_one()
    return local_date(checked_at)


__all__ = ["DAY_ZERO", "JOBCENTER", "LATER", "VAEKSTHUS", "VEU", "Timeline", "day", "local_date"]
