"""The coordination rules of the spec, as pure functions over one company's data.

The storage layer loads one company's approaches and prior-contact checks into
:class:`ApproachFacts` and :class:`CheckFacts`, calls :func:`evaluate_company` with the flags it
already holds for the company, and stores the :class:`FlagChanges`. Nothing here touches a
database, Flask or the clock. Every decision below is pinned by a test in ``tests/rules``.

Uncoordinated approaches
    * Dates are whole days. "Earlier" means a strictly earlier date: another organisation's
      approach on the same day does not count, because the data carries no time of day and
      ordering same-day approaches by id would make the answer depend on ingestion order.
    * The look-back window is inclusive: with ``window_days = 90`` an approach 90 days before
      counts, one 91 days before does not.
    * A prior-contact check coordinates its organisation's approaches on the day of the check and
      for ``lookup_valid_days`` days after it: with 14, a check 14 days before counts, 15 does not,
      and a check made the morning of the visit counts. A check after the approach does not.

Episodes (:func:`find_episodes`)
    Uncoordinated approaches are taken in date order. An episode begins at the first
    ``flag_threshold`` of them that fit inside one window (at most ``window_days`` from first to
    last), is raised on the date of the last of those, and continues while each next
    uncoordinated approach is at most ``window_days`` after the previous one. A longer gap ends
    it. Uncoordinated approaches before the first full window are not part of the episode. Its
    organisations are everyone involved: the organisations of its approaches and of every
    approach in their look-back windows, i.e. those that made them uncoordinated.

Reconciliation (:func:`reconcile`)
    An episode matches an existing open or acknowledged flag when they share an approach id; the
    flag is updated only if the episode differs from what it holds. A resolved flag is never
    changed or reopened, and the approaches it covers are left out before episodes are found, so
    only new uncoordinated approaches that reach the threshold on their own raise a new flag.
    A flag is never deleted: an open flag whose episode disappears (its approaches cancelled or
    no longer uncoordinated) is left as it is, for a coordinator to resolve.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

from coordination.config import Rules

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
FLAG_STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)
LIVE_STATUSES = frozenset({OPEN, ACKNOWLEDGED})

_TRANSITIONS = {
    (OPEN, "acknowledge"): ACKNOWLEDGED,
    (OPEN, "resolve"): RESOLVED,
    (ACKNOWLEDGED, "resolve"): RESOLVED,
}


class ApproachFacts(NamedTuple):
    """One approach that counts (the caller leaves out cancelled and still-planned ones).

    ``names_other`` is true when its joint-with field names an organisation that is not among
    ``organisations``. A named tuple: made for every stored approach an evaluation reads, in
    about a third of a frozen dataclass's time.
    """

    id: int
    date: dt.date
    organisations: frozenset[str]
    names_other: bool = False

    @classmethod
    def stored(cls, approach_id: int, date: dt.date, organisations, joint: bool) -> ApproachFacts:
        """From a stored approach: ``joint`` with one organisation can only mean that its
        joint-with field names another one."""
        return _new_facts(
            cls,
            (
                approach_id,
                date,
                frozenset(organisations),
                bool(joint and len(organisations) == 1),
            ),
        )

    @property
    def is_joint(self) -> bool:
        """Involves more than one organisation, or names another one."""
        return len(self.organisations) != 1 or self.names_other


_new_facts = tuple.__new__


@dataclass(frozen=True)
class CheckFacts:
    """A prior-contact check of the company by ``organisation`` on ``date``."""

    organisation: str
    date: dt.date


@dataclass(frozen=True)
class Episode:
    """Uncoordinated approaches that together reach the flag threshold; see the module doc."""

    start: dt.date
    raised_on: dt.date
    approach_ids: tuple[int, ...]
    organisations: frozenset[str]


@dataclass(frozen=True)
class ExistingFlag:
    """A flag as stored. Give ``organisations`` to have a change of them alone update the flag."""

    id: int
    status: str
    raised_on: dt.date
    approach_ids: frozenset[int]
    resolved_on: dt.date | None
    organisations: frozenset[str] | None = None


@dataclass(frozen=True)
class FlagChanges:
    """What to store: new flags (status ``open``), and (flag id, its new content) to update."""

    create: list[Episode] = field(default_factory=list)
    update: list[tuple[int, Episode]] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    """One company's result: its uncoordinated approach ids and the flag changes to store."""

    uncoordinated: set[int]
    changes: FlagChanges


