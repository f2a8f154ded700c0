"""The sync's company index as :class:`IdentityStage` loads it from the database, against the
plain definition (each live company added with its P-numbers and those of the companies merged
into it, then each merged company whose chain ends in a live one under its own spelling), over
random databases with merge chains, loops and P-numbers of merged companies."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict

import pytest
from sqlalchemy import insert, select, update
from sqlmodel import Session

from coordination.identity.normalise import normalise_postcode
from coordination.identity.resolver import CompanyIndex, KnownCompany
from coordination.linking import IdentityStage, rejected_pairs, surviving_companies
from coordination.models import Company, ProductionUnit

_COMPANY = Company.__table__
_UNIT = ProductionUnit.__table__


def _plain_index(session: Session) -> tuple[CompanyIndex, dict[int, int], set]:
    """The index, survivors and rejected pairs by the definition (the loader before it read
    columns): every company as an object, one at a time."""
    rows = session.execute(
        select(
            _COMPANY.c.id,
            _COMPANY.c.cvr,
            _COMPANY.c.name_key,
            _COMPANY.c.postcode,
            _COMPANY.c.merged_into_id,
        )
    ).all()
    survivor = surviving_companies({row[0]: row[4] for row in rows})
    units: dict[int, set[str]] = defaultdict(set)
    for p_number, company_id in session.execute(select(_UNIT.c.p_number, _UNIT.c.company_id)):
        units[survivor.get(company_id, company_id)].add(p_number)
    index = CompanyIndex()
    for cid, cvr, key, postcode, merged_into in rows:
        if merged_into is None:
            p_numbers = frozenset(units.get(cid, ()))
            index.add(KnownCompany(cid, cvr, key, normalise_postcode(postcode), p_numbers))
    for cid, _, key, postcode, _ in rows:
        if survivor.get(cid) in index:
            index.add(KnownCompany(cid, None, key, normalise_postcode(postcode)))
    return index, survivor, rejected_pairs(session, survivor)


def _state(index: CompanyIndex):
    blocks = {pc: sorted(zip(b.ids, b.keys, strict=True)) for pc, b in index._blocks.items()}

    def ids(held):
        return tuple(sorted(held)) if isinstance(held, tuple) else held

    by_name = {pc: {k: ids(v) for k, v in names.items()} for pc, names in index._by_name.items()}
    by_p = {p: ids(v) for p, v in index._by_p_number.items()}
    return index._companies, index._by_cvr, by_p, by_name, blocks


def _fill(engine, rng: random.Random) -> None:
    names = ["Alfa ApS", "Beta", "Hansen VVS", "Hansen VVS A/S", "Jensen Tømrer", "", "Gamma"]
    postcodes = ["8000", " DK-8000 ", "dk9000", "9000", "7100", None, ""]
    n = rng.randrange(1, 60)
    now = dt.datetime.now(dt.UTC)
    cvrs = rng.sample(range(10_000_000, 10_001_000), n)
    rows = [
        {
            "id": i + 1,
            "cvr": str(cvrs[i]) if rng.random() < 0.5 else None,
            "name": rng.choice(names) or "(ukendt)",
            "name_key": rng.choice(["alfa", "beta", "hansen vvs", "jensen tømrer", "", "gama"]),
            "postcode": rng.choice(postcodes),
            "created_at": now,
        }
        for i in range(n)
    ]
    units = [
        {"p_number": f"10{i:08d}", "company_id": rng.randrange(1, n + 1)}
        for i in range(rng.randrange(0, 2 * n))
    ]
    with engine.begin() as connection:
        connection.execute(insert(_COMPANY), rows)
        if units:
            connection.execute(insert(_UNIT), units)
        # merges: chains, a company merged into a merged one, now and then a loop
        for company_id in rng.sample(range(1, n + 1), rng.randrange(0, n // 2 + 1)):
            into = rng.randrange(1, n + 1)
            if into != company_id or rng.random() < 0.1:
                connection.execute(
                    update(_COMPANY).where(_COMPANY.c.id == company_id).values(merged_into_id=into)
                )


@pytest.mark.parametrize("seed", range(12))
def test_the_stage_loads_the_index_the_plain_definition_gives(engine, seed):
    _fill(engine, random.Random(seed))
    with Session(engine) as session:
        stage = IdentityStage(session)
        index, survivor, rejected = _plain_index(session)
    assert _state(stage.index) == _state(index)
    assert stage.survivor == survivor
    assert stage.rejected == rejected
