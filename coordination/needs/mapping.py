"""Classifying a delivered need onto the shipped taxonomy.

:class:`NeedMapper` tries these stages in order; the first hit wins:

1. the per-source tables in ``config/mappings/`` (the table for the source's name, then the one
   for its kind): the need's code, then its label;
2. for recruitment and apprentice needs, a DISCO-08 code in the code or label ("7212",
   "721210", "7212 Svejsere"), then the label against occupation titles and synonyms;
   for upskilling and retention needs, the label against competence labels and synonyms.
   A label is compared *exactly* (after folding case, æ/ø/å and punctuation), then *fuzzily*,
   then as a longer text that *contains* the words of exactly one entry;
3. otherwise the need is unclassified: ``taxonomy_code`` None, method ``"none"``.

Everything here is pure: the mapper holds no database and does no I/O after loading.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rapidfuzz import fuzz, process

from connectors.base import NeedRef
from coordination.config import PACKAGED_CONFIG_DIR
from coordination.needs.codelists import DISCO_PREFIX, CodeLists, label_key, label_words

DEFAULT_MAPPINGS_DIR = PACKAGED_CONFIG_DIR / "mappings"

# fuzz.ratio (0-100) between folded labels. At 88 a single missing, extra or swapped-in letter
# passes in words of about nine letters or more ("Fødevarehygiejnne" scores 97, "svejsnig" 94),
# while different words that merely look alike stay far below ("ledelse"/"lean" 36,
# "salgsassistent"/"salgskonsulent" 64). Short words must therefore match exactly.
FUZZY_THRESHOLD = 88.0

# How a classification was reached; stored with it so a person can judge and override it.
METHOD_SOURCE_CODE = "source-code"
METHOD_SOURCE_LABEL = "source-label"
METHOD_DISCO_CODE = "disco-code"
METHOD_EXACT = "exact"
METHOD_FUZZY = "fuzzy"
METHOD_CONTAINS = "contains"
METHOD_NONE = "none"

# Apprentices are taken on in an occupation, so their labels name occupations, like recruitment.
_OCCUPATION_NEED_TYPES = frozenset({"recruitment", "apprentices"})
_DISCO_IN_TEXT = re.compile(r"\s*(?:disco[\s:-]*)?(\d{4})(?:\d{2})?\b", re.IGNORECASE)


class MappingTableError(ValueError):
    """A per-source mapping table is unusable; ``origin`` is its file, ``key`` where."""

    def __init__(self, origin: Path | str, key: str, message: str) -> None:
        super().__init__(f"{origin}: {key}: {message}")
        self.origin = origin
        self.key = key


@dataclasses.dataclass(frozen=True, slots=True)
class Classification:
    """Where a need lands in the taxonomy.

    ``taxonomy_code`` is ``komp:<code>`` or ``disco:<4 digits>``, or None when unclassified.
    ``need_type`` is the need's type (a source table may correct it). ``score`` is in 0..1:
    1.0 for table, DISCO-code and exact matches, the similarity for fuzzy matches, and for a
    *contains* match the share of the label's words that matched.
    """

    taxonomy_code: str | None
    need_type: str
    method: str
    score: float

    @property
    def is_classified(self) -> bool:
        return self.taxonomy_code is not None


@dataclasses.dataclass(frozen=True, slots=True)
class TableEntry:
    """What a source's code or label means; ``need_type`` overrides the delivered type."""

    taxonomy_code: str
    need_type: str | None = None


@dataclasses.dataclass(frozen=True)
class SourceTable:
    """One per-source mapping table: it applies to every source of ``kind``, or to the one source
    called ``name`` (exactly one of the two is set). Keys are matched after folding."""

    kind: str | None
    name: str | None
    codes: Mapping[str, TableEntry]
    labels: Mapping[str, TableEntry]
    origin: str = "<inline>"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "<inline>") -> SourceTable:
        """Build a table from the parsed shape of a mapping file (see
        ``config/mappings/odata-crm.toml``); raises :class:`MappingTableError` on bad shape."""
        source = data.get("source")
        if not isinstance(source, Mapping):
            raise MappingTableError(origin, "source", "must be a table with kind or name")
        selectors = {k: v for k, v in source.items() if k in ("kind", "name")}
        if len(selectors) != 1 or set(source) - {"kind", "name"}:
            raise MappingTableError(origin, "source", "must hold exactly one of kind or name")
        selector, value = next(iter(selectors.items()))
        if not isinstance(value, str) or not value.strip():
            raise MappingTableError(origin, f"source.{selector}", "must be a non-empty string")
        unknown = sorted(set(data) - {"source", "codes", "labels"})
        if unknown:
            raise MappingTableError(origin, unknown[0], "unknown section")
        return cls(
            kind=value if selector == "kind" else None,
            name=value if selector == "name" else None,
            codes=_entries(data.get("codes", {}), "codes", origin),
            labels=_entries(data.get("labels", {}), "labels", origin),
            origin=origin,
        )