class FlagTransitionError(ValueError):
    """The action is not allowed from the flag's status (e.g. resolving a resolved flag)."""

    def __init__(self, status: str, action: str) -> None:
        super().__init__(f"cannot {action} a flag that is {status}")
        self.status = status
        self.action = action


def evaluate_company(
    approaches: Collection[ApproachFacts],
    checks: Iterable[CheckFacts],
    existing_flags: Sequence[ExistingFlag],
    rules: Rules,
) -> Evaluation:
    """Evaluate one company: which approaches are uncoordinated, and how its flags change.

    ``approaches`` are the ones that count: not cancelled, not planned in the future.
    """
    looked_back = _organisations_looked_back(approaches, rules.window_days)
    uncoordinated = uncoordinated_ids(approaches, checks, rules, looked_back)
    not_yet_covered = uncoordinated - covered_by_resolved(existing_flags)
    episodes = find_episodes(approaches, not_yet_covered, rules, looked_back)
    return Evaluation(uncoordinated, reconcile(existing_flags, episodes))


def uncoordinated_ids(
    approaches: Collection[ApproachFacts],
    checks: Iterable[CheckFacts],
    rules: Rules,
    looked_back: Mapping[int, frozenset[str]] | None = None,
) -> set[int]:
    """Ids of the uncoordinated approaches of one company, per the spec's three conditions.

    ``approaches`` are the ones that count: the caller leaves out cancelled approaches and
    planned ones that have not happened. ``looked_back``: their organisations looked back at,
    if the caller has them already.
    """
    if looked_back is None:
        looked_back = _organisations_looked_back(approaches, rules.window_days)
    check_dates = _check_dates_by_organisation(checks)
    # ``not A <= B``: another organisation was there before (A - B non-empty), without
    # making the difference; with no checks at all, none was checked in time.
    if not check_dates:
        return {
            approach.id
            for approach in approaches
            if not looked_back[approach.id] <= approach.organisations and not approach.is_joint
        }
    return {
        approach.id
        for approach in approaches
        if not looked_back[approach.id] <= approach.organisations
        and not approach.is_joint
        and not _checked_in_time(approach, check_dates, rules.lookup_valid_days)
    }


def find_episodes(
    approaches: Collection[ApproachFacts],
    uncoordinated: Collection[int],
    rules: Rules,
    looked_back: Mapping[int, frozenset[str]] | None = None,
) -> list[Episode]:
    """The flag episodes among the ``uncoordinated`` approach ids, in date order.

    ``approaches`` are all of the company's approaches that count (they supply the episode's
    organisations); to honour resolved flags, leave their approaches out of ``uncoordinated``.
    ``looked_back`` as for :func:`uncoordinated_ids`.
    """
    if looked_back is None:
        looked_back = _organisations_looked_back(approaches, rules.window_days)
    ordered = sorted((a for a in approaches if a.id in uncoordinated), key=_date_order)
    episodes = []
    for run in _runs(ordered, rules.window_days):
        first = _first_full_window(run, rules)
        if first is None:
            continue
        members = run[first:]
        involved = frozenset().union(*(a.organisations | looked_back[a.id] for a in members))
        episodes.append(
            Episode(
                start=members[0].date,
                raised_on=run[first + rules.flag_threshold - 1].date,
                approach_ids=tuple(a.id for a in members),
                organisations=involved,
            )
        )
    return episodes


def reconcile(existing: Sequence[ExistingFlag], episodes: Iterable[Episode]) -> FlagChanges:
    """The changes that make the stored flags reflect ``episodes``; idempotent.

    Each episode updates the oldest open or acknowledged flag it shares an approach with and
    that no earlier episode has taken, or else becomes a new flag. So an episode that now spans
    two live flags extends the older one and leaves the other as it is; the detached part of a
    split episode gets its own flag. Resolved flags are never changed; an episode sharing an
    approach with one is ignored (find episodes without those approaches, as
    :func:`evaluate_company` does).
    """
    resolved = covered_by_resolved(existing)
    live = sorted(
        (f for f in existing if f.status in LIVE_STATUSES), key=lambda f: (f.raised_on, f.id)
    )
    taken: set[int] = set()
    changes = FlagChanges()
    for episode in sorted(episodes, key=lambda e: (e.start, e.approach_ids)):
        ids = frozenset(episode.approach_ids)
        if ids & resolved:
            continue
        flag = next((f for f in live if f.id not in taken and f.approach_ids & ids), None)
        if flag is None:
            changes.create.append(episode)
            continue
        taken.add(flag.id)
        if _differs(flag, episode):
            changes.update.append((flag.id, episode))
    return changes


