"""Approach de-duplication: joint visits, double entries and the chaining guard."""

import datetime as dt

import pytest

from coordination.approaches.grouping import GroupableRecord, group_records, is_joint

MONDAY = dt.date(2025, 3, 3)
TOLERANCE = 1


def on(days_after_monday, record_id, organisation, **fields):
    return GroupableRecord(
        id=record_id,
        organisation=organisation,
        date=MONDAY + dt.timedelta(days=days_after_monday),
        **fields,
    )


def test_joint_visit_of_two_organisations_one_day_apart_is_one_approach():
    records = [
        on(0, 1, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
        on(1, 2, "Jobcenter Aarhus"),
    ]
    assert group_records(records, TOLERANCE) == [[1, 2]]


def test_joint_with_name_is_compared_normalised():
    records = [
        on(0, 1, "Erhvervshus Midtjylland"),
        on(0, 2, "Jobcenter Århus", joint_with=("ERHVERVSHUS  midtjylland.",)),
    ]
    assert group_records(records, TOLERANCE) == [[1, 2]]


def test_joint_visit_three_days_apart_is_two_approaches():
    records = [
        on(0, 1, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
        on(3, 2, "Jobcenter Aarhus"),
    ]
    assert group_records(records, TOLERANCE) == [[1], [2]]


def test_two_organisations_on_the_same_day_without_joint_with_are_two_approaches():
    records = [on(0, 1, "Erhvervshus Midtjylland"), on(0, 2, "Jobcenter Aarhus")]
    assert group_records(records, TOLERANCE) == [[1], [2]]


def test_double_entry_by_the_same_consultant_and_channel_is_one_approach():
    records = [
        on(0, 1, "Jobcenter Aarhus", consultant_email="ANNE@aarhus.dk", channel="visit"),
        on(1, 2, "Jobcenter Aarhus", consultant_email="anne@aarhus.dk ", channel="visit"),
    ]
    assert group_records(records, TOLERANCE) == [[1, 2]]


def test_same_organisation_with_different_consultants_is_two_approaches():
    records = [
        on(0, 1, "Jobcenter Aarhus", consultant_email="anne@aarhus.dk", channel="visit"),
        on(0, 2, "Jobcenter Aarhus", consultant_email="bo@aarhus.dk", channel="visit"),
    ]
    assert group_records(records, TOLERANCE) == [[1], [2]]


def test_same_consultant_on_another_channel_is_two_approaches():
    records = [
        on(0, 1, "Jobcenter Aarhus", consultant_email="anne@aarhus.dk", channel="visit"),
        on(1, 2, "Jobcenter Aarhus", consultant_email="anne@aarhus.dk", channel="phone"),
    ]
    assert group_records(records, TOLERANCE) == [[1], [2]]


def test_same_organisation_without_consultant_email_is_never_a_double_entry():
    records = [
        on(0, 1, "Jobcenter Aarhus", channel="visit"),
        on(0, 2, "Jobcenter Aarhus", channel="visit"),
    ]
    assert group_records(records, TOLERANCE) == [[1], [2]]


def test_chain_of_joint_records_never_spans_more_than_the_tolerance():
    records = [
        on(0, 1, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
        on(1, 2, "Jobcenter Aarhus", joint_with=("Erhvervshus Midtjylland",)),
        on(2, 3, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
    ]
    assert group_records(records, TOLERANCE) == [[1, 2], [3]]


def test_grouping_does_not_depend_on_input_order():
    records = [
        on(2, 3, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
        on(0, 1, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
        on(1, 2, "Jobcenter Aarhus", joint_with=("Erhvervshus Midtjylland",)),
    ]
    assert group_records(records, TOLERANCE) == group_records(records[::-1], TOLERANCE)


def test_closest_dates_win_when_a_record_could_join_either_side():
    records = [
        on(0, 1, "Erhvervshus Midtjylland"),
        on(2, 2, "Jobcenter Aarhus", joint_with=("Erhvervshus Midtjylland",)),
        on(3, 3, "Erhvervshus Midtjylland"),
    ]
    # 2 could join 1 (two days apart) or 3 (one day), not both (that would span three days).
    assert group_records(records, tolerance_days=2) == [[1], [2, 3]]


def test_joint_visit_with_a_double_entry_is_one_approach_of_three_records():
    records = [
        on(0, 1, "Erhvervshus Midtjylland", consultant_email="kim@ehmj.dk", channel="visit"),
        on(0, 2, "Erhvervshus Midtjylland", consultant_email="kim@ehmj.dk", channel="visit"),
        on(0, 3, "Jobcenter Aarhus", joint_with=("Erhvervshus Midtjylland",)),
    ]
    assert group_records(records, TOLERANCE) == [[1, 2, 3]]


def test_every_record_is_in_exactly_one_group_in_date_order():
    records = [on(5, 9, "A"), on(0, 4, "B"), on(5, 1, "C")]
    assert group_records(records, TOLERANCE) == [[4], [1], [9]]


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="negative"):
        group_records([on(0, 1, "A")], -1)


def test_approach_of_two_organisations_is_joint():
    assert is_joint([on(0, 1, "Erhvervshus Midtjylland"), on(0, 2, "Jobcenter Aarhus")])


def test_single_record_naming_another_organisation_is_joint():
    assert is_joint([on(0, 1, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",))])


def test_single_organisation_naming_only_itself_is_not_joint():
    record = on(0, 1, "Jobcenter Aarhus", joint_with=("jobcenter aarhus",))
    assert not is_joint([record, on(0, 2, "Jobcenter Aarhus")])


def test_a_partner_cannot_pull_two_separate_contacts_of_one_organisation_together():
    records = [
        on(0, 1, "Jobcenter Aarhus", consultant_email="a@aarhus.dk", channel="visit"),
        on(0, 2, "Erhvervshus Midtjylland", joint_with=("Jobcenter Aarhus",)),
        on(0, 3, "Jobcenter Aarhus", consultant_email="b@aarhus.dk", channel="phone"),
    ]
    groups = group_records(records, TOLERANCE)
    assert sorted(map(sorted, groups)) == [[1, 2], [3]]
