"""Flag episodes, their reconciliation with stored flags, and the flag life cycle.

Default rules: window 90 days, threshold 2. The timelines alternate organisations without
prior-contact checks, so every approach after the first is uncoordinated.
"""

import dataclasses

import pytest

from coordination.config import Rules
from coordination.rules import (
    ACKNOWLEDGED,
    OPEN,
    RESOLVED,
    Episode,
    ExistingFlag,
    FlagChanges,
    FlagTransitionError,
    evaluate_company,
    find_episodes,
    reconcile,
    transition,
    uncoordinated_ids,
)
from tests.rules import JOBCENTER, VAEKSTHUS, VEU, approach, check, day

RULES = Rules()


def episodes_of(approaches, checks=(), rules=RULES):
    return find_episodes(approaches, uncoordinated_ids(approaches, checks, rules), rules)


def store(flags, changes):
    """What the storage layer does with the changes: a fake that numbers new flags from 1."""
    by_id = {flag.id: flag for flag in flags}
    for flag_id, episode in changes.update:
        by_id[flag_id] = dataclasses.replace(
            by_id[flag_id],
            raised_on=episode.raised_on,
            approach_ids=frozenset(episode.approach_ids),
            organisations=episode.organisations,
        )
    for episode in changes.create:
        new_id = max(by_id, default=0) + 1
        by_id[new_id] = ExistingFlag(
            new_id,
            OPEN,
            episode.raised_on,
            frozenset(episode.approach_ids),
            None,
            episode.organisations,
        )
    return sorted(by_id.values(), key=lambda flag: flag.id)


def evaluate_and_store(approaches, flags):
    return store(flags, evaluate_company(approaches, [], flags, RULES).changes)


def resolve_all(flags, on_day):
    return [dataclasses.replace(f, status=RESOLVED, resolved_on=day(on_day)) for f in flags]


# Three approaches: the first by the Jobcenter is coordinated, days 10 and 20 are not.
CROWDED = [approach(1, 0, JOBCENTER), approach(2, 10, VAEKSTHUS), approach(3, 20, JOBCENTER)]


# --- episodes ---------------------------------------------------------------------------------


def test_a_single_uncoordinated_approach_raises_no_flag():
    assert episodes_of(CROWDED[:2]) == []


def test_the_second_uncoordinated_approach_raises_a_flag_on_its_date():
    (episode,) = episodes_of(CROWDED)

    assert episode.raised_on == day(20)


def test_the_flag_lists_the_uncoordinated_approaches():
    (episode,) = episodes_of(CROWDED)

    assert episode.approach_ids == (2, 3)
    assert episode.start == day(10)


def test_the_flag_lists_the_organisations_of_its_approaches_and_of_those_that_preceded_them():
    approaches = [approach(1, 0, VEU), approach(2, 10, VAEKSTHUS), approach(3, 20, JOBCENTER)]

    (episode,) = episodes_of(approaches)

    assert episode.organisations == {VEU, VAEKSTHUS, JOBCENTER}


def test_two_uncoordinated_approaches_91_days_apart_raise_no_flag():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 10, VAEKSTHUS)]
    approaches += [approach(3, 95, VEU), approach(4, 101, JOBCENTER)]
    checks = [check(VEU, 95)]
    assert uncoordinated_ids(approaches, checks, RULES) == {2, 4}

    assert episodes_of(approaches, checks) == []


def test_two_uncoordinated_approaches_90_days_apart_raise_a_flag():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 10, VAEKSTHUS)]
    approaches += [approach(3, 95, VEU), approach(4, 100, JOBCENTER)]
    checks = [check(VEU, 95)]
    assert uncoordinated_ids(approaches, checks, RULES) == {2, 4}

    (episode,) = episodes_of(approaches, checks)

    assert episode.approach_ids == (2, 4)
    assert episode.raised_on == day(100)


def test_an_episode_continues_while_each_approach_is_within_the_window_of_the_previous():
    approaches = CROWDED + [approach(4, 100, VAEKSTHUS), approach(5, 180, JOBCENTER)]

    (episode,) = episodes_of(approaches)

    assert episode.approach_ids == (2, 3, 4, 5)
    assert episode.raised_on == day(20)


def test_a_gap_longer_than_the_window_ends_the_episode():
    later = [approach(4, 200, VAEKSTHUS), approach(5, 210, JOBCENTER), approach(6, 220, VEU)]

    first, second = episodes_of(CROWDED + later)

    assert first.approach_ids == (2, 3)
    assert second.approach_ids == (5, 6)


def test_the_episode_starts_at_the_first_threshold_approaches_that_fit_in_one_window():
    # Threshold 3: days 10, 100 and 180 span 170 days; 100, 180 and 181 fit in 90.
    rules = Rules(flag_threshold=3)
    approaches = [approach(1, 0, JOBCENTER), approach(2, 10, VAEKSTHUS)]
    approaches += [approach(3, 100, JOBCENTER), approach(4, 180, VAEKSTHUS)]
    approaches += [approach(5, 181, JOBCENTER)]
    uncoordinated = {2, 3, 4, 5}  # given, to show the episode rule on its own

    (episode,) = find_episodes(approaches, uncoordinated, rules)

    assert episode.approach_ids == (3, 4, 5)
    assert episode.raised_on == day(181)


# --- reconciliation -----------------------------------------------------------------------------


def test_the_first_evaluation_creates_one_open_flag():
    flags = evaluate_and_store(CROWDED, [])

    assert [(f.status, f.raised_on, f.approach_ids) for f in flags] == [
        (OPEN, day(20), frozenset({2, 3}))
    ]


