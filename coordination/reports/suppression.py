"""Statistical disclosure control for council reports: which published figures to hide.

Every figure of a council report counts *companies* (or is derived from the data of a number of
companies, e.g. the approaches of those companies). The rule:

Primary suppression
    A figure derived from 1 or 2 companies (fewer than :data:`MIN_COMPANIES`) is suppressed:
    its values are published as null with a ``suppressed`` flag. A figure of 0 companies is
    published: it tells nothing about any company, and leaving a need out of a table says the
    same thing.

Complementary suppression
    Figures that add up to a published total form a *line* (a row of a table with its row
    total, a column with its column total, the buckets of a histogram with the number of
    companies). When a line's total is published and the line holds exactly one suppressed
    figure, that figure could be recovered by subtracting the others from the total; the same
    holds, nearly, when the suppressed figures of a line together count fewer than
    :data:`MIN_COMPANIES` companies (two cells of 1 in a total that leaves 2). In either case
    the smallest published non-zero figure of the line is suppressed as well (ties: the first
    in the line's order); when the line has none left, its total is suppressed instead.
    Suppressing one figure can expose another line, so the rule is applied until nothing
    changes.

    Lines are applied whether or not their figures add up exactly: distinct companies across
    needs do not (one company can express several needs), but a total still bounds its cells,
    so treating every published total as a line is the safe choice.

Everything here is pure: keys are any hashable values the caller chooses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

MIN_COMPANIES = 3
RULE = (
    "Figures derived from fewer than 3 companies (but more than 0) are suppressed (null). "
    "Where a published total would let a suppressed figure be recovered by subtraction (the "
    "only suppressed figure of its row or column, or suppressed figures that together count "
    "fewer than 3 companies), the next smallest figure of that row or column is suppressed too."
)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R", bound=Hashable)
C = TypeVar("C", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Line(Generic[K]):
    """Figures published together with their ``total`` (None when no total is published)."""

    cells: tuple[K, ...]
    total: K | None = None


def is_too_small(companies: int, min_companies: int = MIN_COMPANIES) -> bool:
    """Whether a figure derived from ``companies`` companies must be hidden on its own."""
    return 0 < companies < min_companies


def suppress(
    companies: Mapping[K, int], lines: Iterable[Line[K]], min_companies: int = MIN_COMPANIES
) -> frozenset[K]:
    """The keys of ``companies`` to suppress: primary, then complementary along ``lines``.

    ``companies`` gives, for every published figure, the number of companies it derives from.
    Keys named by a line but missing from ``companies`` count as 0 companies.
    """
    lines = list(lines)
    hidden = {key for key, count in companies.items() if is_too_small(count, min_companies)}
    changed = True
    while changed:
        changed = False
        for line in lines:
            extra = _complement(line, companies, hidden, min_companies)
            if extra is not None:
                hidden.add(extra)
                changed = True
    return frozenset(hidden)


def _complement(
    line: Line[K], companies: Mapping[K, int], hidden: set[K], min_companies: int
) -> K | None:
    """The one more key ``line`` needs hidden, or None when it is safe as it is."""
    if line.total is None or line.total in hidden:
        return None
    suppressed = [key for key in line.cells if key in hidden]
    if not suppressed:
        return None
    hidden_companies = sum(companies.get(key, 0) for key in suppressed)
    if len(suppressed) > 1 and hidden_companies >= min_companies:
        return None
    candidates = [
        (companies.get(key, 0), position, key)
        for position, key in enumerate(line.cells)
        if key not in hidden and companies.get(key, 0) > 0
    ]
    if candidates:
        return min(candidates, key=lambda c: (c[0], c[1]))[2]
    return line.total


@dataclasses.dataclass(frozen=True)
class TableSuppression(Generic[R, C]):
    """The suppressed figures of a table with row totals, column totals and a grand total."""

    hidden: frozenset[tuple]

    def cell(self, row: R, column: C) -> bool:
        return ("cell", row, column) in self.hidden

    def row_total(self, row: R) -> bool:
        return ("row", row) in self.hidden

    def column_total(self, column: C) -> bool:
        return ("column", column) in self.hidden

    @property
    def grand_total(self) -> bool:
        return ("grand",) in self.hidden


def suppress_table(
    cells: Mapping[tuple[R, C], int],
    row_totals: Mapping[R, int],
    column_totals: Mapping[C, int],
    grand_total: int,
    min_companies: int = MIN_COMPANIES,
) -> TableSuppression[R, C]:
    """Suppress a two-way table of company counts: every row with its row total, every column
    with its column total, and the row totals and the column totals with the grand total, are
    lines. ``cells`` may leave out zero cells. Rows and columns are taken in the order of
    ``row_totals`` and ``column_totals`` (which decides ties between equal candidates)."""
    counts: dict[tuple, int] = {("grand",): grand_total}
    counts.update({("row", r): n for r, n in row_totals.items()})
    counts.update({("column", c): n for c, n in column_totals.items()})
    counts.update({("cell", r, c): n for (r, c), n in cells.items()})
    rows, columns = list(row_totals), list(column_totals)
    lines = [
        Line(tuple(("cell", r, c) for c in columns if (r, c) in cells), ("row", r)) for r in rows
    ]
    lines += [
        Line(tuple(("cell", r, c) for r in rows if (r, c) in cells), ("column", c)) for c in columns
    ]
    lines.append(Line(tuple(("row", r) for r in rows), ("grand",)))
    lines.append(Line(tuple(("column", c) for c in columns), ("grand",)))
    return TableSuppression(suppress(counts, lines, min_companies))
