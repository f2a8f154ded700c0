"""Approach de-duplication: which source records of one company are one approach.

Two records are one approach (spec, "One approach, many records") when their dates differ by at
most ``tolerance_days`` and either

- they come from different organisations and at least one names the other's organisation in
  its joint-with field (a joint visit), or
- they come from the same organisation with the same non-empty consultant e-mail and the same
  channel (a double entry; two missing channels count as the same).

Grouping is the transitive closure of that relation with two guards against chaining: a group
never spans more than ``tolerance_days`` from its earliest to its latest record, and two records
of the same organisation share a group only when they are a double entry of each other (so a
partner's joint visit cannot pull two separate contacts of one organisation together). Pairs
are joined closest dates first (ties: earlier date, then lower ids), and a join that would break
a guard is skipped. So with a tolerance of 1 day, joint records on Monday, Tuesday
and Wednesday give {Monday, Tuesday} and {Wednesday}, the same answer whatever the input order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

from coordination.identity.normalise import normalise_email, normalise_organisation_name

__all__ = ["GroupableRecord", "group_records", "is_joint", "same_approach"]


@dataclasses.dataclass(frozen=True, slots=True)
class GroupableRecord:
    """What grouping needs of one (not cancelled, not deleted) source record of one company."""

    id: int
    organisation: str
    date: dt.date
    channel: str | None = None
    consultant_email: str | None = None
    joint_with: tuple[str, ...] = ()


def same_approach(a: GroupableRecord, b: GroupableRecord, tolerance_days: int) -> bool:
    """Whether ``a`` and ``b`` are one approach by the spec's pairwise rule."""
    if abs((a.date - b.date).days) > tolerance_days:
        return False
    org_a = normalise_organisation_name(a.organisation)
    org_b = normalise_organisation_name(b.organisation)
    if org_a != org_b:
        return org_b in _partners(a) or org_a in _partners(b)
    email = normalise_email(a.consultant_email)
    same_consultant = email is not None and email == normalise_email(b.consultant_email)
    return same_consultant and a.channel == b.channel


def group_records(records: Sequence[GroupableRecord], tolerance_days: int) -> list[list[int]]:
    """The ids of one company's ``records`` grouped into approaches.

    Every id appears in exactly one group; ids ascend within a group, and groups are ordered by
    earliest date, then lowest id. ValueError for a negative tolerance or duplicate ids.
    """
    if tolerance_days < 0:
        raise ValueError(f"tolerance_days must not be negative, got {tolerance_days}")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique")
    by_date = sorted(records, key=lambda r: (r.date, r.id))
    groups = _Groups(by_date, tolerance_days)
    for _, a, b in sorted(_close_pairs(by_date, tolerance_days)):
        if same_approach(by_date[a], by_date[b], tolerance_days):
            groups.join(a, b)
    return groups.as_id_lists()


def is_joint(records: Iterable[GroupableRecord]) -> bool:
    """Whether an approach made of ``records`` is joint: it involves more than one organisation,
    or one of its records names another organisation in its joint-with field."""
    records = list(records)
    organisations = {normalise_organisation_name(r.organisation) for r in records}
    if len(organisations) > 1:
        return True
    return any(_partners(r) - organisations for r in records)


def _partners(record: GroupableRecord) -> set[str]:
    """The organisations ``record`` names in its joint-with field, normalised."""
    return {key for key in map(normalise_organisation_name, record.joint_with) if key}


def _close_pairs(
    by_date: list[GroupableRecord], tolerance_days: int
) -> Iterable[tuple[int, int, int]]:
    """(days apart, i, j) for positions i < j in ``by_date`` at most ``tolerance_days`` apart.

    A sliding window over the date-sorted records, so the work grows with the pairs that can
    match, not with the square of the records.
    """
    for i, first in enumerate(by_date):
        for j in range(i + 1, len(by_date)):
            gap = (by_date[j].date - first.date).days
            if gap > tolerance_days:
                break
            yield gap, i, j


class _Groups:
    """Union-find over positions in the date-sorted list, tracking each group's date span."""

    def __init__(self, by_date: list[GroupableRecord], tolerance_days: int) -> None:
        self._records = by_date
        self._tolerance = tolerance_days
        self._parent = list(range(len(by_date)))
        self._first = [r.date for r in by_date]
        self._last = [r.date for r in by_date]
        self._members = [[i] for i in range(len(by_date))]

    def _root(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        """Join the groups of ``a`` and ``b`` unless a guard forbids it."""
        root_a, root_b = self._root(a), self._root(b)
        if root_a == root_b:
            return
        first = min(self._first[root_a], self._first[root_b])
        last = max(self._last[root_a], self._last[root_b])
        if (last - first).days > self._tolerance or self._mixes_separate_contacts(root_a, root_b):
            return
        keep, gone = min(root_a, root_b), max(root_a, root_b)
        self._parent[gone] = keep
        self._first[keep], self._last[keep] = first, last
        self._members[keep] += self._members[gone]
        self._members[gone] = []

    def _mixes_separate_contacts(self, root_a: int, root_b: int) -> bool:
        """Whether joining would put two records of one organisation that are not a double
        entry of each other into one approach."""
        for i in self._members[root_a]:
            first = self._records[i]
            organisation = normalise_organisation_name(first.organisation)
            for j in self._members[root_b]:
                second = self._records[j]
                if normalise_organisation_name(second.organisation) != organisation:
                    continue
                if not same_approach(first, second, self._tolerance):
                    return True
        return False

    def as_id_lists(self) -> list[list[int]]:
        members: dict[int, list[GroupableRecord]] = {}
        for i, record in enumerate(self._records):
            members.setdefault(self._root(i), []).append(record)
        groups = [sorted(group, key=lambda r: r.id) for group in members.values()]
        groups.sort(key=lambda group: (min(r.date for r in group), group[0].id))
        return [[r.id for r in group] for group in groups]
