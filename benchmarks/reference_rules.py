"""A straightforward reference implementation of the coordination rules (service.md), written
from the specification's text without looking at ``coordination/rules.py``: quadratic, obvious,
for checking the service on labelled data.

An approach is (date, organisations, names_other). Dates are ``datetime.date``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple


class RefApproach(NamedTuple):
    date: dt.date
    organisations: frozenset[str]
    names_other: bool


class RefCheck(NamedTuple):
    organisation: str
    date: dt.date


def uncoordinated(
    approaches: Sequence[RefApproach],
    checks: Sequence[RefCheck],
    window_days: int,
    lookup_valid_days: int,
) -> list[bool]:
    """For each approach: True when it is uncoordinated."""
    result = []
    for a in approaches:
        joint = len(a.organisations) > 1 or a.names_other
        earlier_other = any(
            0 < (a.date - b.date).days <= window_days and b.organisations - a.organisations
            for b in approaches
        )
        checked = any(
            c.organisation in a.organisations and 0 <= (a.date - c.date).days <= lookup_valid_days
            for c in checks
        )
        result.append(earlier_other and not joint and not checked)
    return result


def flagged(dates_of_uncoordinated: Sequence[dt.date], window_days: int, threshold: int) -> bool:
    """Whether ``threshold`` or more uncoordinated approaches fall inside one window."""
    dates = sorted(dates_of_uncoordinated)
    return any(
        sum(1 for d in dates if 0 <= (d - start).days <= window_days) >= threshold
        for start in dates
    )
