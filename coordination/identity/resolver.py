"""Company resolution: which known company a delivered record belongs to, and by which rule.

The rules, in the spec's order (``shared/spec/service.md``, "Matching rules"):

1. ``cvr``: the record's CVR passes the modulus-11 check and a known company has it. A valid CVR
   nobody has yet gives ``new_cvr``: the caller creates a company with that CVR (unless step 2 or
   3 finds a company *without* CVR to link to, see below).
2. ``p_number``: the record's P-number belongs to a known company.
3. ``name_postcode``: a known company has the same normalised name in the same postcode (a
   record without postcode matches a company without postcode).
4. ``fuzzy``: the best fuzzy name match in the same postcode scores at least ``certain``; a
   record without postcode is never matched fuzzily.
5. ``unresolved``: none of the above; the caller creates an unresolved company. When a candidate
   scored between ``propose`` and ``certain`` (or an invalid CVR is one slip away from a known
   CVR in the same postcode), ``proposal_company_id`` names it for the review queue.

Invariants every step keeps:

- Two different valid CVRs never end in one company: a record with valid CVR X is never linked
  to a company holding another CVR. It may join a company *without* CVR, but only by P-number or
  exact name + postcode (never fuzzily); the caller should then give that company CVR X and
  :meth:`CompanyIndex.update` it, so the next record with X is found by rule ``cvr``.
- A record without valid CVR may join a company with a CVR by any rule.
- An invalid CVR is never an identity; it can only produce a proposal.
- A pair in ``rejected_pairs`` is never linked nor proposed. Rejections are keyed by
  :func:`record_key`, so a rejection also holds for future records spelled the same way.

Blocking keeps the cost per record independent of the number of known companies: steps 1-3 are
dictionary look-ups, and step 4 compares the name only with companies in the same postcode.

Memory: the syncing process holds one entry per company for the whole run (hundreds of
thousands), so the index keeps each company as a plain tuple, with postcodes interned, a lone
P-number as a bare string and a look-up key shared by one company as a bare id; a
:class:`KnownCompany` is made again when asked for (``benchmarks/index_memory.py``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet

from rapidfuzz import fuzz, process

from connectors.base import CompanyRef
from coordination.identity.normalise import (
    clean_p_number,
    cvr_digits,
    normalise_company_name,
    normalise_postcode,
    valid_cvr,
)

__all__ = [
    "DEFAULT_CERTAIN",
    "DEFAULT_PROPOSE",
    "RULES",
    "CompanyIndex",
    "KnownCompany",
    "Resolution",
    "record_key",
]

RULES = ("cvr", "p_number", "name_postcode", "fuzzy", "new_cvr", "unresolved")

# Scores are rapidfuzz ``fuzz.ratio`` on normalised keys (0-100): the keys are already casefolded
# and stripped of legal forms, so no processor is needed. Measured on 8,000 synthetic Danish names
# (surname + trade, 400 per postcode) with one keying slip each: ratio kept 67% of the true pairs
# at 95, 95% at 92 and 100% at 85, while the best *other* company in the postcode reached 95 for
# 0.2%, 92 for 1.6% and 85 for 15% of them. token_sort_ratio did worse on both sides: a slip in
# a first letter or a lost space reorders the tokens (7% of true pairs fell below 80) and it
# doubled the near misses. A silent wrong link is worse than a review item, hence 95 to link;
# 85 catches every single slip for review without flooding the queue.
DEFAULT_CERTAIN = 95.0
DEFAULT_PROPOSE = 85.0

Scorer = Callable[..., float]

_NO_P_NUMBERS: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class KnownCompany:
    """A company as the index needs it. Fields must already be normalised: ``cvr`` as returned
    by :func:`valid_cvr` (or None), ``name_key`` by :func:`normalise_company_name`, ``postcode``
    by :func:`normalise_postcode`, ``p_numbers`` by :func:`clean_p_number`."""

    id: int
    cvr: str | None
    name_key: str
    postcode: str | None
    p_numbers: frozenset[str] = frozenset()

    @classmethod
    def from_ref(cls, company_id: int, ref: CompanyRef) -> KnownCompany:
        """The index entry for a company just created from the record carrying ``ref``."""
        p_number = clean_p_number(ref.p_number)
        return cls(
            id=company_id,
            cvr=valid_cvr(ref.cvr),
            name_key=normalise_company_name(ref.name),
            postcode=normalise_postcode(ref.postcode),
            p_numbers=frozenset({p_number} if p_number else ()),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Resolution:
    """The decision for one record.

    ``rule`` is one of :data:`RULES`. ``company_id`` is the company to link to (None for
    ``new_cvr`` and ``unresolved``: the caller creates one). ``score`` is 100 for the exact rules
    and the name score otherwise (0 when nothing was compared). ``proposal_company_id`` names a
    candidate for the review queue; ``reason`` says in words why.
    """

    rule: str
    company_id: int | None
    score: float
    proposal_company_id: int | None = None
    reason: str = ""


def record_key(company: CompanyRef) -> str:
    """The key under which a coordinator's rejection of "this record → that company" is stored.

    ``"cvr:<cvr>"`` for a record with a valid CVR, else ``"name:<name key>|<postcode>"``; so a
    rejected or undone link stays rejected for every future record with the same CVR, or with
    the same normalised spelling in the same postcode.
    """
    return _Query.of(company).key


@dataclasses.dataclass(frozen=True, slots=True)
class _Query:
    cvr: str | None
    cvr_digits: str | None  # what the record has in its CVR field, when not a valid CVR
    p_number: str | None
    name_key: str
    postcode: str | None
    key: str

    @classmethod
    def of(cls, ref: CompanyRef) -> _Query:
        cvr = valid_cvr(ref.cvr)
        name_key = normalise_company_name(ref.name)
        postcode = normalise_postcode(ref.postcode)
        key = f"cvr:{cvr}" if cvr else f"name:{name_key}|{postcode or ''}"
        return cls(
            cvr=cvr,
            cvr_digits=None if cvr else cvr_digits(ref.cvr),
            p_number=clean_p_number(ref.p_number),
            name_key=name_key,
            postcode=postcode,
            key=key,
        )

    @property
    def where(self) -> str:
        return f"postcode {self.postcode}" if self.postcode else "no postcode"


@dataclasses.dataclass(slots=True)
class _Block:
    """The companies of one postcode, as parallel lists that rapidfuzz can scan in C."""

    ids: list[int] = dataclasses.field(default_factory=list)
    keys: list[str] = dataclasses.field(default_factory=list)


# A company as the index keeps it: (cvr, name_key, postcode, P-numbers), the P-numbers as None,
# one string or a frozenset of several. A tuple costs what a slotted object does, and the
# P-number needs no set of its own (over 200 bytes) when there is only one.
_Entry = tuple[str | None, str, str | None, str | frozenset[str] | None]
# A company as :meth:`CompanyIndex.add_all` takes it: id, cvr, name_key, postcode, P-numbers.
_Known = tuple[int, str | None, str, str | None, AbstractSet[str]]
# The companies under one look-up key: nearly always one, so a bare id; else a tuple of ids.
_Ids = int | tuple[int, ...]

_Allowed = Callable[[KnownCompany], bool]


class CompanyIndex:
    """Known companies with the look-up structures the resolution rules need.

    ``certain``: a fuzzy score from which a record without valid CVR is linked.
    ``propose``: a fuzzy score from which a candidate is proposed for review.
    ``scorer``: a rapidfuzz-compatible scorer over normalised keys (tests pass a spy).

    The index is not thread-safe. Keep it in step with the store: after creating or changing a
    company, :meth:`add` or :meth:`update` it before resolving the next record.
    """

    def __init__(
        self,
        companies: Iterable[KnownCompany] = (),
        *,
        certain: float = DEFAULT_CERTAIN,
        propose: float = DEFAULT_PROPOSE,
        scorer: Scorer = fuzz.ratio,
    ) -> None:
        if not 0 <= propose <= certain <= 100:
            raise ValueError(f"need 0 <= propose <= certain <= 100, got {propose}, {certain}")
        self.certain = certain
        self.propose = propose
        self.scorer = scorer
        self._companies: dict[int, _Entry] = {}
        self._by_cvr: dict[str, int] = {}
        self._by_p_number: dict[str, _Ids] = {}
        # postcode -> name key -> ids: the name key is the entry's own string, not a new tuple.
        self._by_name: dict[str | None, dict[str, _Ids]] = {}
        self._blocks: dict[str, _Block] = {}
        self.add_all((c.id, c.cvr, c.name_key, c.postcode, c.p_numbers) for c in companies)

    # --- maintenance ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._companies)

    def __contains__(self, company_id: object) -> bool:
        return company_id in self._companies

    def __iter__(self) -> Iterator[KnownCompany]:
        return (self._known(company_id) for company_id in list(self._companies))

    def get(self, company_id: int) -> KnownCompany | None:
        return self._known(company_id) if company_id in self._companies else None

    def add(self, company: KnownCompany) -> None:
        """Add a company. ValueError if its id is taken or another company has its CVR."""
        self.add_all(
            [(company.id, company.cvr, company.name_key, company.postcode, company.p_numbers)]
        )

    def add_all(self, companies: Iterable[_Known]) -> None:
        """Add companies given as (id, cvr, name_key, postcode, p_numbers), normalised as for
        :class:`KnownCompany`: what :meth:`add` does for each, without making a
        ``KnownCompany`` of each (a sync run starts by loading every company, 300,000 at
        scale, and this loop was most of the time it took). ValueError as :meth:`add`; the
        companies before the offending one stay added."""
        known, by_cvr, by_p_number = self._companies, self._by_cvr, self._by_p_number
        by_name, blocks = self._by_name, self._blocks
        for company_id, cvr, name_key, postcode, p_numbers in companies:
            if company_id in known:
                raise ValueError(f"company {company_id} is already in the index")
            if cvr is not None and cvr in by_cvr:
                raise ValueError(f"CVR {cvr} already belongs to company {by_cvr[cvr]}")
            if postcode is not None:
                postcode = sys.intern(postcode)
            packed = _packed(p_numbers) if p_numbers else None
            known[company_id] = (cvr, name_key, postcode, packed)
            if cvr is not None:
                by_cvr[cvr] = company_id
            if packed is not None:
                for p_number in _unpacked(packed):
                    _put(by_p_number, p_number, company_id)
            if not name_key:
                continue
            names = by_name.get(postcode)
            if names is None:
                names = by_name[postcode] = {}
            _put(names, name_key, company_id)
            if postcode is not None:
                block = blocks.get(postcode)
                if block is None:
                    block = blocks[postcode] = _Block()
                block.ids.append(company_id)
                block.keys.append(name_key)

    def load(
        self,
        ids: Sequence[int],
        cvrs: Sequence[str | None],
        name_keys: Sequence[str],
        postcodes: Sequence[str | None],
        p_numbers: Sequence[str | frozenset[str] | None],
    ) -> None:
        """Fill an empty index with companies given column by column: ids, CVRs, name keys,
        postcodes (normalised as for :class:`KnownCompany`) and P-numbers as the index keeps
        them (None, one P-number as a string, or a frozenset of two or more). The same index as
        :meth:`add_all` of the rows builds, in column-wise passes (a sync run starts by loading
        every company, 300,000 at scale). ValueError as :meth:`add_all`, which then leaves the
        index as :meth:`add_all` would."""
        if self._companies:
            raise ValueError("load fills an empty index only")
        if not (len(ids) == len(cvrs) == len(name_keys) == len(postcodes) == len(p_numbers)):
            raise ValueError("load needs columns of one length")
        interned = {p: sys.intern(p) for p in set(postcodes) if p is not None}
        interned[None] = None  # type: ignore[index]
        postcodes = list(map(interned.__getitem__, postcodes))
        known = dict(zip(ids, zip(cvrs, name_keys, postcodes, p_numbers, strict=True), strict=True))
        by_cvr: dict[str, int] = dict(zip(cvrs, ids, strict=True))  # type: ignore[arg-type]
        without_cvr = list(cvrs).count(None)
        if without_cvr:
            del by_cvr[None]  # type: ignore[arg-type]
        if len(known) != len(ids) or len(by_cvr) != len(cvrs) - without_cvr:
            rows = zip(ids, cvrs, name_keys, postcodes, map(_unpacked, p_numbers), strict=True)
            self.add_all(rows)
            raise AssertionError("add_all took companies that load refused")  # pragma: no cover
        by_p_number: dict[str, _Ids] = {}
        for company_id, packed in zip(ids, p_numbers, strict=True):
            if packed is None:
                continue
            for p_number in (packed,) if type(packed) is str else packed:
                held = by_p_number.get(p_number)
                by_p_number[p_number] = company_id if held is None else (*_ids(held), company_id)
        groups: dict[str | None, tuple[list[int], list[str]]] = {}
        for company_id, name_key, postcode in zip(ids, name_keys, postcodes, strict=True):
            if not name_key:
                continue
            group = groups.get(postcode)
            if group is None:
                group = groups[postcode] = ([], [])
            group[0].append(company_id)
            group[1].append(name_key)
        by_name: dict[str | None, dict[str, _Ids]] = {}
        blocks: dict[str, _Block] = {}
        for postcode, (group_ids, group_keys) in groups.items():
            names: dict[str, _Ids] = dict(zip(group_keys, group_ids, strict=True))
            if len(names) != len(group_keys):  # a name twice in a postcode: ids as tuples
                names = {}
                for company_id, name_key in zip(group_ids, group_keys, strict=True):
                    _put(names, name_key, company_id)
            by_name[postcode] = names
            if postcode is not None:
                blocks[postcode] = _Block(group_ids, group_keys)
        self._companies, self._by_cvr, self._by_p_number = known, by_cvr, by_p_number
        self._by_name, self._blocks = by_name, blocks

    def remove(self, company_id: int) -> KnownCompany:
        """Remove a company (e.g. merged away) and return it. KeyError if unknown."""
        company = self._known(company_id)
        del self._companies[company_id]
        if company.cvr is not None:
            del self._by_cvr[company.cvr]
        for p_number in company.p_numbers:
            _drop(self._by_p_number, p_number, company_id)
        if company.name_key:
            same_postcode = self._by_name[company.postcode]
            _drop(same_postcode, company.name_key, company_id)
            if not same_postcode:
                del self._by_name[company.postcode]
        if company.name_key and company.postcode is not None:
            block = self._blocks[company.postcode]
            position = block.ids.index(company_id)  # O(block): removals are rare
            del block.ids[position]
            del block.keys[position]
            if not block.ids:
                del self._blocks[company.postcode]
        return company

    def update(self, company: KnownCompany) -> None:
        """Replace the entry with ``company.id`` (e.g. a CVR, name or P-number was learnt)."""
        old = self.remove(company.id)
        try:
            self.add(company)
        except ValueError:
            self.add(old)
            raise

    def _known(self, company_id: int) -> KnownCompany:
        """The company with this id as a :class:`KnownCompany`. KeyError if unknown."""
        cvr, name_key, postcode, p_numbers = self._companies[company_id]
        return KnownCompany(company_id, cvr, name_key, postcode, _unpacked(p_numbers))

    # --- resolution -------------------------------------------------------------------------

    def resolve(
        self,
        company: CompanyRef,
        *,
        rejected_pairs: AbstractSet[tuple[str, int]] = frozenset(),
    ) -> Resolution:
        """Decide which company ``company`` (a record's company block) belongs to.

        ``rejected_pairs`` holds ``(record_key(...), company_id)`` pairs a coordinator rejected
        or undid; they are never linked nor proposed. The index itself is not changed.
        """
        query = _Query.of(company)

        def allowed(candidate: KnownCompany) -> bool:
            if (query.key, candidate.id) in rejected_pairs:
                return False
            return query.cvr is None or candidate.cvr in (None, query.cvr)

        exact = (
            self._by_cvr_rule(query, allowed)
            or self._by_p_number_rule(query, allowed)
            or self._by_name_rule(query, allowed)
        )
        if exact is not None:
            return exact
        candidates = self._fuzzy_candidates(query, allowed)
        if query.cvr is None:
            linked = self._fuzzy_link(query, candidates)
            if linked is not None:
                return linked
        return self._no_link(query, candidates, allowed)

    def _by_cvr_rule(self, query: _Query, allowed: _Allowed) -> Resolution | None:
        company = self._holder_of(query.cvr)
        if company is None or not allowed(company):
            return None
        return Resolution("cvr", company.id, 100.0, reason=f"valid CVR {query.cvr}")

    def _by_p_number_rule(self, query: _Query, allowed: _Allowed) -> Resolution | None:
        owners = self._allowed(_ids(self._by_p_number.get(query.p_number or "")), allowed)
        if len(owners) != 1:  # unknown, or claimed by several companies: not an identity
            return None
        company = owners[0]
        reason = f"known P-number {query.p_number} of company {company.id}"
        return Resolution("p_number", company.id, 100.0, reason=reason)

    def _by_name_rule(self, query: _Query, allowed: _Allowed) -> Resolution | None:
        if not query.name_key:
            return None
        same_name = self._by_name.get(query.postcode, {}).get(query.name_key)
        same_name = self._allowed(_ids(same_name), allowed)
        company = _unambiguous(same_name)
        if company is None:
            return None
        reason = f"same name {query.name_key!r} in {query.where}"
        return Resolution("name_postcode", company.id, 100.0, reason=reason)

    def _fuzzy_candidates(
        self, query: _Query, allowed: _Allowed
    ) -> list[tuple[float, KnownCompany]]:
        """Companies in the query's postcode scoring at least ``propose``, best first."""
        # Without a postcode there is no block: a fuzzy name alone, nationwide, is no evidence.
        block = self._blocks.get(query.postcode) if query.postcode is not None else None
        if block is None or not query.name_key:
            return []
        hits = process.extract(
            query.name_key,
            block.keys,
            scorer=self.scorer,
            score_cutoff=self.propose,
            limit=None,
        )
        found = [(float(score), self._known(block.ids[index])) for _, score, index in hits]
        found = [(score, company) for score, company in found if allowed(company)]
        return sorted(found, key=lambda hit: (-hit[0], hit[1].cvr is None, hit[1].id))

    def _fuzzy_link(
        self, query: _Query, candidates: list[tuple[float, KnownCompany]]
    ) -> Resolution | None:
        scores = {company.id: score for score, company in candidates if score >= self.certain}
        company = _unambiguous([self._known(company_id) for company_id in scores])
        if company is None:
            return None
        score = scores[company.id]
        names = f"{query.name_key!r} ~ {company.name_key!r}"
        reason = f"fuzzy name {score:.1f} in {query.where} ({names})"
        return Resolution("fuzzy", company.id, score, reason=reason)

    def _no_link(
        self, query: _Query, candidates: list[tuple[float, KnownCompany]], allowed: _Allowed
    ) -> Resolution:
        """``new_cvr`` or ``unresolved``, with the best candidate for review if there is one."""
        if query.cvr and query.cvr not in self._by_cvr:
            rule, reason = "new_cvr", f"valid CVR {query.cvr} not known yet"
        elif query.cvr:
            rule, reason = "unresolved", f"link to CVR {query.cvr} was rejected by a coordinator"
        else:
            rule, reason = "unresolved", f"no company matches in {query.where}"
        proposal = self._cvr_slip_proposal(query, allowed)
        if proposal is None and candidates:
            score, company = candidates[0]
            why = f"similar name {score:.1f} of company {company.id}"
            if query.cvr is None and score >= self.certain:
                why += " (several companies with different CVRs match this well)"
            proposal = (score, company, why)
        if proposal is None:
            best = candidates[0][0] if candidates else 0.0
            return Resolution(rule, None, 100.0 if rule == "new_cvr" else best, reason=reason)
        score, company, why = proposal
        return Resolution(
            rule,
            None,
            100.0 if rule == "new_cvr" else score,
            proposal_company_id=company.id,
            reason=f"{reason}; {why} in {query.where}: proposed for review",
        )

    def _cvr_slip_proposal(
        self, query: _Query, allowed: _Allowed
    ) -> tuple[float, KnownCompany, str] | None:
        """A known company in the same postcode whose CVR is one slip from the invalid one."""
        if not query.cvr_digits or query.postcode is None:
            return None
        found: list[tuple[float, KnownCompany, str]] = []
        for variant, slip in _one_slip_variants(query.cvr_digits):
            company = self._holder_of(variant)
            if company is None or company.postcode != query.postcode or not allowed(company):
                continue
            score = float(self.scorer(query.name_key, company.name_key)) if query.name_key else 0.0
            why = (
                f"invalid CVR {query.cvr_digits} is {slip} from CVR {variant}"
                f" of company {company.id} (name score {score:.1f})"
            )
            found.append((score, company, why))
        return min(found, key=lambda hit: (-hit[0], hit[1].id), default=None)

    def _holder_of(self, cvr: str | None) -> KnownCompany | None:
        company_id = self._by_cvr.get(cvr) if cvr else None
        return None if company_id is None else self._known(company_id)

    def _allowed(self, ids: Iterable[int], allowed: _Allowed) -> list[KnownCompany]:
        companies = (self._known(company_id) for company_id in ids)
        return sorted((c for c in companies if allowed(c)), key=lambda c: c.id)


def _unambiguous(companies: list[KnownCompany]) -> KnownCompany | None:
    """The one company among equally good candidates, or None if they hold different CVRs.

    A company with a CVR is preferred to ones without (those are typically unresolved
    duplicates awaiting a merge); among those, the first in the given order.
    """
    cvrs = {c.cvr for c in companies if c.cvr is not None}
    if len(cvrs) > 1 or not companies:
        return None
    with_cvr = [c for c in companies if c.cvr is not None]
    return (with_cvr or companies)[0]


def _one_slip_variants(digits: str) -> Iterator[tuple[str, str]]:
    """Every 8-digit string one keying slip away from ``digits``: a wrong, missing or extra
    digit, or two neighbours swapped."""
    if len(digits) == 8:
        for i in range(8):
            for d in "0123456789":
                if d != digits[i]:
                    yield digits[:i] + d + digits[i + 1 :], "one digit"
        for i in range(7):
            if digits[i] != digits[i + 1]:
                swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
                yield swapped, "one transposition"
    elif len(digits) == 9:
        for i in range(9):
            yield digits[:i] + digits[i + 1 :], "one extra digit"
    elif len(digits) == 7:
        for i in range(8):
            for d in "0123456789":
                yield digits[:i] + d + digits[i:], "one missing digit"


def _packed(p_numbers: Iterable[str]) -> str | frozenset[str] | None:
    unique = p_numbers if isinstance(p_numbers, frozenset) else frozenset(p_numbers)
    if len(unique) > 1:
        return unique
    return next(iter(unique), None)


def _unpacked(p_numbers: str | frozenset[str] | None) -> frozenset[str]:
    if p_numbers is None:
        return _NO_P_NUMBERS
    if isinstance(p_numbers, str):
        return frozenset((p_numbers,))
    return p_numbers


def _ids(held: _Ids | None) -> tuple[int, ...]:
    if held is None:
        return ()
    return held if isinstance(held, tuple) else (held,)


def _put(index: dict[str, _Ids], key: str, company_id: int) -> None:
    held = index.get(key)
    index[key] = company_id if held is None else (*_ids(held), company_id)


def _drop(index: dict[str, _Ids], key: str, company_id: int) -> None:
    rest = tuple(i for i in _ids(index.get(key)) if i != company_id)
    if not rest:
        index.pop(key, None)
    else:
        index[key] = rest[0] if len(rest) == 1 else rest
