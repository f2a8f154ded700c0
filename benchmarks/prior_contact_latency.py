"""Benchmark: the prior-contact check in-process, over many random companies (issue 4).

Sends ``GET /api/v1/companies/{cvr}/prior-contact?days=180`` through the Flask test client (the
whole request: authentication, the check's writes, the answer's reads and its serialisation;
no HTTP server) for ``--requests`` random companies with a CVR number, and prints p50, p95 and
p99 of the wall time and the number of SQL statements per check (counted with SQLAlchemy's
``before_cursor_execute`` event). Target (issue 4): p50 under 20 ms on a database of 2,000,000
approaches and 300,000 companies (``bulk_fill.py``), on PostgreSQL and on SQLite.

    python benchmarks/prior_contact_latency.py postgresql+psycopg://postgres@127.0.0.1/bench
    python benchmarks/prior_contact_latency.py sqlite:////tmp/bench.db

The configuration lists one source per stored source, so every answer carries the freshness of
all of them, as in production. Every check is real: it is stored and audited.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from common import load_text, machine
from sqlalchemy import event, func, select

TARGET_P50_MS = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a filled database (bulk_fill.py)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(machine())
    app, statements = service(args.url)
    token = visitor_token(app)
    cvrs = sample_cvrs(app, args.requests + args.warmup, args.seed)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    before = load_text()
    timings, counts, approaches = [], [], []
    for number, cvr in enumerate(cvrs):
        statements[0] = 0
        started = time.perf_counter()
        answer = client.get(
            f"/api/v1/companies/{cvr}/prior-contact?days={args.days}", headers=headers
        )
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            raise SystemExit(f"{cvr}: {answer.status_code} {answer.get_data(as_text=True)[:300]}")
        if number >= args.warmup:
            timings.append(elapsed * 1000)
            counts.append(statements[0])
            approaches.append(len(answer.get_json()["approaches"]))
    print_results(app, timings, counts, approaches, before, load_text())
    app.extensions["coordination"]["engine"].dispose()
    return 0


def service(url: str):
    """The app on ``url`` with one configured source per stored source, and a one-element list
    that counts the SQL statements sent since it was last reset."""
    from coordination import create_app
    from coordination.config import Config, Rules, Schedule, SourceConfig
    from coordination.db import make_engine, session_scope
    from coordination.models import Organisation, Source

    engine = make_engine(url)
    with session_scope(engine) as session:
        rows = session.execute(
            select(Source.name, Source.kind, Organisation.name, Organisation.type)
            .join(Organisation, Organisation.id == Source.organisation_id)
            .order_by(Source.id)
        ).all()
    engine.dispose()
    sources = tuple(
        SourceConfig(name, kind, organisation, kind_of_organisation, None, None)
        for name, kind, organisation, kind_of_organisation in rows
    )
    config = Config(database_url=url, rules=Rules(), schedule=Schedule(), sources=sources)
    app = create_app({"COORDINATION": config})
    statements = [0]

    def count(*_args) -> None:
        statements[0] += 1

    event.listen(app.extensions["coordination"]["engine"], "before_cursor_execute", count)
    return app, statements


def visitor_token(app) -> str:
    from coordination.db import session_scope
    from coordination.tokens import create_token

    with session_scope(app.extensions["coordination"]["engine"]) as session:
        return create_token(session, "Jobcenter Aarhus", "visitor", label="benchmark")[1]


def sample_cvrs(app, count: int, seed: int) -> list[str]:
    """``count`` CVR numbers of random companies (a company's id picked at random, so the
    sample costs one indexed read per company, not a sort of the whole table)."""
    from coordination.db import session_scope
    from coordination.models import Company

    rng = random.Random(seed)
    with session_scope(app.extensions["coordination"]["engine"]) as session:
        top = session.execute(select(func.max(Company.id))).scalar_one()
        cvrs: list[str] = []
        while len(cvrs) < count:
            ids = [rng.randint(1, top) for _ in range(count)]
            query = select(Company.cvr).where(Company.id.in_(ids), Company.cvr.is_not(None))
            cvrs.extend(session.execute(query).scalars())
    rng.shuffle(cvrs)
    return cvrs[:count]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def print_results(app, timings, counts, approaches, before: str, after: str) -> None:
    dialect = app.extensions["coordination"]["engine"].dialect.name
    p50 = statistics.median(timings)
    print(
        f"== prior-contact in-process on {dialect}: {len(timings)} checks ({before} -> {after})\n"
        f"  wall ms   p50 {p50:.1f}  p95 {percentile(timings, 0.95):.1f}  "
        f"p99 {percentile(timings, 0.99):.1f}  max {max(timings):.1f}  "
        f"(target p50 < {TARGET_P50_MS:.0f}: {'met' if p50 < TARGET_P50_MS else 'NOT met'})\n"
        f"  SQL statements per check: median {statistics.median(counts):.0f}, "
        f"max {max(counts)}\n"
        f"  approaches per answer: median {statistics.median(approaches):.0f}, "
        f"max {max(approaches)}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
