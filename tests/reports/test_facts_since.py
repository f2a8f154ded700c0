"""``refresh_report_facts`` with ``since`` (each company derived only from the earliest day
anything of it changed) against the plain definition, over random worlds and several nights.

Each night changes random approaches: new ones (some joint, some planned), dates moved earlier
and later, deletions, moves to another company, needs added and removed, the planned flag and
``coordinated`` changed, organisations joining; and companies' municipality or industry, which
is not dated. The refresh is given, for most touched companies, the earliest old or new day of
their changed approaches (sometimes an earlier one: more is harmless; for a company whose only
change is its municipality or industry, none but the last day there is); the others it derives
whole. Afterwards the stored facts, their marks and the monthly sums must be what a whole build
gives.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import delete, select

from coordination.models import (
    Approach,
    ApproachOrganisation,
    ApproachRecord,
    Company,
    Need,
    ReportApproachFact,
)
from coordination.reports import facts
from coordination.reports.facts import refresh_report_facts
from tests.reports import builders as b
from tests.reports.test_facts import _nulls_first, assert_facts_current

START = dt.date(2025, 1, 27)
NEEDS = [
    b.need("upskilling", "Svejsning", "komp:svejsning"),
    b.need("upskilling", "CNC", "komp:cnc"),
    b.need("recruitment", "Smed", "stilling:smed"),
    b.need("upskilling", "Bæredygtig emballage"),  # no taxonomy code: NULL in the keys
]
MUNICIPALITIES = ["657", "751", None]
SECTIONS = ["C", "F", None]


def stored_approach_facts(session) -> list[tuple]:
    columns = [c for c in ReportApproachFact.__table__.c if c.name != "id"]
    return sorted((tuple(r) for r in session.execute(select(*columns))), key=_nulls_first)


def derived_approach_facts(session) -> list[tuple]:
    rows = session.execute(facts.derived_approach_facts())
    return sorted((tuple(r) for r in rows), key=_nulls_first)


class World:
    def __init__(self, session, rng: random.Random) -> None:
        self.session = session
        self.rng = rng
        self.sources = [
            b.source(session, b.organisation(session, "Jobcenter Herning", "jobcenter", "657")),
            b.source(session, b.organisation(session, "VEU-center Vest", "veu")),
            b.source(session, b.organisation(session, "Erhvervshus Midt", "vaeksthus")),
        ]
        self.companies = [
            b.company(session, rng.choice(MUNICIPALITIES), rng.choice(SECTIONS))
            for _ in range(rng.randint(2, 5))
        ]
        for _ in range(rng.randint(5, 30)):
            self.add(self.rng.choice(self.companies))

    def day(self) -> dt.date:
        return START + dt.timedelta(days=self.rng.randrange(70))

    def needs(self) -> list:
        return self.rng.sample(NEEDS, self.rng.randint(0, 3))

    def add(self, company: Company) -> Approach:
        rng = self.rng
        first, *others = rng.sample(self.sources, rng.choice([1, 1, 1, 2, 3]))
        return b.approach(
            self.session,
            company,
            self.day(),
            first,
            self.needs(),
            joint=[(other, self.needs()) for other in others],
            coordinated=rng.random() < 0.8,
            planned=rng.random() < 0.1,
        )

    def approaches(self) -> list[Approach]:
        return list(self.session.scalars(select(Approach).order_by(Approach.id)))

    def night(self) -> dict[int, dt.date | None]:
        """Random changes; returns the companies touched, each with the earliest day it
        changed from (None: not dated)."""
        rng, session = self.rng, self.session
        touched: dict[int, dt.date | None] = {}

        def dated(company_id: int, *days: dt.date) -> None:
            earlier = touched.get(company_id)
            touched[company_id] = min(days) if earlier is None else min(earlier, *days)

        for _ in range(rng.randint(1, 6)):
            approaches = self.approaches()
            kind = rng.choice(
                ["add", "add", "date", "date", "delete", "move", "needs", "planned", "coordinated"]
                + ["organisation", "company"]
            )
            if kind == "add" or not approaches:
                added = self.add(rng.choice(self.companies))
                dated(added.company_id, added.date)
                continue
            approach = rng.choice(approaches)
            old = approach.date
            if kind == "date":
                approach.date = self.day()
                dated(approach.company_id, old, approach.date)
            elif kind == "delete":
                for table, column in (
                    (ApproachRecord, ApproachRecord.approach_id),
                    (ApproachOrganisation, ApproachOrganisation.approach_id),
                ):
                    session.execute(delete(table).where(column == approach.id))
                dated(approach.company_id, old)
                session.delete(approach)
            elif kind == "move":
                target = rng.choice(self.companies)
                dated(approach.company_id, old)
                approach.company_id = target.id
                dated(target.id, old)
            elif kind == "needs":
                record_id = session.scalar(
                    select(ApproachRecord.source_record_id).where(
                        ApproachRecord.approach_id == approach.id
                    )
                )
                gone = session.scalars(select(Need).where(Need.source_record_id == record_id))
                for need in list(gone):
                    if rng.random() < 0.5:
                        session.delete(need)
                spec = rng.choice(NEEDS)
                session.add(
                    Need(
                        source_record_id=record_id,
                        type=spec.type,
                        code=spec.code,
                        label=f"{spec.label} {rng.randrange(1000)}",
                        taxonomy_code=spec.taxonomy_code,
                        mapping_method=spec.mapping_method,
                    )
                )
                dated(approach.company_id, old)
            elif kind == "planned":
                approach.planned = not approach.planned
                dated(approach.company_id, old)
            elif kind == "coordinated":
                approach.coordinated = not approach.coordinated
                dated(approach.company_id, old)
            elif kind == "organisation":
                source = rng.choice(self.sources)
                record = b.record(session, source, session.get(Company, approach.company_id), old)
                session.add(ApproachRecord(source_record_id=record.id, approach_id=approach.id))
                if not session.get(ApproachOrganisation, (approach.id, source.organisation_id)):
                    session.add(
                        ApproachOrganisation(
                            approach_id=approach.id, organisation_id=source.organisation_id
                        )
                    )
                dated(approach.company_id, old)
            else:  # not dated: the company's municipality or industry
                company = rng.choice(self.companies)
                if rng.random() < 0.5:
                    company.municipality_code = rng.choice(MUNICIPALITIES)
                else:
                    company.industry_section = rng.choice(SECTIONS)
                touched.setdefault(company.id, None)
            session.flush()
        return touched


@pytest.mark.parametrize("seed", range(12))
def test_refreshes_from_the_changed_days_give_the_facts_of_a_whole_build(session, seed):
    rng = random.Random(seed)
    world = World(session, rng)
    refresh_report_facts(session)  # the first build
    assert_facts_current(session)
    for _ in range(5):
        touched = world.night()
        since = {}
        for company_id, day in touched.items():
            choice = rng.random()
            if choice < 0.1:
                continue  # derived whole
            if day is None:  # nothing dated changed: the last day is as good as any later one
                since[company_id] = rng.choice([dt.date.max, START + dt.timedelta(days=69)])
            else:
                since[company_id] = day - dt.timedelta(days=rng.choice([0, 0, 0, 1, 20]))
        # a company with nothing changed, refreshed all the same
        untouched = [c.id for c in world.companies if c.id not in touched]
        if untouched and rng.random() < 0.5:
            since[rng.choice(untouched)] = world.day()
        refresh_report_facts(session, set(touched) | set(since), since)
        assert_facts_current(session)
        assert stored_approach_facts(session) == derived_approach_facts(session)
    # and the definition's rows are those of a build from nothing
    refresh_report_facts(session)
    assert_facts_current(session)


def test_a_company_moved_to_another_municipality_is_derived_whole(session):
    """Its municipality is not dated: its facts before the day it is given follow too."""
    source = b.source(session, b.organisation(session, "Jobcenter Herning", "jobcenter", "657"))
    company = b.company(session, "657", "C")
    for day in (START, START + dt.timedelta(days=30)):
        b.approach(session, company, day, source, [NEEDS[0]])
    refresh_report_facts(session)
    company.municipality_code = "751"
    session.flush()
    refresh_report_facts(session, [company.id], {company.id: dt.date.max})
    assert_facts_current(session)
    stored = select(facts.ReportNeedFact.__table__.c.municipality_code).distinct()
    assert list(session.scalars(stored)) == ["751"]