def _entries(section: Any, section_name: str, origin: str) -> Mapping[str, TableEntry]:
    if not isinstance(section, Mapping):
        raise MappingTableError(origin, section_name, "must be a table")
    return MappingProxyType(
        {key: _entry(value, f"{section_name}.{key}", origin) for key, value in section.items()}
    )


def _entry(value: Any, key: str, origin: str) -> TableEntry:
    if isinstance(value, str):
        return TableEntry(value)
    if isinstance(value, Mapping) and isinstance(value.get("taxonomy"), str):
        need_type = value.get("need_type")
        if set(value) - {"taxonomy", "need_type"} or not isinstance(need_type, str | None):
            raise MappingTableError(origin, key, "may hold only taxonomy and need_type strings")
        return TableEntry(value["taxonomy"], need_type)
    raise MappingTableError(origin, key, 'must be "komp:..."/"disco:..." or {taxonomy = ...}')


def load_source_tables(directory: Path | str | None = None) -> tuple[SourceTable, ...]:
    """Read every ``*.toml`` table in ``directory`` (default: the shipped ``config/mappings``).
    A missing directory means no tables. Taxonomy codes are checked by :class:`NeedMapper`."""
    directory = Path(directory or DEFAULT_MAPPINGS_DIR)
    tables = []
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MappingTableError(path, "-", f"not a valid UTF-8 TOML file: {exc}") from exc
        tables.append(SourceTable.from_mapping(data, origin=str(path)))
    return tuple(tables)


class NeedMapper:
    """Classifies needs; build once (it indexes the vocabularies) and reuse.

    Raises :class:`MappingTableError` when a table names an unknown taxonomy code or need type,
    two tables apply to the same kind or name, or two keys of one table fold to the same key.
    """

    def __init__(self, codelists: CodeLists, source_tables: Iterable[SourceTable] = ()) -> None:
        self._codelists = codelists
        self._by_kind: dict[str, _FoldedTable] = {}
        self._by_name: dict[str, _FoldedTable] = {}
        for table in source_tables:
            self._add_table(table)
        self._occupations = _Vocabulary(
            (o.taxonomy_code, name)
            for o in codelists.occupations
            for name in (o.title, *o.synonyms)
        )
        self._competences = _Vocabulary(
            (c.taxonomy_code, name)
            for c in codelists.competences.values()
            for name in (c.label_da, c.label_en, *c.synonyms)
        )

    def classify(self, need: NeedRef, *, source_kind: str, source_name: str) -> Classification:
        """Classify ``need`` as delivered by source ``source_name`` of kind ``source_kind``.

        Never fails for an unknown code or label: that need comes back unclassified. Raises
        ValueError only for a need type that is not in the code lists.
        """
        if need.type not in self._codelists.need_types:
            raise ValueError(f"unknown need type {need.type!r}")
        tables = [t for t in (self._by_name.get(source_name), self._by_kind.get(source_kind)) if t]
        found = _from_tables(tables, need)
        if found is not None:
            return found
        if need.type in _OCCUPATION_NEED_TYPES:
            hit = self._disco_code(need) or self._occupations.match(need.label)
        else:
            hit = self._competences.match(need.label)
        if hit is None:
            return Classification(None, need.type, METHOD_NONE, 0.0)
        taxonomy_code, method, score = hit
        return Classification(taxonomy_code, need.type, method, score)

    def _disco_code(self, need: NeedRef) -> tuple[str, str, float] | None:
        for text in (need.code, need.label):
            found = _DISCO_IN_TEXT.match(text or "")
            rollup = self._codelists.disco_groups(found.group(1)) if found else None
            if rollup is not None:
                return DISCO_PREFIX + rollup.code, METHOD_DISCO_CODE, 1.0
        return None

    def _add_table(self, table: SourceTable) -> None:
        index, selector = (
            (self._by_kind, table.kind) if table.kind is not None else (self._by_name, table.name)
        )
        assert selector is not None  # SourceTable holds exactly one of kind and name
        if selector in index:
            other = index[selector].origin
            raise MappingTableError(table.origin, "source", f"{selector!r} also has {other}")
        index[selector] = _FoldedTable(
            origin=table.origin,
            codes=self._folded(table, table.codes, "codes"),
            labels=self._folded(table, table.labels, "labels"),
        )

    def _folded(
        self, table: SourceTable, entries: Mapping[str, TableEntry], section: str
    ) -> dict[str, TableEntry]:
        folded: dict[str, TableEntry] = {}
        raw_key: dict[str, str] = {}
        for raw, entry in entries.items():
            key = f"{section}.{raw}"
            if not self._codelists.is_taxonomy_code(entry.taxonomy_code):
                raise MappingTableError(
                    table.origin, key, f"unknown taxonomy code {entry.taxonomy_code!r}"
                )
            if entry.need_type is not None and entry.need_type not in self._codelists.need_types:
                raise MappingTableError(table.origin, key, f"unknown need type {entry.need_type!r}")
            fold = label_key(raw)
            if not fold:
                raise MappingTableError(table.origin, key, "has no letters or digits to match on")
            if fold in raw_key:
                raise MappingTableError(
                    table.origin, key, f"matches the same needs as {raw_key[fold]!r}"
                )
            raw_key[fold] = raw
            folded[fold] = entry
        return folded


