"""Contact persons of one company, de-duplicated across sources.

Two person entries are the same person by the spec's order: normalised e-mail, else normalised
phone number, else normalised name. Precisely, the first of these that *both* entries have
decides: two different e-mails are two people even with the same name (a shared switchboard
number does not merge them either), and an entry with only a name joins one that has the same
name and also an e-mail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from connectors.base import PersonRef
from coordination.identity.normalise import (
    normalise_email,
    normalise_person_name,
    normalise_phone,
)

__all__ = ["MergedContact", "contact_key", "merge_contacts"]


@dataclasses.dataclass(frozen=True, slots=True)
class MergedContact:
    """One person: ``person`` holds the most complete fields of its entries, ``members`` the
    positions of those entries in the list given to :func:`merge_contacts`."""

    key: str
    person: PersonRef
    members: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class _Keys:
    email: str | None
    phone: str | None
    name: str | None

    @classmethod
    def of(cls, person: PersonRef) -> _Keys:
        return cls(
            email=normalise_email(person.email),
            phone=normalise_phone(person.phone),
            name=normalise_person_name(person.name) or None,
        )

    def same_person(self, other: _Keys) -> bool | None:
        """True or False by the first key both have; None when they share no key kind."""
        for mine, theirs in (
            (self.email, other.email),
            (self.phone, other.phone),
            (self.name, other.name),
        ):
            if mine and theirs:
                return mine == theirs
        return None

    @property
    def rank(self) -> int:
        """Entries with an e-mail anchor groups before phone-only and name-only ones."""
        return 0 if self.email else 1 if self.phone else 2


def contact_key(person: PersonRef) -> str | None:
    """``"email:<e-mail>"``, else ``"phone:<digits>"``, else ``"name:<name>"``, all normalised;
    None when the entry has none of them (it identifies nobody)."""
    keys = _Keys.of(person)
    if keys.email:
        return f"email:{keys.email}"
    if keys.phone:
        return f"phone:{keys.phone}"
    if keys.name:
        return f"name:{keys.name}"
    return None


def merge_contacts(persons: Sequence[PersonRef]) -> list[MergedContact]:
    """The distinct people among ``persons`` (one company's entries), in order of first entry.

    Entries with neither e-mail, phone nor name are left out. An entry that could belong to more
    than one person (e.g. a name shared by two people with different e-mails) stays on its own
    rather than being guessed into one of them.
    """
    keys = [_Keys.of(person) for person in persons]
    order = sorted(
        (i for i, k in enumerate(keys) if k.email or k.phone or k.name),
        key=lambda i: (keys[i].rank, i),
    )
    groups: list[list[int]] = []
    for i in order:
        fits = [g for g in groups if _fits(keys[i], [keys[m] for m in g])]
        if len(fits) == 1:
            fits[0].append(i)
        else:
            groups.append([i])
    groups.sort(key=min)
    return [_merged(persons, keys, sorted(group)) for group in groups]


def _fits(candidate: _Keys, members: list[_Keys]) -> bool:
    """Some member is the same person by a shared key, and no member contradicts it."""
    verdicts = [candidate.same_person(member) for member in members]
    return True in verdicts and False not in verdicts


def _merged(persons: Sequence[PersonRef], keys: list[_Keys], group: list[int]) -> MergedContact:
    def completeness(i: int) -> tuple[int, int, int]:
        k = keys[i]
        filled = sum(value is not None for value in (k.email, k.phone, k.name))
        return (-filled, -len(persons[i].name or ""), i)

    best_first = sorted(group, key=completeness)
    person = PersonRef(
        name=_first(persons, best_first, lambda i: keys[i].name, "name"),
        email=_first(persons, best_first, lambda i: keys[i].email, "email"),
        phone=_first(persons, best_first, lambda i: keys[i].phone, "phone"),
    )
    key = contact_key(person)
    assert key is not None  # every member has at least one usable key
    return MergedContact(key=key, person=person, members=tuple(group))


def _first(
    persons: Sequence[PersonRef], ranked: list[int], usable: Callable[[int], object], field: str
) -> str | None:
    """The field as entered (trimmed) by the best-ranked entry whose value is usable: a junk
    e-mail such as "n/a" never hides a real one from a less complete entry."""
    for i in ranked:
        if usable(i):
            return str(getattr(persons[i], field)).strip()
    return None
