"""Memory of the in-memory company index (``CompanyIndex``): bytes per company, by tracemalloc.

Run from the project folder::

    python benchmarks/index_memory.py                      # 300,000 companies
    python benchmarks/index_memory.py --companies 50000    # a quicker run

The companies come from the scale scenario's universe (``Scenario.scale``) and enter the index
as the sync adds them: :meth:`KnownCompany.from_ref` of the first record of each company, one
at a time. Their values are decoded from JSON inside the measured span, so that every string
is a fresh object owned by the index alone, as the values read from the database or a delivery
are in the syncing process. Three mixes are measured: every record with a P-number, none with
one, and the companies as the start of a run loads them from the database (every P-number of
the company, a tenth of them with two).

The figure is what the index keeps (tracemalloc's current size after the build, the inputs
freed), divided by the number of companies; it is what a full sync adds per company.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(PROJECT))

from connectors.base import CompanyRef  # noqa: E402
from coordination.demo.generator import Scenario, company  # noqa: E402
from coordination.identity import normalise  # noqa: E402
from coordination.identity.normalise import (  # noqa: E402
    clean_p_number,
    normalise_company_name,
    normalise_postcode,
    valid_cvr,
)
from coordination.identity.resolver import CompanyIndex, KnownCompany  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=300_000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = universe_rows(args.companies)
    print(f"{args.companies:,} companies generated in {time.monotonic() - started:.0f} s")
    blob = json.dumps(rows)
    del rows
    mixes = {
        "sync, every record with a P-number": _from_ref_with_p,
        "sync, no record with a P-number": _from_ref_without_p,
        "start of a run, all P-numbers": _from_database,
    }
    for label, build in mixes.items():
        print(f"{label:<40} {measure(blob, build):7.0f} bytes per company")
    return 0


def universe_rows(count: int) -> list[tuple]:
    """[name, CVR, postcode, P-numbers] of the universe's first ``count`` companies."""
    universe = Scenario.scale(companies=count)
    rows = []
    for index in range(count):
        c = company(universe, index)
        head = c.units[0]
        rows.append((c.name, c.cvr, head.postcode, tuple(u.p_number for u in c.units)))
    return rows


def _from_ref_with_p(company_id: int, row: list) -> KnownCompany:
    name, cvr, postcode, p_numbers = row
    ref = CompanyRef(name=name, cvr=cvr, postcode=postcode, p_number=p_numbers[0])
    return KnownCompany.from_ref(company_id, ref)


def _from_ref_without_p(company_id: int, row: list) -> KnownCompany:
    name, cvr, postcode, _ = row
    return KnownCompany.from_ref(company_id, CompanyRef(name=name, cvr=cvr, postcode=postcode))


def _from_database(company_id: int, row: list) -> KnownCompany:
    # As coordination.linking loads them: columns as stored, P-numbers of the production units.
    name, cvr, postcode, p_numbers = row
    return KnownCompany(
        company_id,
        valid_cvr(cvr),
        normalise_company_name(name),
        normalise_postcode(postcode),
        frozenset(filter(None, map(clean_p_number, p_numbers))),
    )


def measure(blob: str, build) -> float:
    """Bytes the index keeps per company."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rows = json.loads(blob)
    index = CompanyIndex()
    for number, row in enumerate(rows, start=1):
        index.add(build(number, row))
    del rows
    _clear_caches()
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = len(index)
    del index
    return kept / count


def _clear_caches() -> None:
    """Empty the normalisers' memo caches: they are bounded, so they are no cost per company."""
    for value in vars(normalise).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()


if __name__ == "__main__":
    raise SystemExit(main())