@dataclasses.dataclass(frozen=True)
class _FoldedTable:
    origin: str
    codes: Mapping[str, TableEntry]
    labels: Mapping[str, TableEntry]


def _from_tables(tables: list[_FoldedTable], need: NeedRef) -> Classification | None:
    # Every table's codes come before any table's labels: a code is the source's own word for
    # the need, a label may be anything a consultant typed.
    lookups = (
        (METHOD_SOURCE_CODE, need.code, [t.codes for t in tables]),
        (METHOD_SOURCE_LABEL, need.label, [t.labels for t in tables]),
    )
    for method, text, sections in lookups:
        key = label_key(text or "")
        entry = next((section[key] for section in sections if key in section), None)
        if entry is not None:
            return Classification(entry.taxonomy_code, entry.need_type or need.type, method, 1.0)
    return None


class _Vocabulary:
    """The names of one part of the taxonomy (occupations or competences), indexed for
    exact, fuzzy and contained-words matching. Names are unique per code (the code lists
    check that), so an exact match is never ambiguous."""

    def __init__(self, names: Iterable[tuple[str, str]]) -> None:
        self._by_key: dict[str, str] = {}
        self._by_phrase: dict[tuple[str, ...], str] = {}
        for taxonomy_code, name in names:
            self._by_key[label_key(name)] = taxonomy_code
            self._by_phrase[label_words(name)] = taxonomy_code
        self._keys = list(self._by_key)
        self._longest_phrase = max((len(p) for p in self._by_phrase), default=0)

    def match(self, label: str) -> tuple[str, str, float] | None:
        """(taxonomy code, method, score) for ``label``, or None when nothing or more than one
        entry fits equally well."""
        return self._exact(label) or self._fuzzy(label) or self._contains(label)

    def _exact(self, label: str) -> tuple[str, str, float] | None:
        taxonomy_code = self._by_key.get(label_key(label))
        return (taxonomy_code, METHOD_EXACT, 1.0) if taxonomy_code else None

    def _fuzzy(self, label: str) -> tuple[str, str, float] | None:
        key = label_key(label)
        if not key:
            return None
        candidates = process.extract(
            key, self._keys, scorer=fuzz.ratio, score_cutoff=FUZZY_THRESHOLD, limit=None
        )
        if not candidates:
            return None
        best = max(score for _, score, _ in candidates)
        codes = {self._by_key[name] for name, score, _ in candidates if score == best}
        if len(codes) != 1:
            return None  # two entries fit equally well: a person must decide
        return codes.pop(), METHOD_FUZZY, round(best / 100, 3)

    def _contains(self, label: str) -> tuple[str, str, float] | None:
        words = label_words(label)
        covered: set[int] = set()
        codes: set[str] = set()
        for size in range(1, min(self._longest_phrase, len(words)) + 1):
            for start in range(len(words) - size + 1):
                taxonomy_code = self._by_phrase.get(words[start : start + size])
                if taxonomy_code is not None:
                    codes.add(taxonomy_code)
                    covered.update(range(start, start + size))
        if len(codes) != 1:
            return None  # no entry, or a label naming several ("lean og eksport")
        return codes.pop(), METHOD_CONTAINS, round(len(covered) / len(words), 3)