def test_evaluation_run_twice_creates_one_flag():
    once = evaluate_and_store(CROWDED, [])

    assert evaluate_company(CROWDED, [], once, RULES).changes == FlagChanges()
    assert evaluate_and_store(CROWDED, once) == once


def test_a_later_uncoordinated_approach_extends_the_open_flag():
    flags = evaluate_and_store(CROWDED, [])

    changes = evaluate_company(CROWDED + [approach(4, 60, VEU)], [], flags, RULES).changes

    assert changes.create == []
    assert [(flag_id, e.approach_ids) for flag_id, e in changes.update] == [(1, (2, 3, 4))]


def test_a_later_uncoordinated_approach_extends_an_acknowledged_flag():
    (flag,) = evaluate_and_store(CROWDED, [])
    acknowledged = dataclasses.replace(flag, status=ACKNOWLEDGED)

    changes = evaluate_company(CROWDED + [approach(4, 60, VEU)], [], [acknowledged], RULES).changes

    assert changes.create == []
    assert [flag_id for flag_id, _ in changes.update] == [flag.id]


def test_a_resolved_flag_is_not_updated_by_a_later_uncoordinated_approach():
    resolved = resolve_all(evaluate_and_store(CROWDED, []), on_day=30)

    changes = evaluate_company(CROWDED + [approach(4, 60, VEU)], [], resolved, RULES).changes

    assert changes == FlagChanges()


def test_new_uncoordinated_approaches_after_resolution_raise_a_new_flag():
    resolved = resolve_all(evaluate_and_store(CROWDED, []), on_day=30)
    approaches = CROWDED + [approach(4, 60, VEU), approach(5, 70, VAEKSTHUS)]

    changes = evaluate_company(approaches, [], resolved, RULES).changes

    assert changes.update == []
    assert [(e.raised_on, e.approach_ids) for e in changes.create] == [(day(70), (4, 5))]


def test_a_cancelled_approach_does_not_change_a_resolved_flag():
    resolved = resolve_all(evaluate_and_store(CROWDED, []), on_day=30)
    without_cancelled = [a for a in CROWDED if a.id != 3]

    assert evaluate_company(without_cancelled, [], resolved, RULES).changes == FlagChanges()


def test_a_cancelled_approach_shrinks_an_open_flag():
    flags = evaluate_and_store(CROWDED + [approach(4, 60, VEU)], [])
    without_cancelled = [a for a in CROWDED if a.id != 3] + [approach(4, 60, VEU)]

    changes = evaluate_company(without_cancelled, [], flags, RULES).changes

    assert [(flag_id, e.approach_ids, e.raised_on) for flag_id, e in changes.update] == [
        (1, (2, 4), day(60))
    ]


def test_an_open_flag_whose_episode_disappears_is_left_as_it_is():
    flags = evaluate_and_store(CROWDED, [])
    without_cancelled = [a for a in CROWDED if a.id != 3]

    assert evaluate_company(without_cancelled, [], flags, RULES).changes == FlagChanges()


def test_an_organisation_joining_the_episode_updates_the_flag():
    flags = evaluate_and_store(CROWDED, [])
    # A VEU approach on day 5 is coordinated itself but widens who crowded the company.
    approaches = CROWDED + [approach(6, 5, VEU, names_other=True)]

    (update,) = evaluate_company(approaches, [], flags, RULES).changes.update

    assert update[1].approach_ids == (2, 3)
    assert update[1].organisations == {JOBCENTER, VAEKSTHUS, VEU}


def test_an_episode_spanning_two_open_flags_extends_the_older_one_and_leaves_the_other():
    older = ExistingFlag(7, OPEN, day(20), frozenset({2, 3}), None)
    newer = ExistingFlag(8, ACKNOWLEDGED, day(120), frozenset({4, 5}), None)
    episode = Episode(day(10), day(20), (2, 3, 4, 5), frozenset({JOBCENTER, VAEKSTHUS}))

    changes = reconcile([newer, older], [episode])

    assert changes == FlagChanges(create=[], update=[(7, episode)])


def test_the_detached_part_of_a_split_episode_gets_its_own_flag():
    flag = ExistingFlag(7, OPEN, day(20), frozenset({2, 3, 4, 5}), None)
    first = Episode(day(10), day(20), (2, 3), frozenset({JOBCENTER, VAEKSTHUS}))
    detached = Episode(day(200), day(210), (4, 5), frozenset({JOBCENTER, VAEKSTHUS}))

    changes = reconcile([flag], [detached, first])

    assert changes == FlagChanges(create=[detached], update=[(7, first)])


def test_an_episode_sharing_an_approach_with_a_resolved_flag_is_ignored():
    resolved = ExistingFlag(7, RESOLVED, day(20), frozenset({2, 3}), day(30))
    episode = Episode(day(10), day(20), (2, 3, 4), frozenset({JOBCENTER, VAEKSTHUS}))

    assert reconcile([resolved], [episode]) == FlagChanges()


# --- life cycle ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [
        (OPEN, "acknowledge", ACKNOWLEDGED),
        (OPEN, "resolve", RESOLVED),
        (ACKNOWLEDGED, "resolve", RESOLVED),
    ],
)
def test_allowed_transitions(status, action, after):
    assert transition(status, action) == after


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (RESOLVED, "resolve"),
        (RESOLVED, "acknowledge"),
        (ACKNOWLEDGED, "acknowledge"),
        (OPEN, "reopen"),
        ("deleted", "resolve"),
    ],
)
def test_other_transitions_are_refused(status, action):
    with pytest.raises(FlagTransitionError):
        transition(status, action)
