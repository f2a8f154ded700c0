"""Disclosure control: small figures are hidden, and so is whatever would give them away."""

from __future__ import annotations

from coordination.reports.suppression import Line, is_too_small, suppress, suppress_table


def test_one_and_two_companies_are_too_small_but_zero_and_three_are_not():
    assert [n for n in range(5) if is_too_small(n)] == [1, 2]


def test_a_line_with_no_small_figure_is_published_whole():
    counts = {"a": 5, "b": 3, "total": 8}
    assert suppress(counts, [Line(("a", "b"), "total")]) == frozenset()


def test_a_small_figure_without_a_total_is_hidden_alone():
    counts = {"a": 2, "b": 5, "c": 9}
    assert suppress(counts, [Line(("a", "b", "c"))]) == {"a"}


def test_the_only_hidden_figure_of_a_row_takes_the_next_smallest_with_it():
    # 20 - 9 - 7 would give the hidden 2 away; hiding the 7 as well leaves 9 known.
    counts = {"a": 2, "b": 7, "c": 9, "total": 18}
    assert suppress(counts, [Line(("a", "b", "c"), "total")]) == {"a", "b"}


def test_zero_figures_are_never_chosen_as_the_complement():
    counts = {"a": 1, "zero": 0, "b": 4, "total": 5}
    assert suppress(counts, [Line(("a", "zero", "b"), "total")]) == {"a", "b"}


def test_equal_candidates_are_chosen_in_the_order_of_the_line():
    counts = {"a": 1, "b": 6, "c": 6, "total": 13}
    assert suppress(counts, [Line(("a", "b", "c"), "total")]) == {"a", "b"}


def test_two_small_figures_that_together_count_under_three_need_a_third():
    # 1 + 1 from a published total leaves 2, which could only be 1 and 1.
    counts = {"a": 1, "b": 1, "c": 5, "d": 8, "total": 15}
    assert suppress(counts, [Line(("a", "b", "c", "d"), "total")]) == {"a", "b", "c"}


def test_two_small_figures_that_together_count_three_or_more_are_safe():
    counts = {"a": 1, "b": 2, "c": 5, "total": 8}
    assert suppress(counts, [Line(("a", "b", "c"), "total")]) == {"a", "b"}


def test_a_line_with_nothing_else_to_hide_hides_its_total():
    counts = {"a": 2, "b": 0, "total": 2}
    assert suppress(counts, [Line(("a", "b"), "total")]) == {"a", "total"}


def test_a_hidden_total_needs_no_complement_in_its_line():
    counts = {"a": 1, "b": 1, "c": 0, "total": 2}
    assert suppress(counts, [Line(("a", "b", "c"), "total")]) == {"a", "b", "total"}


def test_complementary_suppression_runs_until_every_line_is_safe():
    # Hiding r1/c2 to protect r1/c1 leaves each column with one hidden cell, so both cells of
    # row 2 must go too.
    cells = {("r1", "c1"): 1, ("r1", "c2"): 5, ("r2", "c1"): 8, ("r2", "c2"): 6}
    table = suppress_table(
        cells,
        row_totals={"r1": 6, "r2": 14},
        column_totals={"c1": 9, "c2": 11},
        grand_total=20,
    )
    hidden = {(r, c) for (r, c) in cells if table.cell(r, c)}
    assert hidden == {("r1", "c1"), ("r1", "c2"), ("r2", "c1"), ("r2", "c2")}
    assert not table.row_total("r1") and not table.column_total("c1")
    assert not table.grand_total


def test_a_small_row_total_is_hidden_with_a_complement_among_the_row_totals():
    cells = {("r1", "c1"): 2, ("r2", "c1"): 10, ("r3", "c1"): 4}
    table = suppress_table(
        cells,
        row_totals={"r1": 2, "r2": 10, "r3": 4},
        column_totals={"c1": 16},
        grand_total=16,
    )
    assert table.row_total("r1") and table.row_total("r3") and not table.row_total("r2")


def test_no_suppressed_cell_can_be_recovered_from_its_row_or_column():
    cells = {
        ("weld", "industry"): 12,
        ("weld", "building"): 2,
        ("weld", "trade"): 7,
        ("cnc", "industry"): 9,
        ("cnc", "building"): 4,
        ("cnc", "trade"): 1,
        ("lean", "industry"): 5,
        ("lean", "building"): 6,
        ("lean", "trade"): 8,
    }
    rows = {r: sum(n for (rr, _), n in cells.items() if rr == r) for r in ("weld", "cnc", "lean")}
    columns = {
        c: sum(n for (_, cc), n in cells.items() if cc == c)
        for c in ("industry", "building", "trade")
    }
    table = suppress_table(cells, rows, columns, sum(cells.values()))
    for line in [[(r, c) for c in columns] for r in rows] + [
        [(r, c) for r in rows] for c in columns
    ]:
        hidden = [cell for cell in line if table.cell(*cell)]
        assert len(hidden) != 1, line
    assert table.cell("weld", "building") and table.cell("cnc", "trade")
