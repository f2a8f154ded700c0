"""The shipped code lists, read from the data files in ``config/codelists/``.

:func:`load_codelists` reads and validates municipalities (with their postcodes), council areas
(dated), DB07 industry sections with the 10-grouping, DISCO-08 occupation groups and titles,
upskilling competence areas and need types. Bad data raises :class:`CodeListError` naming the
file and the key, so a broken deployment fails at start-up rather than in a report.

Lookups by our own identifiers (municipality code, area id, section letter, competence code, need
type) raise ``KeyError`` when the identifier is unknown: that is a configuration or programming
error. Lookups by values that arrive in source data (postcode, DISCO code, branch code) return
``None`` when the value is unknown or malformed.

Taxonomy codes name what a need is about: ``komp:<competence code>`` for an upskilling area and
``disco:<4-digit DISCO-08 code>`` for an occupation (which rolls up to its groups).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from connectors.base import NEED_TYPES
from coordination.config import PACKAGED_CONFIG_DIR

DEFAULT_CODELISTS_DIR = PACKAGED_CONFIG_DIR / "codelists"
COMPETENCE_PREFIX = "komp:"
DISCO_PREFIX = "disco:"

_MUNICIPALITY_CODE = re.compile(r"\d{3}")
_POSTCODE = re.compile(r"\d{4}")
_SECTION = re.compile(r"[A-Z]")
_DISCO_MAJOR = re.compile(r"\d")
_DISCO_SUB_MAJOR = re.compile(r"\d{2}")
_DISCO_UNIT = re.compile(r"\d{4}")
_DISCO = re.compile(r"\d{4}(\d{2})?")  # a unit group, or Danish 6-digit DISCO-08
_STABLE_CODE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
# Danish letters fold to their official two-letter spellings, so "Grøn" and "Groen" meet.
_DANISH_FOLDS = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"})
_APOSTROPHES = str.maketrans("", "", "'’`´")


class CodeListError(ValueError):
    """A code-list file is missing or holds bad data; ``origin`` is the file, ``key`` where."""

    def __init__(self, origin: Path | str, key: str, message: str) -> None:
        super().__init__(f"{origin}: {key}: {message}")
        self.origin = origin
        self.key = key


# --- label folding ----------------------------------------------------------------------------


def label_words(text: str) -> tuple[str, ...]:
    """The words of ``text`` folded for comparison: case-folded, æ/ø/å spelled ae/oe/aa, other
    accents dropped, apostrophes removed ("vvs'er" is "vvser"), any other punctuation a break."""
    folded = text.casefold().translate(_DANISH_FOLDS).translate(_APOSTROPHES)
    decomposed = unicodedata.normalize("NFKD", folded)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return tuple(re.findall(r"[a-z0-9]+", plain))


def label_key(text: str) -> str:
    """``text`` folded to one comparison key: :func:`label_words` joined without spaces, so that
    Danish compounds written apart ("gaffeltruck certifikat") meet their joined spelling."""
    return "".join(label_words(text))


# --- the code lists ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Municipality:
    code: str  # official 3-digit municipality code
    name: str
    postcodes: Mapping[str, str]  # postcode -> city name


@dataclasses.dataclass(frozen=True)
class AreaVersion:
    """A council area as it stands from ``valid_from`` until the area's next version."""

    area_id: str
    name: str
    valid_from: dt.date
    municipality_codes: frozenset[str]


@dataclasses.dataclass(frozen=True)
class IndustrySection:
    code: str  # DB07 section letter
    label: str
    divisions: tuple[int, int]  # first and last 2-digit DB07 hovedgruppe in the section


@dataclasses.dataclass(frozen=True)
class IndustryGroup:
    code: str  # "1".."10" of the 10-grouping
    label: str
    sections: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DiscoGroup:
    code: str  # 1 digit (major group) or 2 digits (sub-major group)
    label: str


@dataclasses.dataclass(frozen=True)
class DiscoRollup:
    """The groups a DISCO-08 code belongs to."""

    code: str  # the 4-digit unit-group code
    major: DiscoGroup
    sub_major: DiscoGroup


@dataclasses.dataclass(frozen=True)
class Occupation:
    disco: str  # 4-digit DISCO-08 code
    title: str
    synonyms: tuple[str, ...]

    @property
    def taxonomy_code(self) -> str:
        return DISCO_PREFIX + self.disco


@dataclasses.dataclass(frozen=True)
class Competence:
    code: str
    label_da: str
    label_en: str
    synonyms: tuple[str, ...]

    @property
    def taxonomy_code(self) -> str:
        return COMPETENCE_PREFIX + self.code


@dataclasses.dataclass(frozen=True)
class NeedType:
    code: str  # one of connectors.base.NEED_TYPES
    label_da: str
    label_en: str


@dataclasses.dataclass(frozen=True)
class CodeLists:
    """All shipped code lists, validated; build with :func:`load_codelists`."""

    directory: Path
    municipalities: Mapping[str, Municipality]
    postcode_municipality: Mapping[str, str]  # postcode -> municipality code
    areas: Mapping[str, tuple[AreaVersion, ...]]  # versions oldest first
    industry_sections: Mapping[str, IndustrySection]
    industry_groups: Mapping[str, IndustryGroup]
    disco_major_groups: Mapping[str, DiscoGroup]
    disco_sub_major_groups: Mapping[str, DiscoGroup]
    occupations: tuple[Occupation, ...]
    competences: Mapping[str, Competence]
    need_types: Mapping[str, NeedType]

    def municipality(self, code: str) -> Municipality:
        """The municipality with official code ``code`` (e.g. "751"); KeyError if not ours."""
        return self.municipalities[code]

    def municipality_for_postcode(self, postcode: str | None) -> Municipality | None:
        """The municipality a postcode belongs to (the main one where a postcode crosses a
        border), or None for a postcode outside the region or not a postcode at all."""
        code = self.postcode_municipality.get((postcode or "").strip())
        return None if code is None else self.municipalities[code]

    def area(self, area_id: str, on: dt.date) -> AreaVersion:
        """The version of council area ``area_id`` in force on ``on``.

        KeyError for an unknown area or a date before the area's first version.
        """
        in_force = [v for v in self.areas[area_id] if v.valid_from <= on]
        if not in_force:
            raise KeyError(f"area {area_id!r} has no version in force on {on.isoformat()}")
        return in_force[-1]

    def area_municipalities(self, area_id: str, on: dt.date) -> frozenset[str]:
        """Codes of the municipalities in council area ``area_id`` on date ``on``."""
        return self.area(area_id, on).municipality_codes

    def industry_group(self, section: str) -> IndustryGroup:
        """The 10-grouping group of DB07 section ``section`` (e.g. "C" -> group "2")."""
        if section not in self.industry_sections:
            raise KeyError(section)
        return next(g for g in self.industry_groups.values() if section in g.sections)

    def industry_section_for_branch_code(self, branch_code: str | None) -> IndustrySection | None:
        """The DB07 section of a branch code such as "251100" or "25.11.00" (only its first two
        digits count), or None when the code is malformed or in no section."""
        digits = re.sub(r"\D", "", branch_code or "")
        if len(digits) < 2:
            return None
        division = int(digits[:2])
        for section in self.industry_sections.values():
            first, last = section.divisions
            if first <= division <= last:
                return section
        return None

    def disco_groups(self, code: str | None) -> DiscoRollup | None:
        """The major and sub-major group of a DISCO-08 code ("7212", "721210" or "disco:7212"),
        or None when it is malformed or its groups are not in the list."""
        digits = (code or "").strip().removeprefix(DISCO_PREFIX)
        if not _DISCO.fullmatch(digits):
            return None
        sub_major = self.disco_sub_major_groups.get(digits[:2])
        if sub_major is None:
            return None
        return DiscoRollup(digits[:4], self.disco_major_groups[digits[:1]], sub_major)

    def competence(self, code: str) -> Competence:
        """The competence area with stable code ``code`` (e.g. "svejsning"); KeyError if none."""
        return self.competences[code]

    def need_type(self, code: str) -> NeedType:
        """The need type ``code`` (e.g. "upskilling"); KeyError if none."""
        return self.need_types[code]

    def is_taxonomy_code(self, taxonomy_code: str) -> bool:
        """Whether ``taxonomy_code`` names a listed competence or a DISCO code with known groups."""
        if taxonomy_code.startswith(COMPETENCE_PREFIX):
            return taxonomy_code.removeprefix(COMPETENCE_PREFIX) in self.competences
        if taxonomy_code.startswith(DISCO_PREFIX):
            code = taxonomy_code.removeprefix(DISCO_PREFIX)
            return len(code) == 4 and self.disco_groups(code) is not None
        return False

    def taxonomy_label(self, taxonomy_code: str) -> str:
        """A Danish label for a taxonomy code: the competence's label, the occupation's first
        listed title, or else the DISCO sub-major group's label. KeyError if not a known code."""
        # Remembered per code (the lists never change): every need a prior-contact check shows
        # asks, and a DISCO code's label costs a pattern match and a walk of the occupations.
        label = self._taxonomy_labels.get(taxonomy_code)
        if label is None:
            label = self._taxonomy_labels[taxonomy_code] = self._taxonomy_label(taxonomy_code)
        return label

    @functools.cached_property
    def _taxonomy_labels(self) -> dict[str, str]:
        return {}

    def _taxonomy_label(self, taxonomy_code: str) -> str:
        if not self.is_taxonomy_code(taxonomy_code):
            raise KeyError(taxonomy_code)
        if taxonomy_code.startswith(COMPETENCE_PREFIX):
            return self.competences[taxonomy_code.removeprefix(COMPETENCE_PREFIX)].label_da
        titles = [o.title for o in self.occupations if o.taxonomy_code == taxonomy_code]
        if titles:
            return titles[0]
        rollup = self.disco_groups(taxonomy_code)
        assert rollup is not None  # is_taxonomy_code checked the groups
        return rollup.sub_major.label


