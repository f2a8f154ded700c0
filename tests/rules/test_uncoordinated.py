"""When is an approach uncoordinated? Default rules: window 90 days, a check valid 14 days."""

import datetime as dt
import random

import pytest

from coordination.config import Rules
from coordination.rules import _organisations_looked_back, evaluate_company, uncoordinated_ids
from tests.rules import JOBCENTER, VAEKSTHUS, VEU, approach, check

RULES = Rules()


def test_another_organisations_earlier_approach_makes_an_unchecked_approach_uncoordinated():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 10, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == {2}


def test_the_first_approach_to_a_company_is_coordinated():
    assert uncoordinated_ids([approach(1, 0, JOBCENTER)], [], RULES) == set()


def test_a_later_approach_does_not_make_an_earlier_one_uncoordinated():
    approaches = [approach(1, 10, VAEKSTHUS), approach(2, 0, JOBCENTER)]

    assert uncoordinated_ids(approaches, [], RULES) == {1}


def test_a_joint_approach_of_two_organisations_is_never_uncoordinated():
    approaches = [approach(1, 0, VEU), approach(2, 10, JOBCENTER, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == set()


def test_an_approach_naming_another_organisation_in_joint_with_is_joint():
    approaches = [approach(1, 0, VEU), approach(2, 10, VAEKSTHUS, names_other=True)]

    assert uncoordinated_ids(approaches, [], RULES) == set()


def test_a_follow_up_by_the_same_organisation_is_not_made_uncoordinated_by_its_own_approach():
    approaches = [approach(1, 0, VAEKSTHUS), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == set()


def test_an_earlier_joint_approach_counts_for_the_partner_organisation():
    approaches = [approach(1, 0, JOBCENTER, VAEKSTHUS), approach(2, 30, JOBCENTER)]

    assert uncoordinated_ids(approaches, [], RULES) == {2}


def test_an_approach_exactly_window_days_before_counts():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 90, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == {2}


def test_an_approach_one_day_more_than_window_days_before_does_not_count():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 91, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == set()


def test_the_window_is_taken_from_the_rules():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 31, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], Rules(window_days=30)) == set()


def test_another_organisations_approach_on_the_same_day_is_not_earlier():
    approaches = [approach(1, 5, JOBCENTER), approach(2, 5, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == set()


def test_a_check_13_days_before_coordinates_the_approach():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [check(VAEKSTHUS, 17)], RULES) == set()


def test_a_check_15_days_before_no_longer_coordinates_the_approach():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [check(VAEKSTHUS, 15)], RULES) == {2}


def test_a_check_exactly_lookup_valid_days_before_coordinates_the_approach():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [check(VAEKSTHUS, 16)], RULES) == set()


def test_a_check_on_the_day_of_the_approach_coordinates_it():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [check(VAEKSTHUS, 30)], RULES) == set()


def test_a_check_after_the_approach_does_not_coordinate_it():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [check(VAEKSTHUS, 31)], RULES) == {2}


def test_a_check_by_another_organisation_does_not_coordinate_the_approach():
    approaches = [approach(1, 0, JOBCENTER), approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [check(VEU, 30), check(JOBCENTER, 29)], RULES) == {2}


def test_an_approach_left_out_by_the_caller_as_cancelled_does_not_count():
    # The caller passes only approaches that count; the Jobcenter visit on day 0 was cancelled.
    approaches = [approach(2, 30, VAEKSTHUS)]

    assert uncoordinated_ids(approaches, [], RULES) == set()


@pytest.mark.parametrize("seed", range(20))
def test_the_organisations_looked_back_are_those_of_the_approaches_in_the_window(seed):
    """The sliding count (which keeps one set while no organisation enters or leaves the
    window) against the definition, over random histories with same-day approaches, joint
    ones and gaps longer than the window."""
    rng = random.Random(seed)
    window = rng.choice([0, 1, 7, 90])
    organisations = [JOBCENTER, VAEKSTHUS, VEU]
    approaches = [
        approach(n, rng.randrange(0, 400), *rng.sample(organisations, rng.choice([1, 1, 1, 2])))
        for n in range(rng.randrange(1, 120))
    ]

    looked_back = _organisations_looked_back(approaches, window)

    for a in approaches:
        earliest = a.date - dt.timedelta(days=window)
        expected = {o for b in approaches if earliest <= b.date < a.date for o in b.organisations}
        assert looked_back[a.id] == expected, a


@pytest.mark.parametrize("seed", range(30))
def test_the_uncoordinated_approaches_are_those_of_the_spec_over_random_histories(seed):
    """The spec's three conditions written out plainly, one approach at a time, against
    ``uncoordinated_ids`` over random histories: same-day approaches, joint ones (two
    organisations, or one naming another), checks before, on and after the day."""
    rng = random.Random(seed)
    rules = Rules(window_days=rng.choice([0, 1, 7, 90]), lookup_valid_days=rng.choice([0, 3, 14]))
    organisations = [JOBCENTER, VAEKSTHUS, VEU]
    approaches = [
        approach(
            n,
            rng.randrange(0, 300),
            *rng.sample(organisations, rng.choice([1, 1, 1, 2])),
            names_other=rng.random() < 0.1,
        )
        for n in range(rng.randrange(1, 80))
    ]
    checks = [
        check(rng.choice(organisations), rng.randrange(0, 300)) for _ in range(rng.randrange(0, 8))
    ]

    def plain(a) -> bool:
        earliest = a.date - dt.timedelta(days=rules.window_days)
        another_before = any(
            earliest <= b.date < a.date and b.organisations - a.organisations for b in approaches
        )
        joint = len(a.organisations) > 1 or a.names_other
        earliest_check = a.date - dt.timedelta(days=rules.lookup_valid_days)
        checked = any(
            c.organisation in a.organisations and earliest_check <= c.date <= a.date for c in checks
        )
        return another_before and not joint and not checked

    expected = {a.id for a in approaches if plain(a)}
    assert uncoordinated_ids(approaches, checks, rules) == expected
    assert (
        uncoordinated_ids(approaches, checks, rules)
        == evaluate_company(approaches, checks, [], rules).uncoordinated
    )
