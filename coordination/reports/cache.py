"""Report results cached in the database, shared by every worker and machine.

A result is stored under a key made of the report kind, its normalised parameters and a
fingerprint of the code that computes it (the service's modules and the shipped code lists, so a
deploy that changes either never serves an old result), together with the version of the report
facts it was computed from (``facts_version``). Every transaction that changes the facts notes
it (:func:`coordination.reports.facts.mark_facts_changed`), which changes the version, so a
stored result is read only while the facts it came from are unchanged: a cached answer is the
answer counted now. Until the facts are built the reports count from the approaches, which
change without a version, and nothing is cached.

What else a cached part reads must be in its parameters: the coordination report keys its
checks by the checks' number and newest id, and counts flags live.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from coordination.models import ReportCache, utcnow
from coordination.needs.codelists import DEFAULT_CODELISTS_DIR
from coordination.reports.facts import facts_version


class Memo(Protocol):
    """How a report gets a part of itself: ``compute()``, or its stored result."""

    def __call__(self, kind: str, parameters: dict, compute: Callable[[], Any]) -> Any: ...


def live(kind: str, parameters: dict, compute: Callable[[], Any]) -> Any:
    """No cache: compute."""
    return compute()


def memo_in(session: Session) -> Memo:
    """The cache in the database of ``session``, for the parts of one page (or of the nightly
    warm-up): the facts' version is read once, by the first part asked for."""
    version = functools.cache(lambda: facts_version(session))

    def memo(kind: str, parameters: dict, compute: Callable[[], Any]) -> Any:
        return _cached_at(version(), session, kind, parameters, compute)

    return memo


def cached(session: Session, kind: str, parameters: dict, compute: Callable[[], Any]) -> Any:
    """``compute()``'s result (JSON-ready), from the cache when it holds one computed from the
    facts as they are now; else computed and stored (in the caller's transaction)."""
    return _cached_at(facts_version(session), session, kind, parameters, compute)


def _cached_at(
    version: str | None, session: Session, kind: str, parameters: dict, compute: Callable[[], Any]
) -> Any:
    """:func:`cached` with the facts' ``version`` known (None: not built, nothing cached)."""
    if version is None:
        return compute()
    key = cache_key(kind, parameters)
    found = session.execute(
        select(ReportCache.version, ReportCache.result).where(ReportCache.key == key)
    ).first()
    if found is not None and found.version == version:
        return json.loads(found.result)
    result = compute()
    _store(session, key, kind, version, result)
    return result


def cache_key(kind: str, parameters: dict) -> str:
    text = json.dumps([kind, parameters, code_fingerprint()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """A hash of what a cached result depends on besides the data: the service's code and the
    shipped code lists (read once per process)."""
    digest = hashlib.sha256()
    package = Path(__file__).parent.parent
    files = sorted(package.rglob("*.py")) + sorted(Path(DEFAULT_CODELISTS_DIR).glob("*"))
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _store(session: Session, key: str, kind: str, version: str, result: Any) -> None:
    # Results of older versions are never read again: keep the table to the current ones.
    session.execute(delete(ReportCache).where(ReportCache.version != version))
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    values = {"version": version, "result": json.dumps(result), "created_at": utcnow()}
    statement = dialect.insert(ReportCache).values(key=key, kind=kind, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["key"], set_=values))
