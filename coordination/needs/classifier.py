"""The need classifier the sync engine uses: the shipped taxonomy and per-source tables."""

from __future__ import annotations

from connectors.base import NeedRef
from coordination.ingest import NeedClassifier
from coordination.needs.codelists import load_codelists
from coordination.needs.mapping import NeedMapper, load_source_tables
from coordination.needs.review import METHOD_MANUAL, MappingOverrides


class TaxonomyClassifier(NeedClassifier):
    """People's mappings (``needmapping``) first, then the shipped tables and label matching."""

    def __init__(
        self, mapper: NeedMapper | None = None, overrides: MappingOverrides | None = None
    ) -> None:
        self.mapper = mapper or NeedMapper(load_codelists(), load_source_tables())
        self.overrides = overrides or MappingOverrides()

    def classify(self, need: NeedRef, source_kind: str, source_name: str):
        manual = self.overrides.taxonomy_code(need, source_name)
        if manual is not None:
            return manual, METHOD_MANUAL
        result = self.mapper.classify(need, source_kind=source_kind, source_name=source_name)
        return result.taxonomy_code, result.method
