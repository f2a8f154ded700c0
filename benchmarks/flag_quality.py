"""Flag quality: do the service's flags match the rules applied to the TRUE approaches?

Run from the project folder::

    python benchmarks/flag_quality.py           # the labelled quality scenario
    python benchmarks/flag_quality.py --quick   # a smaller one

It syncs the identity benchmark's labelled scenario through the real connectors (see
``identity_quality.py``), then compares the companies the service flagged with the companies a
straightforward reference implementation of the rules (``reference_rules.py``) flags when it is
given the true companies and true approaches from the generator's truth. It prints precision and
recall over companies (target: both at least 0.97).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(PROJECT))

from benchmarks.identity_quality import sync_scenario  # noqa: E402
from benchmarks.reference_rules import RefApproach, flagged, uncoordinated  # noqa: E402
from coordination.config import Rules  # noqa: E402
from coordination.db import make_engine  # noqa: E402
from coordination.demo.generator import Scenario, truth_map  # noqa: E402
from coordination.identity.normalise import normalise_organisation_name  # noqa: E402
from coordination.models import Flag, Source, SourceRecord  # noqa: E402
from coordination.timeutil import local_today  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    scenario = Scenario.quality(companies=300, approaches=800) if args.quick else Scenario.quality()
    labels = truth_map(scenario)
    organisation_of = {name: organisation for name, organisation, _ in scenario.sources()}
    rules = Rules()
    with tempfile.TemporaryDirectory(prefix="flag-quality-") as tmp:
        sync_scenario(scenario, Path(tmp))
        engine = make_engine(f"sqlite:///{Path(tmp) / 'identity-quality.db'}")
        records, flagged_ids = _stored(engine)
        engine.dispose()
    ours = _service_flagged_companies(records, flagged_ids, labels)
    reference = _reference_flagged_companies(records, labels, organisation_of, rules)
    both = ours & reference
    precision = len(both) / len(ours) if ours else 1.0
    recall = len(both) / len(reference) if reference else 1.0
    print(f"Flag quality: {scenario.companies:,} true companies, {len(records):,} stored records")
    print(f"  companies flagged by the service:             {len(ours):>6,}")
    print(f"  companies flagged by the reference (truth):   {len(reference):>6,}")
    print(f"  precision {precision:.4f}   recall {recall:.4f}   (targets: both >= 0.97)")
    return 0


def _stored(engine):
    query = select(
        Source.name,
        SourceRecord.external_id,
        SourceRecord.company_id,
        SourceRecord.approach_date,
        SourceRecord.status,
        SourceRecord.joint_with,
    ).join(Source, Source.id == SourceRecord.source_id)
    with Session(engine) as session:
        records = session.execute(query).all()
        flagged_ids = set(session.execute(select(Flag.company_id)).scalars())
    return records, flagged_ids


def _service_flagged_companies(records, flagged_ids, labels) -> set[str]:
    """True company keys of the companies the service flagged (by majority of their records)."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for source, external_id, company_id, *_ in records:
        label = labels.get((source, external_id))
        if company_id in flagged_ids and label and label.company_key:
            votes[company_id][label.company_key] += 1
    return {counter.most_common(1)[0][0] for counter in votes.values()}


def _reference_flagged_companies(records, labels, organisation_of, rules: Rules) -> set[str]:
    today = local_today()
    approaches: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for source, external_id, _company, date, status, joint_with in records:
        label = labels.get((source, external_id))
        if not label or not label.company_key or status not in ("completed", "planned"):
            continue
        if date > today:
            continue  # planned approaches count from their date
        approaches[label.company_key][label.approach_key].append(
            (date, organisation_of[source], tuple(joint_with or ()))
        )
    flagged_companies = set()
    for company_key, by_approach in approaches.items():
        refs = [_reference_approach(parts) for parts in by_approach.values()]
        marks = uncoordinated(refs, [], rules.window_days, rules.lookup_valid_days)
        dates = [a.date for a, mark in zip(refs, marks, strict=True) if mark]
        if flagged(dates, rules.window_days, rules.flag_threshold):
            flagged_companies.add(company_key)
    return flagged_companies


def _reference_approach(parts: list[tuple]) -> RefApproach:
    organisations = frozenset(organisation for _, organisation, _ in parts)
    own = {normalise_organisation_name(o) for o in organisations}
    named = {normalise_organisation_name(n) for _, _, names in parts for n in names}
    return RefApproach(min(d for d, _, _ in parts), organisations, bool(named - own - {""}))


if __name__ == "__main__":
    raise SystemExit(main())
