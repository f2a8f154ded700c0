"""Survivorship: which of a company's linked records supplies its display fields.

The rule, so that a company's name and address do not depend on whichever source synced last:

1. Records with a valid CVR come before records without one.
2. Within each group, newer records come first: by approach date, then the source's modified
   time (a missing one counts as oldest), then the record id (a later arrival wins a tie).
3. The first record in that order is the winner; each field it lacks is taken from the next
   record in the order that has it. Address and city are only borrowed from a record with the
   same postcode as the one chosen, so an address is never stitched together from two places.

The display CVR is always a valid one (normalised to 8 digits) or None: an invalid CVR is raw
data, never shown as the company's number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from connectors.base import SourceRecordData
from coordination.identity.normalise import normalise_postcode, valid_cvr

__all__ = ["CompanyFacts", "choose_display", "display_fields", "display_order"]

_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class CompanyFacts:
    """What one linked source record says about its company, with the record's age."""

    name: str | None
    cvr: str | None
    approach_date: dt.date
    address: str | None = None
    postcode: str | None = None
    city: str | None = None
    p_number: str | None = None
    modified_at: dt.datetime | None = None  # aware (UTC), as connectors deliver it
    record_id: int | None = None

    @classmethod
    def from_record(cls, record: SourceRecordData, record_id: int | None = None) -> CompanyFacts:
        company = record.company
        return cls(
            name=company.name,
            cvr=company.cvr,
            approach_date=record.approach_date,
            address=company.address,
            postcode=company.postcode,
            city=company.city,
            p_number=company.p_number,
            modified_at=record.modified_at,
            record_id=record_id,
        )


def display_order(records: list[CompanyFacts]) -> list[CompanyFacts]:
    """``records`` in survivorship order: valid CVR first, then newest first."""
    return sorted(records, key=_newest_first, reverse=True)


def _newest_first(facts) -> tuple:
    modified = facts.modified_at
    if modified is None:
        modified = _OLDEST
    elif modified.tzinfo is None:  # tolerate naive times, read as UTC
        modified = modified.replace(tzinfo=dt.UTC)
    record_id = facts.record_id
    cvr = facts.cvr
    return (
        cvr is not None and valid_cvr(cvr) is not None,
        facts.approach_date,
        modified,
        -1 if record_id is None else record_id,
    )


def choose_display(records: list[CompanyFacts]) -> CompanyFacts:
    """The company's display facts chosen from its linked records (see the module docstring).

    The result carries the winner's ``approach_date``, ``modified_at`` and ``record_id``.
    ValueError when ``records`` is empty.
    """
    winner, fields = display_fields(records)
    return dataclasses.replace(winner, **fields)


def display_fields(records: list) -> tuple:
    """The winner of ``records`` and the display fields chosen (``name``, ``cvr``,
    ``p_number``, ``postcode``, ``address``, ``city``) as :func:`choose_display` chooses them.

    ``records`` may be any objects with the attributes of :class:`CompanyFacts` (stored rows
    labelled so, for instance), so a caller with many rows need not build a ``CompanyFacts``
    of each. ValueError when ``records`` is empty.
    """
    if not records:
        raise ValueError("a company needs at least one record to choose its display fields")
    ordered = sorted(records, key=_newest_first, reverse=True)
    winner = ordered[0]
    postcode = _first(ordered, "postcode")
    place = normalise_postcode(postcode)
    return winner, {
        "name": _first(ordered, "name"),
        "cvr": valid_cvr(winner.cvr),  # valid ones sort first: if the winner has none, nobody has
        "p_number": _first(ordered, "p_number"),
        "postcode": postcode,
        "address": _first(ordered, "address", same_place=place),
        "city": _first(ordered, "city", same_place=place),
    }


_ANY_PLACE = object()


def _first(ordered: list, field: str, same_place: object = _ANY_PLACE) -> str | None:
    """The first non-blank value of ``field`` in ``ordered``; with ``same_place`` (a postcode
    key, or None) only among the records whose postcode has that key or none. The records
    after it are not looked at: most companies' first record has every field."""
    for facts in ordered:
        value = getattr(facts, field)
        if value is None or not str(value).strip():
            continue
        if same_place is _ANY_PLACE or normalise_postcode(facts.postcode) in (None, same_place):
            return value
    return None
