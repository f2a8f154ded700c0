"""Hand-made timelines for the coordination rules: days are counted from ``DAY_ZERO``."""

import datetime as dt

from coordination.rules import ApproachFacts, CheckFacts

DAY_ZERO = dt.date(2024, 1, 1)

JOBCENTER = "Jobcenter Aarhus"
VAEKSTHUS = "Væksthus Midtjylland"
VEU = "VEU-center Østjylland"


def day(n: int) -> dt.date:
    return DAY_ZERO + dt.timedelta(days=n)


def approach(id: int, on_day: int, *organisations: str, names_other: bool = False) -> ApproachFacts:
    return ApproachFacts(id, day(on_day), frozenset(organisations), names_other)


def check(organisation: str, on_day: int) -> CheckFacts:
    return CheckFacts(organisation, day(on_day))
