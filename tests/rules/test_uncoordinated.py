"""When is an approach uncoordinated? Default rules: window 90 days, a check valid 14 days."""

from coordination.config import Rules
from coordination.rules import uncoordinated_ids
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
