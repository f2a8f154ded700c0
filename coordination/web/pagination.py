"""Page numbers for long lists (``?side=N``)."""

from __future__ import annotations

import dataclasses

MAX_PAGE = 1_000_000


def page_number(value: str | None) -> int:
    """The page asked for, from 1; anything unreadable is page 1."""
    try:
        page = int(value) if value else 1
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE)


@dataclasses.dataclass(frozen=True)
class Pagination:
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages
