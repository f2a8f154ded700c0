"""Reviewing needs that mapped nowhere, and the mappings people add for them.

A coordinator lists the unclassified needs (:func:`list_unclassified`, most frequent first) and
adds a mapping (:func:`add_mapping`): a delivered code and/or label, optionally only for one
source and/or one need type, means a taxonomy code. The mapping is stored in ``needmapping``,
applied at once to the stored needs it matches (so reports change without a re-sync), and
consulted by later syncs through :class:`MappingOverrides`.

Matching a mapping to a need
    Every criterion the mapping gives must hold: the source's name, the need type, the code and
    the label. Codes and labels are compared after folding case, æ/ø/å spelling and punctuation
    (:func:`coordination.needs.codelists.label_key`), as the shipped mapping tables do.
    A person's mapping wins over the automatic classification (tables, DISCO codes, label
    matching): it is the later and more deliberate decision. When several mappings match one
    need, the most specific wins: more criteria first, then one naming a source, then one
    naming a code, then the newest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sqlalchemy import bindparam, distinct, func, select, update
from sqlmodel import Session

from connectors.base import NeedRef
from coordination.models import (
    Approach,
    ApproachRecord,
    Need,
    NeedMapping,
    Source,
    SourceRecord,
)
from coordination.needs.codelists import CodeLists, label_key, load_codelists
from coordination.reports.facts import facts_built, refresh_report_facts

METHOD_MANUAL = "manual"


class MappingError(ValueError):
    """A mapping cannot be added; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- matching ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MappingRule:
    """A stored mapping, folded for matching. Empty criteria match anything."""

    id: int
    source_name: str
    code_key: str
    label_key: str
    need_type: str
    taxonomy_code: str

    @classmethod
    def of(cls, mapping: NeedMapping) -> MappingRule:
        return cls(
            id=mapping.id or 0,
            source_name=mapping.source_name,
            code_key=label_key(mapping.code),
            label_key=mapping.label_key,
            need_type=mapping.need_type,
            taxonomy_code=mapping.taxonomy_code,
        )

    def matches(self, source_name: str, need_type: str, code_key: str, need_label_key: str) -> bool:
        return (
            self.source_name in ("", source_name)
            and self.need_type in ("", need_type)
            and self.code_key in ("", code_key)
            and self.label_key in ("", need_label_key)
        )

    @property
    def specificity(self) -> tuple:
        given = (self.source_name, self.need_type, self.code_key, self.label_key)
        return (sum(1 for c in given if c), bool(self.source_name), bool(self.code_key), self.id)


class MappingOverrides:
    """The mappings people added, for the sync's need classifier to consult before automatic
    classification. Load once per sync run with :meth:`load`; pure after that."""

    def __init__(self, rules: Iterable[MappingRule] = ()) -> None:
        # Most specific first, so the first match wins.
        self._rules = sorted(rules, key=lambda r: r.specificity, reverse=True)

    @classmethod
    def load(cls, session: Session) -> MappingOverrides:
        return cls(MappingRule.of(m) for m in session.execute(select(NeedMapping)).scalars())

    def __bool__(self) -> bool:
        return bool(self._rules)

    def taxonomy_code(self, need: NeedRef, source_name: str) -> str | None:
        """The taxonomy code a person mapped ``need`` (from ``source_name``) to, or None."""
        rule = self.rule_for(source_name, need.type, need.code, need.label)
        return rule.taxonomy_code if rule else None

    def rule_for(
        self, source_name: str, need_type: str, code: str | None, label: str
    ) -> MappingRule | None:
        code_key, need_label_key = label_key(code or ""), label_key(label or "")
        for rule in self._rules:
            if rule.matches(source_name, need_type, code_key, need_label_key):
                return rule
        return None


# --- listing ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UnclassifiedNeed:
    """Needs delivered with the same source, type, code and label that map nowhere."""

    source: str
    need_type: str
    code: str | None
    label: str
    needs: int
    companies: int


