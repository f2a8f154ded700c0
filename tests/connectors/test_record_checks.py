"""The connector edge's plain-Python check of a record agrees with the marshmallow schema."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from connectors.base import (
    CompanyRef,
    NeedRef,
    PersonRef,
    SourceRecordData,
    _plainly_valid,
    _schema_problems,
)

GOOD = SourceRecordData(
    source_id="a-1",
    approach_date=dt.date(2025, 3, 4),
    status="completed",
    company=CompanyRef(name="Bøgh ApS", cvr="10150817", p_number="1234567890", postcode="8000"),
    channel="visit",
    purpose="Opfølgning",
    contact_person=PersonRef(name="Anne", email="a@b.dk", phone="86123456"),
    consultant=PersonRef(name="Bo", email="bo@c.dk"),
    needs=(NeedRef(type="upskilling", label="Svejsning", code="AMU-1"),),
    joint_with=("VEU-center Østjylland",),
    notes="Ring igen.",
    modified_at=dt.datetime(2025, 3, 4, 12, tzinfo=dt.UTC),
)


def _variants():
    company, person, need = GOOD.company, GOOD.contact_person, GOOD.needs[0]
    yield GOOD
    for name, limit in (("source_id", 200), ("purpose", 2000), ("notes", 20000)):
        yield dataclasses.replace(GOOD, **{name: "x" * limit})
        yield dataclasses.replace(GOOD, **{name: "x" * (limit + 1)})
    for name, limit in (
        ("name", 500), ("cvr", 40), ("p_number", 40), ("address", 500),
        ("postcode", 20), ("city", 200), ("external_id", 200),
    ):  # fmt: skip
        for value in ("x" * limit, "x" * (limit + 1), None, 12):
            yield dataclasses.replace(GOOD, company=dataclasses.replace(company, **{name: value}))
    for name, limit in (("name", 300), ("email", 300), ("phone", 60)):
        for value in ("x" * limit, "x" * (limit + 1), None, 7):
            changed = dataclasses.replace(person, **{name: value})
            yield dataclasses.replace(GOOD, contact_person=changed)
            yield dataclasses.replace(GOOD, consultant=changed)
    for changed in (
        dataclasses.replace(need, type="other"),
        dataclasses.replace(need, label=""),
        dataclasses.replace(need, label="x" * 500),
        dataclasses.replace(need, label="x" * 501),
        dataclasses.replace(need, code="x" * 100),
        dataclasses.replace(need, code="x" * 101),
        dataclasses.replace(need, code=None),
    ):
        yield dataclasses.replace(GOOD, needs=(need, changed))
    for joint in (("x" * 300,), ("x" * 301,), (None,), ()):
        yield dataclasses.replace(GOOD, joint_with=joint)
    yield dataclasses.replace(GOOD, needs=())
    yield dataclasses.replace(GOOD, source_id="")
    yield dataclasses.replace(GOOD, status="unknown")
    yield dataclasses.replace(GOOD, channel="fax")
    yield dataclasses.replace(GOOD, channel=None, contact_person=None, consultant=None)
    yield dataclasses.replace(GOOD, modified_at=None)
    yield dataclasses.replace(GOOD, modified_at=dt.datetime(2025, 3, 4, 12))


@pytest.mark.parametrize("record", list(_variants()))
def test_a_plainly_valid_record_is_one_the_schema_takes(record):
    assert _plainly_valid(record) == (_schema_problems(record) is None)
