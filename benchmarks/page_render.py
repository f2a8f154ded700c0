"""Benchmark: server time of each web page on a filled database (issue 8: under 200 ms each).

Renders every page through the Flask test client (the whole request: session, queries,
template; no HTTP server), logged in with a token of the role the page needs, ``--runs`` times
each, and prints the median and the maximum. Company pages and searches vary over random
companies; the company page is a real prior-contact check (stored and audited).

    python benchmarks/page_render.py postgresql+psycopg://postgres@127.0.0.1/bench
    python benchmarks/page_render.py sqlite:////tmp/bench.db

Fill the database first with ``bulk_fill.py`` (2,000,000 approaches, 300,000 companies).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from common import load_text, machine
from prior_contact_latency import sample_cvrs, service
from sqlalchemy import select

TARGET_MS = 200.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a filled database (bulk_fill.py)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", action="append", default=[], help="leave out pages (repeat)")
    parser.add_argument(
        "--report-query",
        default="",
        help="query string of the report pages, e.g. from=2025-01-01&to=2025-12-31 "
        "(default: the pages' own default, the last 365 days)",
    )
    parser.add_argument(
        "--cold-reports",
        action="store_true",
        help="give the report facts a new version before each report page, so every rendering "
        "counts anew instead of reading the report cache",
    )
    args = parser.parse_args(argv)
    print(machine())
    app, statements = service(args.url)
    rng = random.Random(args.seed)
    skipped = lambda name: any(word in name for word in args.skip)  # noqa: E731
    # Only the company pages and searches need sample companies (with CVR numbers).
    needed = any(not skipped(name) for name in ("company page", "company search"))
    companies = company_sample(app, args.runs, args.seed) if needed else []
    before = load_text()
    results = {}
    for name, role, paths in pages(app, companies, rng, args.runs, args.report_query):
        if skipped(name):
            continue
        client = logged_in(app, role)
        client.get(paths[0])  # the first rendering compiles the template
        timings, counts = [], []
        for path in paths:
            if args.cold_reports and path.startswith("/rapporter"):
                stale_report_cache(app)
            statements[0] = 0
            started = time.perf_counter()
            answer = client.get(path)
            timings.append((time.perf_counter() - started) * 1000)
            counts.append(statements[0])
            if answer.status_code not in (200, 302):  # a CVR search redirects to the company
                raise SystemExit(f"{path}: {answer.status_code}")
        results[name] = (statistics.median(timings), max(timings), statistics.median(counts))
        median, top, count = results[name]
        print(f"  ({name}: {median:.1f} / {top:.1f} ms, {load_text()})", flush=True)
    print_results(app, results, before, load_text())
    app.extensions["coordination"]["engine"].dispose()
    return 0


def company_sample(app, count: int, seed: int) -> list[tuple[int, str, str]]:
    """(id, cvr, name) of ``count`` random companies with a CVR number."""
    from coordination.db import session_scope
    from coordination.models import Company

    cvrs = sample_cvrs(app, count, seed)
    with session_scope(app.extensions["coordination"]["engine"]) as session:
        rows = session.execute(
            select(Company.id, Company.cvr, Company.name).where(Company.cvr.in_(cvrs))
        ).all()
    return [tuple(row) for row in rows]


def pages(
    app, companies, rng: random.Random, runs: int, report_query: str = ""
) -> list[tuple[str, str, list[str]]]:
    """(page, role, the paths to render) for every page."""
    query = f"?{report_query}" if report_query else ""
    first_words = [name.split()[0] + " " + name.split()[1] for _, _, name in companies]
    return [
        ("company search by name", "visitor", [f"/tjek?q={w}" for w in first_words]),
        ("company search by CVR (redirect)", "visitor", [f"/tjek?q={c}" for _, c, _ in companies]),
        ("company page (the check)", "visitor", [f"/virksomhed/{i}" for i, _, _ in companies]),
        (
            "company page, 730 days",
            "visitor",
            [f"/virksomhed/{i}?dage=730" for i, _, _ in companies],
        ),
        ("flag inbox", "coordinator", ["/flag"] * runs),
        ("flag inbox, resolved", "coordinator", ["/flag?status=resolved"] * runs),
        ("match review", "coordinator", ["/match"] * runs),
        ("reports", "council", [f"/rapporter{query}"] * runs),
        ("coordination report", "council", [f"/rapporter/koordinering{query}"] * runs),
        ("sync status", "admin", ["/synkronisering"] * runs),
    ]


def stale_report_cache(app) -> None:
    """Every cached report result stale, as after a refresh of the report facts."""
    from coordination.db import session_scope
    from coordination.reports.facts import mark_facts_changed

    with session_scope(app.extensions["coordination"]["engine"]) as session:
        mark_facts_changed(session)


def logged_in(app, role: str):
    """A test client whose session is logged in with a new token of ``role``."""
    from coordination.db import session_scope
    from coordination.tokens import create_token

    with session_scope(app.extensions["coordination"]["engine"]) as session:
        token, _ = create_token(session, "Jobcenter Aarhus", role, label="page benchmark")
        token_id = token.id
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(
            token_id=token_id, organisation="Jobcenter Aarhus", role=role, name="Benchmark"
        )
    return client


def print_results(app, results: dict, before: str, after: str) -> None:
    dialect = app.extensions["coordination"]["engine"].dialect.name
    print(f"== page server time on {dialect} ({before} -> {after})")
    for name, (median, top, count) in results.items():
        verdict = "met" if top < TARGET_MS else ("median met" if median < TARGET_MS else "NOT met")
        print(
            f"  {name:34s} median {median:7.1f} ms  max {top:7.1f} ms  "
            f"statements {count:3.0f}  ({verdict}, target < {TARGET_MS:.0f} ms)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