def load_codelists(directory: Path | str | None = None) -> CodeLists:
    """Read and validate the code lists in ``directory`` (default: the shipped
    ``config/codelists``). Loaded once per directory and then shared; treat the result as
    read-only. Raises :class:`CodeListError` on a missing file or bad data."""
    if not directory:
        return _load_default()  # without resolving the path again: called once per need shown
    return _load_cached(Path(directory).resolve())


@functools.cache
def _load_default() -> CodeLists:
    return _load_cached(Path(DEFAULT_CODELISTS_DIR).resolve())


@functools.cache
def _load_cached(directory: Path) -> CodeLists:
    municipalities, postcodes = _read_municipalities(_DataFile(directory / "municipalities.toml"))
    sections, groups = _read_industries(_DataFile(directory / "industries.toml"))
    majors, sub_majors, occupations = _read_occupations(_DataFile(directory / "occupations.toml"))
    return CodeLists(
        directory=directory,
        municipalities=_frozen(municipalities),
        postcode_municipality=_frozen(postcodes),
        areas=_frozen(_read_areas(_DataFile(directory / "areas.toml"), municipalities)),
        industry_sections=_frozen(sections),
        industry_groups=_frozen(groups),
        disco_major_groups=_frozen(majors),
        disco_sub_major_groups=_frozen(sub_majors),
        occupations=occupations,
        competences=_frozen(_read_competences(_DataFile(directory / "competences.toml"))),
        need_types=_frozen(_read_need_types(_DataFile(directory / "need_types.toml"))),
    )


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    # The lists are cached and shared between callers, so nobody may change them in place.
    return MappingProxyType(mapping)


# --- reading one file -------------------------------------------------------------------------