def list_unclassified(
    session: Session,
    *,
    source: str | None = None,
    need_type: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[UnclassifiedNeed], int]:
    """One page of unclassified needs grouped by (source, type, code, label), the most
    frequent first, and the number of such groups."""
    query = (
        select(
            Source.name.label("source"),
            Need.type.label("need_type"),
            Need.code.label("code"),
            Need.label.label("label"),
            func.count(Need.id).label("needs"),
            func.count(distinct(SourceRecord.company_id)).label("companies"),
        )
        .join(SourceRecord, SourceRecord.id == Need.source_record_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .where(Need.taxonomy_code.is_(None))
        .group_by(Source.name, Need.type, Need.code, Need.label)
    )
    if source is not None:
        query = query.where(Source.name == source)
    if need_type is not None:
        query = query.where(Need.type == need_type)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    page = session.execute(
        query.order_by(func.count(Need.id).desc(), Source.name, Need.type, Need.label, Need.code)
        .offset(offset)
        .limit(limit)
    ).all()
    return [UnclassifiedNeed(*row) for row in page], total


# --- adding a mapping -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AddedMapping:
    mapping: NeedMapping
    created: bool  # False: an existing mapping with the same criteria was changed
    applied_to: int  # stored needs whose classification the mapping decides now


def add_mapping(
    session: Session,
    taxonomy_code: str,
    *,
    source_name: str = "",
    code: str = "",
    label: str = "",
    need_type: str = "",
    created_by: str | None = None,
    codelists: CodeLists | None = None,
) -> AddedMapping:
    """Store a mapping (or change the taxonomy code of the one with the same criteria) and
    apply it to the stored needs it matches, unless a more specific mapping decides them.

    Raises :class:`MappingError` for an unknown taxonomy code, need type or source, or when
    neither a code nor a label is given.
    """
    codelists = codelists or load_codelists()
    source_name, code, need_type = source_name.strip(), code.strip(), need_type.strip()
    _check(session, codelists, taxonomy_code, source_name, code, label, need_type)
    mapping, created = _upsert(
        session, taxonomy_code, source_name, code, label_key(label), need_type, created_by
    )
    applied = apply_mapping(session, MappingRule.of(mapping))
    return AddedMapping(mapping, created, applied)


def _check(session, codelists, taxonomy_code, source_name, code, label, need_type) -> None:
    if not codelists.is_taxonomy_code(taxonomy_code):
        raise MappingError(
            "taxonomy_code",
            f"unknown taxonomy code {taxonomy_code!r}: give komp:<competence> or disco:<4 digits>",
        )
    if need_type and need_type not in codelists.need_types:
        raise MappingError("need_type", f"unknown need type {need_type!r}")
    if not label_key(code) and not label_key(label):
        raise MappingError("code", "give the code or the label (or both) that the mapping is for")
    if source_name:
        known = session.execute(select(Source.id).where(Source.name == source_name)).first()
        if known is None:
            raise MappingError("source_name", f"no source is called {source_name!r}")


def _upsert(session, taxonomy_code, source_name, code, folded_label, need_type, created_by):
    candidates = session.execute(
        select(NeedMapping).where(
            NeedMapping.source_name == source_name,
            NeedMapping.label_key == folded_label,
            NeedMapping.need_type == need_type,
        )
    ).scalars()
    same = next((m for m in candidates if label_key(m.code) == label_key(code)), None)
    if same is not None:
        same.taxonomy_code = taxonomy_code
        same.created_by = created_by
        session.flush()
        return same, False
    mapping = NeedMapping(
        source_name=source_name,
        code=code,
        label_key=folded_label,
        need_type=need_type,
        taxonomy_code=taxonomy_code,
        created_by=created_by,
    )
    session.add(mapping)
    session.flush()
    return mapping, True


def apply_mapping(session: Session, rule: MappingRule) -> int:
    """Reclassify the stored needs that ``rule`` matches and that no more specific mapping
    decides; returns how many needs it now decides.

    The database narrows by source and type; codes and labels are folded here, once per
    distinct (source, type, code, label), never once per need.
    """
    overrides = MappingOverrides.load(session)
    variants = select(
        Source.id, Source.name, Need.type, Need.code, Need.label, func.count(Need.id)
    ).join(SourceRecord, SourceRecord.id == Need.source_record_id)
    variants = variants.join(Source, Source.id == SourceRecord.source_id)
    if rule.source_name:
        variants = variants.where(Source.name == rule.source_name)
    if rule.need_type:
        variants = variants.where(Need.type == rule.need_type)
    variants = variants.group_by(Source.id, Source.name, Need.type, Need.code, Need.label)
    decided, applied = [], 0
    for source_id, source_name, need_type, code, label, count in session.execute(variants):
        if not rule.matches(source_name, need_type, label_key(code or ""), label_key(label)):
            continue
        winner = overrides.rule_for(source_name, need_type, code, label)
        if winner is not None and winner.id == rule.id:
            decided.append(
                {"b_source": source_id, "b_type": need_type, "b_code": code or "", "b_label": label}
            )
            applied += count
    if decided:
        _reclassify(session, decided, rule.taxonomy_code)
        if facts_built(session):  # the reports count the stored needs through their facts
            refresh_report_facts(session, _companies_noting(session, decided))
    return applied


def _companies_noting(session: Session, variants: list[dict]) -> set[int]:
    """The companies with an approach whose records noted one of ``variants``."""
    query = (
        select(Approach.company_id)
        .distinct()
        .join(ApproachRecord, ApproachRecord.approach_id == Approach.id)
        .join(Need, Need.source_record_id == ApproachRecord.source_record_id)
        .join(SourceRecord, SourceRecord.id == Need.source_record_id)
        .where(
            SourceRecord.source_id == bindparam("b_source"),
            Need.type == bindparam("b_type"),
            func.coalesce(Need.code, "") == bindparam("b_code"),
            Need.label == bindparam("b_label"),
        )
    )
    return {company for variant in variants for company in session.scalars(query, variant)}


def _reclassify(session: Session, variants: list[dict], taxonomy_code: str) -> None:
    table = Need.__table__
    records = select(SourceRecord.id).where(SourceRecord.source_id == bindparam("b_source"))
    statement = (
        update(table)
        .where(
            table.c.source_record_id.in_(records),
            table.c.type == bindparam("b_type"),
            func.coalesce(table.c.code, "") == bindparam("b_code"),
            table.c.label == bindparam("b_label"),
        )
        .values(taxonomy_code=taxonomy_code, mapping_method=METHOD_MANUAL)
    )
    session.connection().execute(statement, variants)
