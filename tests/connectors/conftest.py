"""Fixtures for the HTTP connector tests: started fake servers and hand-made source items."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordination.demo.fakes import FakeODataCrm, FakeVeuApi

PROJECT = Path(__file__).resolve().parents[2]


def _samples_dir() -> Path:
    """The shared sample deliveries: $COORDINATION_SAMPLES, ``samples/`` in the project, or the
    ``shared/samples`` folder beside it (where they live on the development machines)."""
    candidates = [PROJECT / "samples", PROJECT.parent / "shared" / "samples"]
    if os.environ.get("COORDINATION_SAMPLES"):
        candidates.insert(0, Path(os.environ["COORDINATION_SAMPLES"]))
    return next((path for path in candidates if path.is_dir()), candidates[-1])


SAMPLES = _samples_dir()


class Sleeps(list):
    """Stands in for ``time.sleep``: records the waits a connector asked for, waits none."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def crm() -> Iterator[FakeODataCrm]:
    with FakeODataCrm() as fake:
        yield fake


@pytest.fixture
def veu() -> Iterator[FakeVeuApi]:
    with FakeVeuApi() as fake:
        yield fake


APPOINTMENT: dict[str, Any] = {
    "activityid": "a-1",
    "subject": "Vækstsparring",
    "scheduledstart": "2025-09-23T13:00:00+02:00",
    "modifiedon": "2025-09-26T07:00:00Z",
    "statecode": 1,
    "cr_contacttype": "besoeg",
    "regardingobjectid_account": {
        "accountid": "acc-1",
        "name": "Madsen & Bøgh ApS",
        "cr_cvr": "14272720",
        "cr_pnumber": "1381329428",
        "address1_line1": "Aagaardvej 15",
        "address1_postalcode": "7500",
        "address1_city": "Holstebro",
    },
    "cr_contact": {
        "fullname": "Søren Østergaard",
        "emailaddress1": "soeren@madsen.dk",
        "telephone1": "33410157",
    },
    "owninguser": {"fullname": "Hanne Rasmussen", "internalemailaddress": "hanne@vh.dk"},
    "cr_competenceneeds": "DIG;LEAN",
    "cr_jointwith": "VEU-center Østjylland; ;Jobcenter Århus",
    "description": "God dialog om grøn omstilling på værkstedet.",
}

CONTACT: dict[str, Any] = {
    "id": "veu-1",
    "updated_at": "2025-10-19T16:00:00Z",
    "deleted": False,
    "date": "2025-10-16",
    "channel": "visit",
    "purpose": "Virksomhedspraktik",
    "company": {
        "cvr": "53282067",
        "p_number": None,
        "name": "Østjysk Robotteknik ApS",
        "address": "Søgaardvej 56",
        "postcode": "8680",
        "city": "Ry",
    },
    "contact_person": {"name": "Bjørn Kristensen", "email": "bjoern@oestjysk.dk", "phone": "916"},
    "consultant": {"name": "Jørgen Møller", "email": "joergen@veu.dk"},
    "needs": [{"type": "upskilling", "code": "AMU-CNC", "label": "CNC-bearbejdning"}],
    "joint_with": ["Væksthus Midtjylland", " "],
    "notes": "Ring igen efter sommerferien.",
}


def appointment(activityid: str = "a-1", **changes: Any) -> dict[str, Any]:
    """A valid appointment with ``changes`` applied on top."""
    item = copy.deepcopy(APPOINTMENT)
    item.update(activityid=activityid, **changes)
    return item


def contact(id: str = "veu-1", **changes: Any) -> dict[str, Any]:  # noqa: A002 (spec's name)
    """A valid VEU contact item with ``changes`` applied on top."""
    item = copy.deepcopy(CONTACT)
    item.update(id=id, **changes)
    return item