class _DataFile:
    """One parsed TOML file, with getters that name the file and key of any bad value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.fail("-", "file is missing")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            self.fail("-", f"not a valid UTF-8 TOML file: {exc}")

    def fail(self, key: str, message: str) -> NoReturn:
        raise CodeListError(self.path, key, message)

    def table(self, parent: Mapping[str, Any], name: str, key: str) -> dict[str, Any]:
        return self._typed(parent, name, key, dict, "a table")

    def tables(self, parent: Mapping[str, Any], name: str, key: str) -> list[dict[str, Any]]:
        items = self._typed(parent, name, key, list, "an array of tables")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.fail(f"{key}[{i}]", "must be a table")
        return items

    def text(
        self, parent: Mapping[str, Any], name: str, key: str, pattern: re.Pattern[str] | None = None
    ) -> str:
        value = self._typed(parent, name, key, str, "a string")
        if not value.strip():
            self.fail(key, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"{value!r} does not match {pattern.pattern!r}")
        return value

    def texts(
        self, parent: Mapping[str, Any], name: str, key: str, *, optional: bool = False
    ) -> tuple[str, ...]:
        if optional and name not in parent:
            return ()
        values = self._typed(parent, name, key, list, "a list of strings")
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                self.fail(f"{key}[{i}]", "must be a non-empty string")
        return tuple(values)

    def check_key(self, value: str, key: str, pattern: re.Pattern[str], what: str) -> None:
        if not pattern.fullmatch(value):
            self.fail(key, f"{value!r} is not {what}")

    def _typed(self, parent: Mapping[str, Any], name: str, key: str, kind: type, what: str) -> Any:
        if name not in parent:
            self.fail(key, "is missing")
        value = parent[name]
        if not isinstance(value, kind):
            self.fail(key, f"must be {what}, not {type(value).__name__}")
        return value


def _check_unique_names(file: _DataFile, named: Iterable[tuple[str, str, str]]) -> None:
    """Fail when two different codes share a name after folding: matching could not choose.
    ``named`` yields (key for the message, code, name)."""
    owner: dict[str, str] = {}
    for key, code, name in named:
        folded = label_key(name)
        if not folded:
            file.fail(key, f"{name!r} has no letters or digits to match on")
        if owner.setdefault(folded, code) != code:
            file.fail(key, f"{name!r} already names {owner[folded]!r}")


# --- one reader per list ----------------------------------------------------------------------


def _read_municipalities(file: _DataFile) -> tuple[dict[str, Municipality], dict[str, str]]:
    municipalities: dict[str, Municipality] = {}
    postcode_owner: dict[str, str] = {}
    for code in file.table(file.data, "municipality", "municipality"):
        key = f"municipality.{code}"
        file.check_key(code, key, _MUNICIPALITY_CODE, "a 3-digit municipality code")
        entry = file.table(file.data["municipality"], code, key)
        name = file.text(entry, "name", f"{key}.name")
        postcodes: dict[str, str] = {}
        for postcode in file.table(entry, "postcodes", f"{key}.postcodes"):
            pkey = f"{key}.postcodes.{postcode}"
            file.check_key(postcode, pkey, _POSTCODE, "a 4-digit postcode")
            if postcode in postcode_owner:
                file.fail(
                    pkey,
                    f"already listed under municipality {postcode_owner[postcode]}; "
                    "list a shared postcode once, under its main municipality",
                )
            postcode_owner[postcode] = code
            postcodes[postcode] = file.text(entry["postcodes"], postcode, pkey)
        municipalities[code] = Municipality(code, name, _frozen(postcodes))
    if not municipalities:
        file.fail("municipality", "lists no municipalities")
    return municipalities, postcode_owner


def _read_areas(
    file: _DataFile, municipalities: Mapping[str, Municipality]
) -> dict[str, tuple[AreaVersion, ...]]:
    versions: dict[str, list[AreaVersion]] = {}
    for i, entry in enumerate(file.tables(file.data, "area", "area")):
        key = f"area[{i}]"
        area_id = file.text(entry, "id", f"{key}.id", _STABLE_CODE)
        valid_from = entry.get("valid_from")
        # tomllib reads a bare date as date and a date-time as datetime, a subclass of date.
        if not isinstance(valid_from, dt.date) or isinstance(valid_from, dt.datetime):
            file.fail(f"{key}.valid_from", "must be a date such as 2015-01-01")
        codes = file.texts(entry, "municipalities", f"{key}.municipalities")
        unknown = sorted(set(codes) - set(municipalities))
        if unknown:
            file.fail(f"{key}.municipalities", f"unknown municipality codes {unknown}")
        earlier = versions.setdefault(area_id, [])
        if any(v.valid_from == valid_from for v in earlier):
            file.fail(f"{key}.valid_from", f"{area_id!r} already has a version from {valid_from}")
        name = file.text(entry, "name", f"{key}.name")
        earlier.append(AreaVersion(area_id, name, valid_from, frozenset(codes)))
    return {
        area_id: tuple(sorted(vs, key=lambda v: v.valid_from)) for area_id, vs in versions.items()
    }


def _read_industries(
    file: _DataFile,
) -> tuple[dict[str, IndustrySection], dict[str, IndustryGroup]]:
    sections: dict[str, IndustrySection] = {}
    for code in file.table(file.data, "section", "section"):
        key = f"section.{code}"
        file.check_key(code, key, _SECTION, "a DB07 section letter")
        entry = file.table(file.data["section"], code, key)
        divisions = entry.get("divisions")
        if not (
            isinstance(divisions, list)
            and len(divisions) == 2
            and all(isinstance(d, int) and 1 <= d <= 99 for d in divisions)
            and divisions[0] <= divisions[1]
        ):
            file.fail(f"{key}.divisions", "must be [first, last] with 1 <= first <= last <= 99")
        sections[code] = IndustrySection(
            code, file.text(entry, "label", f"{key}.label"), tuple(divisions)
        )
    _check_divisions_disjoint(file, sections)
    return sections, _read_industry_groups(file, sections)


def _check_divisions_disjoint(file: _DataFile, sections: Mapping[str, IndustrySection]) -> None:
    owner: dict[int, str] = {}
    for section in sections.values():
        for division in range(section.divisions[0], section.divisions[1] + 1):
            if owner.setdefault(division, section.code) != section.code:
                file.fail(
                    f"section.{section.code}.divisions",
                    f"division {division} is already in section {owner[division]}",
                )


def _read_industry_groups(
    file: _DataFile, sections: Mapping[str, IndustrySection]
) -> dict[str, IndustryGroup]:
    groups: dict[str, IndustryGroup] = {}
    placed: dict[str, str] = {}
    for code in file.table(file.data, "group", "group"):
        key = f"group.{code}"
        entry = file.table(file.data["group"], code, key)
        members = file.texts(entry, "sections", f"{key}.sections")
        for section in members:
            if section not in sections:
                file.fail(f"{key}.sections", f"unknown section {section!r}")
            if placed.setdefault(section, code) != code:
                file.fail(
                    f"{key}.sections", f"section {section} is already in group {placed[section]}"
                )
        groups[code] = IndustryGroup(code, file.text(entry, "label", f"{key}.label"), members)
    missing = sorted(set(sections) - set(placed))
    if missing:
        file.fail("group", f"sections {missing} are in no group")
    return groups


def _read_occupations(
    file: _DataFile,
) -> tuple[dict[str, DiscoGroup], dict[str, DiscoGroup], tuple[Occupation, ...]]:
    majors: dict[str, DiscoGroup] = {}
    for code in file.table(file.data, "major", "major"):
        key = f"major.{code}"
        file.check_key(code, key, _DISCO_MAJOR, "a 1-digit DISCO major group")
        label = file.text(file.table(file.data["major"], code, key), "label", f"{key}.label")
        majors[code] = DiscoGroup(code, label)
    sub_majors: dict[str, DiscoGroup] = {}
    for code in file.table(file.data, "sub_major", "sub_major"):
        key = f"sub_major.{code}"
        file.check_key(code, key, _DISCO_SUB_MAJOR, "a 2-digit DISCO sub-major group")
        if code[0] not in majors:
            file.fail(key, f"its major group {code[0]} is not listed")
        sub_majors[code] = DiscoGroup(code, file.text(file.data["sub_major"], code, key))
    occupations = []
    for i, entry in enumerate(file.tables(file.data, "occupation", "occupation")):
        key = f"occupation[{i}]"
        disco = file.text(entry, "disco", f"{key}.disco", _DISCO_UNIT)
        if disco[:2] not in sub_majors:
            file.fail(f"{key}.disco", f"its sub-major group {disco[:2]} is not listed")
        title = file.text(entry, "title", f"{key}.title")
        synonyms = file.texts(entry, "synonyms", f"{key}.synonyms", optional=True)
        occupations.append(Occupation(disco, title, synonyms))
    _check_unique_names(
        file,
        (
            (f"occupation[{i}]", o.disco, name)
            for i, o in enumerate(occupations)
            for name in (o.title, *o.synonyms)
        ),
    )
    return majors, sub_majors, tuple(occupations)


def _read_competences(file: _DataFile) -> dict[str, Competence]:
    competences: dict[str, Competence] = {}
    for i, entry in enumerate(file.tables(file.data, "competence", "competence")):
        key = f"competence[{i}]"
        code = file.text(entry, "code", f"{key}.code", _STABLE_CODE)
        if code in competences:
            file.fail(f"{key}.code", f"{code!r} is listed twice")
        competences[code] = Competence(
            code=code,
            label_da=file.text(entry, "label_da", f"{key}.label_da"),
            label_en=file.text(entry, "label_en", f"{key}.label_en"),
            synonyms=file.texts(entry, "synonyms", f"{key}.synonyms", optional=True),
        )
    _check_unique_names(
        file,
        (
            (f"competence[{i}]", c.code, name)
            for i, c in enumerate(competences.values())
            for name in (c.label_da, c.label_en, *c.synonyms)
        ),
    )
    return competences


def _read_need_types(file: _DataFile) -> dict[str, NeedType]:
    need_types: dict[str, NeedType] = {}
    for code in file.table(file.data, "need_type", "need_type"):
        key = f"need_type.{code}"
        entry = file.table(file.data["need_type"], code, key)
        need_types[code] = NeedType(
            code,
            file.text(entry, "label_da", f"{key}.label_da"),
            file.text(entry, "label_en", f"{key}.label_en"),
        )
    # Connectors deliver exactly these types; a type without a label would break reports.
    missing = sorted(set(NEED_TYPES) - set(need_types))
    if missing:
        file.fail("need_type", f"the need types {missing} that connectors deliver are missing")
    return need_types
