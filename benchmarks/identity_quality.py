"""Identity quality: how well the sync resolves companies and groups approaches, against truth.

Run from the project folder::

    python benchmarks/identity_quality.py            # the quality scenario (about 5,000 records)
    python benchmarks/identity_quality.py --quick    # a smaller scenario, for a smoke run

What it does:

1. generates the labelled quality scenario (``coordination.demo.generator.Scenario.quality``:
   typos, missing and mistyped CVRs, legal-form and æøå variants, joint visits, double entries);
2. writes the deliveries, serves the CRM and the VEU APIs from the local fakes, and syncs
   everything through the real connectors into a fresh, temporary SQLite database;
3. prints pairwise precision, recall and F1 over source records: for company resolution (two
   records in the same company) and for approach grouping (two records in the same approach);
4. as a yardstick, links the same stored records with the ``recordlinkage`` toolkit (blocking,
   comparison, threshold classification, connected components) and prints its figures beside
   ours; when the toolkit is not installed it says so and skips it (the service does not depend
   on it: ``pip install recordlinkage`` to include it);
5. times the incremental cost: resolving 10,000 new records against 20,000 and against 200,000
   known companies with the in-memory ``CompanyIndex``, side by side.

Pairs are counted over records the truth labels (quarantined records have no company). Company
pairs cover every stored record; approach pairs cover the records that count for approaches
(completed and planned; cancelled and deleted ones belong to no approach).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(PROJECT))

from connectors.base import CompanyRef, load_registry  # noqa: E402
from coordination.config import Config, parse_config  # noqa: E402
from coordination.db import make_engine, upgrade  # noqa: E402
from coordination.demo.fakes import FakeODataCrm, FakeVeuApi  # noqa: E402
from coordination.demo.generator import (  # noqa: E402
    DemoDeliveries,
    Scenario,
    TruthRecord,
    company,
    deliveries,
    truth_map,
    write_demo_deliveries,
)
from coordination.identity.normalise import (  # noqa: E402
    clean_p_number,
    normalise_company_name,
    normalise_postcode,
    valid_cvr,
)
from coordination.identity.resolver import CompanyIndex, KnownCompany  # noqa: E402
from coordination.models import ApproachRecord, MatchProposal, Source, SourceRecord  # noqa: E402
from coordination.sync import SyncEngine  # noqa: E402

SECRET = "benchmark-secret"
API_KEY = "benchmark-key"
KINDS = {"crm": ("odata-crm", "vaeksthus"), "jobcenter": ("csv-drop", "jobcenter")}
KINDS["veu"] = ("rest-json", "veu")

NEW_RECORDS = 10_000
KNOWN_SIZES = (20_000, 200_000)

Key = tuple[str, str]  # (source name, the source's id of the record)


@dataclasses.dataclass(frozen=True)
class StoredRecord:
    key: Key
    company_id: int | None
    approach_id: int | None
    status: str
    name: str | None
    cvr_raw: str | None
    p_number: str | None
    postcode: str | None


@dataclasses.dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    true_pairs: int
    found_pairs: int

    def row(self, label: str) -> str:
        return (
            f"  {label:<34} {self.precision:>9.4f} {self.recall:>9.4f} {self.f1:>9.4f}"
            f" {self.found_pairs:>11,} {self.true_pairs:>11,}"
        )


# --- pairwise scores ---------------------------------------------------------------------------


def pairwise_scores(found: Mapping[Key, Hashable], truth: Mapping[Key, Hashable]) -> Scores:
    """Precision, recall and F1 of the record pairs ``found`` puts in one cluster, against the
    pairs ``truth`` puts in one cluster, over the records both label."""
    keys = found.keys() & truth.keys()

    def pairs(sizes: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in sizes)

    correct = pairs(Counter((found[k], truth[k]) for k in keys).values())
    found_pairs = pairs(Counter(found[k] for k in keys).values())
    true_pairs = pairs(Counter(truth[k] for k in keys).values())
    precision = correct / found_pairs if found_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1, true_pairs, found_pairs)


# --- the sync ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Synced:
    records: list[StoredRecord]
    proposals: list[tuple[int, int]]  # open review proposals: (company, candidate company)
    seconds: float


def sync_scenario(scenario: Scenario, folder: Path) -> Synced:
    """Write, serve and sync ``scenario`` into a fresh SQLite database under ``folder``."""
    written = write_demo_deliveries(folder / "deliveries", scenario)
    with ExitStack() as stack:
        crm = {
            name: stack.enter_context(FakeODataCrm.from_file(path, client_secret=SECRET))
            for name, path in written.crm.items()
        }
        veu = {
            name: stack.enter_context(FakeVeuApi.from_file(path, api_key=API_KEY))
            for name, path in written.veu.items()
        }
        url = f"sqlite:///{folder / 'identity-quality.db'}"
        config = _config(scenario, written, crm, veu, url)
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        result = SyncEngine(engine, config, load_registry()).run(trigger="cli")
        seconds = time.perf_counter() - started
        failed = [f"{o.name}: {o.error}" for o in result.outcomes if o.status != "succeeded"]
        if failed:
            raise SystemExit("sync failed: " + "; ".join(failed))
        stored = _stored_records(engine)
        with Session(engine) as session:
            proposals = session.execute(
                select(MatchProposal.company_id, MatchProposal.candidate_company_id).where(
                    MatchProposal.status == "proposed"
                )
            ).all()
        engine.dispose()
    return Synced(stored, [tuple(p) for p in proposals], seconds)


def _config(scenario: Scenario, written: DemoDeliveries, crm, veu, url: str) -> Config:
    municipality = {name: code for name, _, code in scenario.jobcentres}
    sources, environ = [], {"BENCHMARK_SECRET": SECRET, "BENCHMARK_KEY": API_KEY}
    for name, organisation, kind in scenario.sources():
        connector, organisation_type = KINDS[kind]
        entry = {
            "name": name,
            "kind": connector,
            "organisation": organisation,
            "organisation_type": organisation_type,
        }
        if kind == "crm":
            entry |= {
                "base_url": crm[name].base_url,
                "token_url": crm[name].token_url,
                "client_id": "demo-client",
                "client_secret_env": "BENCHMARK_SECRET",
            }
        elif kind == "veu":
            entry |= {"base_url": veu[name].base_url, "api_key_env": "BENCHMARK_KEY"}
        else:
            folder = written.jobcentres[name][0].parent
            entry |= {"path": str(folder), "municipality_code": municipality[name]}
        sources.append(entry)
    return parse_config({"database": {"url": url}, "sources": sources}, environ, load_registry())


def _stored_records(engine) -> list[StoredRecord]:
    query = (
        select(
            Source.name,
            SourceRecord.external_id,
            SourceRecord.company_id,
            ApproachRecord.approach_id,
            SourceRecord.status,
            SourceRecord.company_name,
            SourceRecord.cvr_raw,
            SourceRecord.p_number,
            SourceRecord.postcode,
        )
        .join(Source, Source.id == SourceRecord.source_id)
        .outerjoin(ApproachRecord, ApproachRecord.source_record_id == SourceRecord.id)
    )
    with Session(engine) as session:
        return [
            StoredRecord((source, external_id), *rest)
            for source, external_id, *rest in session.execute(query)
        ]


# --- the yardstick: the recordlinkage toolkit ---------------------------------------------------


def recordlinkage_companies(records: list[StoredRecord]) -> tuple[dict[Key, int], float] | None:
    """Company clusters found by a conventional recordlinkage set-up on the same records.

    Blocking on postcode and on valid CVR; comparing CVR and P-number exactly and the
    normalised name by Jaro-Winkler; a pair matches on equal CVR, equal P-number, or a name
    similarity of at least 0.93 in the same postcode when the two CVRs do not differ; clusters
    are the connected components of the matches. Returns None when the toolkit is missing.
    """
    try:
        import pandas as pd
        import recordlinkage
    except ImportError:
        return None
    started = time.perf_counter()
    frame = pd.DataFrame(
        {
            "name": [normalise_company_name(r.name) for r in records],
            "cvr": [valid_cvr(r.cvr_raw) for r in records],
            "p_number": [clean_p_number(r.p_number) for r in records],
            "postcode": [normalise_postcode(r.postcode) for r in records],
        }
    )
    pairs = recordlinkage.Index()
    pairs.block("postcode")
    pairs.block("cvr")
    candidates = pairs.index(frame)
    compare = recordlinkage.Compare()
    compare.exact("cvr", "cvr", label="cvr", missing_value=0)
    compare.exact("p_number", "p_number", label="p_number", missing_value=0)
    compare.exact("postcode", "postcode", label="postcode", missing_value=0)
    compare.string("name", "name", method="jarowinkler", label="name")
    features = compare.compute(candidates, frame)
    left, right = features.index.get_level_values(0), features.index.get_level_values(1)
    cvrs = frame["cvr"]
    conflict = (
        cvrs.iloc[left].notna().to_numpy()
        & cvrs.iloc[right].notna().to_numpy()
        & (cvrs.iloc[left].to_numpy() != cvrs.iloc[right].to_numpy())
    )
    by_name = (features["name"] >= 0.93) & (features["postcode"] == 1)
    matches = features[
        (features["cvr"] == 1) | ((features["p_number"] == 1) | by_name) & ~conflict
    ].index
    clusters = _components(len(records), matches)
    seconds = time.perf_counter() - started
    return {r.key: clusters[i] for i, r in enumerate(records)}, seconds


def _components(size: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    parent = list(range(size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    return [root(i) for i in range(size)]


# --- incremental cost --------------------------------------------------------------------------


def known_companies(count: int) -> list[KnownCompany]:
    """``count`` companies of a large synthetic universe, as the index holds them."""
    universe = Scenario.scale(companies=max(KNOWN_SIZES) + NEW_RECORDS)
    found = []
    for index in range(count):
        c = company(universe, index)
        unit = c.units[0]
        found.append(
            KnownCompany(
                index + 1,
                valid_cvr(c.cvr),
                normalise_company_name(c.name),
                normalise_postcode(unit.postcode),
                frozenset(u.p_number for u in c.units),
            )
        )
    return found


def new_delivery(count: int) -> list[CompanyRef]:
    """``count`` delivered company blocks from all three source formats, as the connectors read
    them: noisy spellings, missing and mistyped CVRs, some P-numbers. They come from the same
    universe as :func:`known_companies`, so some are known and some are not."""
    scenario = Scenario.scale(companies=max(KNOWN_SIZES) + NEW_RECORDS, approaches=count)
    refs = []
    for item in deliveries(scenario):
        if not item.truth.quarantine:
            refs.append(_company_block(item.kind, item.payload))
        if len(refs) == count:
            return refs
    raise RuntimeError(f"the scenario delivered only {len(refs)} records")


def _company_block(kind: str, payload: Mapping) -> CompanyRef:
    if kind == "crm":
        account = payload["regardingobjectid_account"]
        return CompanyRef(
            name=account["name"],
            cvr=account["cr_cvr"] or None,
            p_number=account["cr_pnumber"] or None,
            address=account["address1_line1"],
            postcode=account["address1_postalcode"],
            city=account["address1_city"],
        )
    if kind == "veu":
        return CompanyRef(**{k: payload["company"][k] for k in _VEU_FIELDS})
    return CompanyRef(
        name=payload["Virksomhed"],
        cvr=payload["CVR"] or None,
        p_number=payload["PNummer"] or None,
        address=payload["Adresse"],
        postcode=payload["Postnr"],
        city=payload["By"],
    )


_VEU_FIELDS = ("name", "cvr", "p_number", "address", "postcode", "city")


def time_resolution(known: list[KnownCompany], delivery: list[CompanyRef]) -> dict[str, float]:
    """Seconds to build the index and to resolve ``delivery`` one record at a time, adding an
    unresolved company for each record nothing matched (as the sync does)."""
    # The generated data is a large heap: keep the collector from rescanning it in the timings.
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    index = CompanyIndex(known)
    built = time.perf_counter() - started
    next_id = len(known) + 1
    rules: Counter[str] = Counter()
    started = time.perf_counter()
    for ref in delivery:
        resolution = index.resolve(ref)
        rules[resolution.rule] += 1
        if resolution.company_id is None:
            entry = KnownCompany.from_ref(next_id, ref)
            if resolution.rule != "new_cvr":
                entry = dataclasses.replace(entry, cvr=None)
            index.add(entry)
            next_id += 1
    resolved = time.perf_counter() - started
    gc.unfreeze()
    largest_block = max(Counter(c.postcode for c in known).values())
    return {"build": built, "resolve": resolved, "block": largest_block, **rules}


# --- report ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small scenario (smoke run)")
    parser.add_argument("--skip-timing", action="store_true", help="no incremental timing")
    args = parser.parse_args(argv)
    scenario = Scenario.quality(companies=300, approaches=800) if args.quick else Scenario.quality()
    print(f"Identity quality benchmark: scenario seed {scenario.seed}, {scenario.companies:,}"
          f" companies, {scenario.approaches:,} approaches, noise {scenario.noise}")  # fmt: skip
    labels = truth_map(scenario)
    with tempfile.TemporaryDirectory(prefix="identity-quality-") as tmp:
        synced = sync_scenario(scenario, Path(tmp))
    _report_quality(synced, labels)
    if not args.skip_timing:
        _report_timing()
    return 0


def _report_quality(synced: Synced, labels: Mapping[Key, TruthRecord]) -> None:
    stored, sync_seconds = synced.records, synced.seconds
    labelled = [r for r in stored if r.key in labels and labels[r.key].company_key]
    truth_company = {r.key: labels[r.key].company_key for r in labelled}
    counting = [r for r in labelled if r.approach_id is not None]
    truth_approach = {r.key: labels[r.key].approach_key for r in counting}
    ours_company = pairwise_scores({r.key: r.company_id for r in labelled}, truth_company)
    ours_approach = pairwise_scores({r.key: r.approach_id for r in counting}, truth_approach)
    unlabelled = len(stored) - len(labelled)
    print(
        f"\nSynced {len(stored):,} stored records through the real connectors in"
        f" {sync_seconds:.1f} s ({len(labelled):,} labelled, {unlabelled} without truth);"
        f" {len(counting):,} records count for approaches."
    )
    print(f"\n  {'pairwise, over source records':<34} {'precision':>9} {'recall':>9} {'F1':>9}"
          f" {'found pairs':>11} {'true pairs':>11}")  # fmt: skip
    print(ours_company.row("company resolution (service)"))
    yardstick = recordlinkage_companies(labelled)
    if yardstick is None:
        print("  recordlinkage is not installed: yardstick skipped (pip install recordlinkage)")
    else:
        clusters, seconds = yardstick
        print(pairwise_scores(clusters, truth_company).row("company resolution (recordlinkage)"))
    print(ours_approach.row("approach grouping (service)"))
    print("\n  targets: company precision >= 0.995, recall >= 0.97;"
          " approach precision >= 0.99, recall >= 0.97")  # fmt: skip
    if yardstick is not None:
        print(f"  recordlinkage linked the same {len(labelled):,} records in {seconds:.1f} s")
    _report_review_queue(synced.proposals, labelled, truth_company)


def _report_review_queue(
    proposals: list[tuple[int, int]], records: list[StoredRecord], truth: Mapping[Key, str]
) -> None:
    """How many open proposals there are and how many name the right company: the work a
    coordinator's review adds on top of the automatic figures above."""
    members: dict[int, Counter[str]] = {}
    for r in records:
        members.setdefault(r.company_id, Counter())[truth[r.key]] += 1

    def main_truth(company_id: int) -> str | None:
        found = members.get(company_id)
        return found.most_common(1)[0][0] if found else None

    right = [p for p in proposals if main_truth(p[0]) == main_truth(p[1]) is not None]
    covered = sum(sum(members.get(p[0], Counter()).values()) for p in right)
    print(
        f"  review queue: {len(proposals):,} open proposals, {len(right):,} of them the same"
        f" company ({covered:,} records a coordinator's accept would join)"
    )


def _report_timing() -> None:
    print(f"\nIncremental cost: resolving {NEW_RECORDS:,} new records with the in-memory"
          " CompanyIndex")  # fmt: skip
    delivery = new_delivery(NEW_RECORDS)
    random.Random(1).shuffle(delivery)
    print(f"  {'known companies':>16} {'index build':>12} {'resolve':>9} {'records/s':>10}"
          f" {'largest postcode block':>23}  rules")  # fmt: skip
    universe = known_companies(max(KNOWN_SIZES))
    for size in KNOWN_SIZES:
        result = time_resolution(universe[:size], delivery)
        rules = ", ".join(
            f"{rule} {int(result[rule]):,}"
            for rule in ("cvr", "p_number", "name_postcode", "fuzzy", "new_cvr", "unresolved")
            if rule in result
        )
        print(
            f"  {size:>16,} {result['build']:>10.2f} s {result['resolve']:>7.2f} s"
            f" {NEW_RECORDS / result['resolve']:>10,.0f} {int(result['block']):>23,}  {rules}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