def covered_by_resolved(flags: Iterable[ExistingFlag]) -> frozenset[int]:
    """Approach ids already covered by a resolved flag; they never count towards a new one."""
    return frozenset().union(*(f.approach_ids for f in flags if f.status == RESOLVED))


def transition(status: str, action: str) -> str:
    """The status after ``action`` ("acknowledge" or "resolve"); raises FlagTransitionError."""
    try:
        return _TRANSITIONS[status, action]
    except KeyError:
        raise FlagTransitionError(status, action) from None


# An approach's (date, id): the order of the rules (a key made in C, not a call per approach).
_date_order = attrgetter("date", "id")


def _organisations_looked_back(
    approaches: Collection[ApproachFacts], window_days: int
) -> dict[int, frozenset[str]]:
    """Per approach id, the organisations of the approaches in its look-back window.

    The window is ``[date - window_days, date)``. A sliding count keeps this linear in the number
    of approaches, which matters for the few companies that are approached thousands of times;
    the set is made anew only when an organisation enters or leaves the window (consecutive
    approaches mostly share it)."""
    ordered = sorted(approaches, key=_date_order)
    in_window: dict[str, int] = {}
    present: frozenset[str] = frozenset()
    moved = False  # whether an organisation entered or left the window since ``present``
    entered = left = 0
    window = dt.timedelta(days=window_days)
    result = {}
    for approach in ordered:
        while ordered[entered].date < approach.date:
            for organisation in ordered[entered].organisations:
                count = in_window.get(organisation, 0)
                in_window[organisation] = count + 1
                moved = moved or count == 0
            entered += 1
        earliest = approach.date - window
        while left < entered and ordered[left].date < earliest:
            for organisation in ordered[left].organisations:
                count = in_window[organisation] - 1
                in_window[organisation] = count
                moved = moved or count == 0
            left += 1
        if moved:
            present = frozenset(org for org, count in in_window.items() if count > 0)
            moved = False
        result[approach.id] = present
    return result


def _check_dates_by_organisation(checks: Iterable[CheckFacts]) -> Mapping[str, list[dt.date]]:
    dates: defaultdict[str, list[dt.date]] = defaultdict(list)
    for check in checks:
        dates[check.organisation].append(check.date)
    for organisation_dates in dates.values():
        organisation_dates.sort()
    return dates


def _checked_in_time(
    approach: ApproachFacts, check_dates: Mapping[str, list[dt.date]], lookup_valid_days: int
) -> bool:
    """Whether one of the approach's organisations checked on a day in ``[d - valid, d]``."""
    earliest = approach.date - dt.timedelta(days=lookup_valid_days)
    for organisation in approach.organisations:
        dates = check_dates.get(organisation, [])
        i = bisect_left(dates, earliest)
        if i < len(dates) and dates[i] <= approach.date:
            return True
    return False


def _runs(ordered: Sequence[ApproachFacts], window_days: int) -> list[list[ApproachFacts]]:
    """Split date-ordered approaches where one follows the previous by more than the window."""
    runs: list[list[ApproachFacts]] = []
    for approach in ordered:
        if runs and (approach.date - runs[-1][-1].date).days <= window_days:
            runs[-1].append(approach)
        else:
            runs.append([approach])
    return runs


def _first_full_window(run: Sequence[ApproachFacts], rules: Rules) -> int | None:
    """Index of the first approach that starts ``flag_threshold`` approaches within one window."""
    last_offset = rules.flag_threshold - 1
    for first in range(len(run) - last_offset):
        if (run[first + last_offset].date - run[first].date).days <= rules.window_days:
            return first
    return None


def _differs(flag: ExistingFlag, episode: Episode) -> bool:
    return (
        flag.approach_ids != frozenset(episode.approach_ids)
        or flag.raised_on != episode.raised_on
        or (flag.organisations is not None and flag.organisations != episode.organisations)
    )
