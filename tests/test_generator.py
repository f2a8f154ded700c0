"""The synthetic-delivery generator: deterministic, spec-shaped, streaming, with complete truth."""

from __future__ import annotations

import csv
import inspect
import io
import itertools
import json
import re
import tracemalloc
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from stdnum.dk import cpr as stdnum_cpr
from stdnum.dk import cvr as stdnum_cvr

from coordination.demo.generator import (
    MUNICIPALITIES,
    POSTCODES,
    Scenario,
    companies,
    company,
    crm_appointments,
    csv_file_names,
    cvr_check_digit,
    deliveries,
    truth,
    truth_map,
    veu_items,
    write_demo_deliveries,
    write_jobcenter_csvs,
)

# The header names of sources.md, section 2, written out here so the test checks the spec.
SPEC_CSV_COLUMNS = [
    "KontaktID", "Dato", "CVR", "PNummer", "Virksomhed", "Adresse", "Postnr", "By",
    "Kontaktform", "Formål", "Kontaktperson", "KontaktpersonEmail", "KontaktpersonTelefon",
    "Medarbejder", "MedarbejderEmail", "Rekrutteringsbehov", "Kompetencebehov", "KoordineretMed",
    "Status", "Note",
]  # fmt: skip
JOBCENTRES = ("jobcenter-aarhus", "jobcenter-herning", "jobcenter-randers")
VEU_CENTRES = ("veu-oestjylland", "veu-vestjylland")
COPENHAGEN = ZoneInfo("Europe/Copenhagen")


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return Scenario.demo()


@pytest.fixture(scope="module")
def demo_truth(demo: Scenario):
    return truth_map(demo)


@pytest.fixture(scope="module")
def written(demo: Scenario, tmp_path_factory: pytest.TempPathFactory):
    return write_demo_deliveries(tmp_path_factory.mktemp("demo"), demo)


def read_csv(path: Path, encoding: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(encoding)), delimiter=";"))


def csv_date(text: str) -> date:
    day = text.split(" ")[0].replace(".", "-")
    return datetime.strptime(day, "%d-%m-%Y").date()


def delivered_date(d) -> date:
    if d.kind == "crm":
        return datetime.fromisoformat(d.payload["scheduledstart"]).date()
    if d.kind == "veu":
        return date.fromisoformat(d.payload["date"])
    return csv_date(d.payload["Dato"])


def final_versions(scenario: Scenario) -> list:
    """The last delivered version of every good record (a delta row replaces its first row)."""
    latest = {(d.source_name, d.truth.source_id): d for d in deliveries(scenario)}
    return [d for d in latest.values() if not d.truth.quarantine]


def identity(d) -> tuple[str, str]:
    """(CVR as delivered, consultant e-mail) of any kind of payload."""
    p = d.payload
    if d.kind == "crm":
        return p["regardingobjectid_account"]["cr_cvr"], p["owninguser"]["internalemailaddress"]
    if d.kind == "veu":
        return p["company"]["cvr"] or "", p["consultant"]["email"]
    return p["CVR"], p["MedarbejderEmail"]


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_deliveries(demo: Scenario) -> None:
    again = Scenario.demo()
    assert list(crm_appointments(demo)) == list(crm_appointments(again))
    assert list(veu_items(demo, "veu-oestjylland")) == list(veu_items(again, "veu-oestjylland"))
    assert list(truth(demo)) == list(truth(again))


def test_written_files_are_byte_identical_across_runs(demo: Scenario, tmp_path: Path) -> None:
    first = write_demo_deliveries(tmp_path / "a", demo)
    second = write_demo_deliveries(tmp_path / "b", demo)
    files_a = sorted(p.relative_to(first.folder) for p in first.folder.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(second.folder) for p in second.folder.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (first.folder / rel).read_bytes() == (second.folder / rel).read_bytes()


def test_another_seed_gives_other_deliveries(demo: Scenario) -> None:
    other = Scenario.demo(seed=7)
    assert list(crm_appointments(demo))[:5] != list(crm_appointments(other))[:5]


# --- companies ----------------------------------------------------------------------------------


def test_check_digit_follows_modulus_11() -> None:
    assert cvr_check_digit("1427272") == 0  # 14272720 from the samples
    assert stdnum_cvr.is_valid("14272720")


def test_companies_have_unique_valid_cvr_and_p_numbers_in_the_region() -> None:
    scenario = Scenario.quality()
    all_companies = list(companies(scenario))
    cvrs = [c.cvr for c in all_companies]
    p_numbers = [u.p_number for c in all_companies for u in c.units]
    assert len(set(cvrs)) == len(cvrs) == scenario.companies
    assert all(stdnum_cvr.is_valid(n) and n[0] != "0" for n in cvrs)
    assert len(set(p_numbers)) == len(p_numbers)
    assert all(re.fullmatch(r"[1-9]\d{9}", p) for p in p_numbers)
    for c in all_companies:
        for unit in c.units:
            assert POSTCODES[unit.postcode] == (unit.city, unit.municipality_code)
    assert len(MUNICIPALITIES) == 19
    assert any(len(c.units) > 1 for c in all_companies)  # some have a second workplace


def test_company_lookup_matches_the_sequence(demo: Scenario) -> None:
    assert company(demo, 3) == list(companies(demo))[3]
    with pytest.raises(IndexError):
        company(demo, demo.companies)


# --- identity noise ----------------------------------------------------------------------------


def test_valid_cvr_numbers_pass_and_mistyped_ones_fail() -> None:
    scenario = Scenario.quality()
    by_key = {c.key: c for c in companies(scenario)}
    seen = Counter()
    for d in deliveries(scenario):
        t = d.truth
        if t.quarantine:
            continue
        delivered, _ = identity(d)
        digits = re.sub(r"[\s-]|^DK", "", delivered)
        true_cvr = by_key[t.company_key].cvr
        if d.file_index == 1 and t.cvr_noise in ("missing", "mistyped") and digits == true_cvr:
            continue  # a jobcentre's delta file corrected the CVR of an earlier row
        seen[t.cvr_noise] += 1
        if t.cvr_noise in ("plain", "formatted"):
            assert stdnum_cvr.is_valid(delivered), delivered
            assert digits == true_cvr
        elif t.cvr_noise == "mistyped":
            assert len(digits) == 8 and not stdnum_cvr.is_valid(digits), delivered
        else:
            assert delivered == ""
    assert seen["mistyped"] and seen["missing"] and seen["formatted"] and seen["plain"]


def test_cvr_formats_include_spaces_and_dk_prefixes() -> None:
    formats = Counter()
    for d in deliveries(Scenario.quality()):
        cvr, _ = identity(d)
        if d.truth.cvr_noise == "formatted":
            formats[re.sub(r"\d", "9", cvr)] += 1
    assert set(formats) == {"99 99 99 99", "DK99999999", "DK-99999999"}


def test_name_variants_are_realistic() -> None:
    variants = Counter(t.name_noise for t in truth(Scenario.quality()))
    for kind in ("exact", "form_dropped", "form_changed", "case", "folded", "typo"):
        assert variants[kind], kind
    names = {d.payload["company"]["name"] for d in deliveries(Scenario.quality(), VEU_CENTRES)}
    assert any(" og " in (n or "") for n in names) and any("oe" in (n or "") for n in names)


# --- the CRM ------------------------------------------------------------------------------------


def test_crm_times_carry_the_copenhagen_offset(demo: Scenario) -> None:
    offsets = set()
    for item in crm_appointments(demo):
        start = item["scheduledstart"]
        if not isinstance(start, str) or start[5:7] == "02" and start[8:10] in ("30", "31"):
            continue  # the bad records
        moment = datetime.fromisoformat(start)
        local = moment.replace(tzinfo=None)
        assert moment.utcoffset() == COPENHAGEN.utcoffset(local), start
        offsets.add(start[-6:])
    assert offsets == {"+01:00", "+02:00"}


def test_crm_modifiedon_is_utc_and_strictly_increasing(demo: Scenario) -> None:
    stamps = [item["modifiedon"] for item in crm_appointments(demo)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_crm_objects_have_exactly_the_spec_fields(demo: Scenario) -> None:
    item = next(crm_appointments(demo))
    assert set(item) == {
        "activityid", "subject", "scheduledstart", "modifiedon", "statecode", "cr_contacttype",
        "regardingobjectid_account", "cr_contact", "owninguser", "cr_competenceneeds",
        "cr_jointwith", "description",
    }  # fmt: skip
    assert set(item["regardingobjectid_account"]) == {
        "accountid", "name", "cr_cvr", "cr_pnumber", "address1_line1", "address1_postalcode",
        "address1_city",
    }  # fmt: skip
    assert set(item["owninguser"]) == {"fullname", "internalemailaddress"}
    assert item["owninguser"]["internalemailaddress"].endswith("@vaeksthus-midt.dk")
    codes = {c for i in crm_appointments(demo) for c in i["cr_competenceneeds"].split(";") if c}
    assert codes <= {"DIG", "LEAN", "LED", "GRØN", "AUT", "EXP"} and len(codes) >= 5


def test_crm_has_completed_planned_and_cancelled_appointments(demo: Scenario) -> None:
    items = list(crm_appointments(demo))
    states = Counter(i["statecode"] for i in items)
    assert states[0] and states[1] and states[2]
    for item in items:
        if item["statecode"] == 0:
            assert datetime.fromisoformat(item["scheduledstart"]).date() > demo.end


# --- the VEU API --------------------------------------------------------------------------------


def test_veu_items_have_the_spec_shape(demo: Scenario) -> None:
    items = list(veu_items(demo, "veu-oestjylland"))
    good = [i for i in items if isinstance(i["needs"], list) and i["company"]["name"]]
    assert {tuple(sorted(i)) for i in items} == {
        tuple(sorted(["id", "updated_at", "deleted", "date", "channel", "purpose", "company",
                      "contact_person", "consultant", "needs", "joint_with", "notes"]))
    }  # fmt: skip
    assert all(i["channel"] in ("visit", "phone", "meeting", "email", "online") for i in items)
    assert {n["type"] for i in good for n in i["needs"]} <= {"upskilling", "recruitment"}
    assert any(n["code"] == "AMU-CNC" for i in good for n in i["needs"])
    assert any(i["deleted"] for i in items)
    stamps = [i["updated_at"] for i in items]
    assert stamps == sorted(stamps)


def test_unknown_or_wrong_kind_of_source_is_refused(demo: Scenario, tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        veu_items(demo, "veu-nowhere")
    with pytest.raises(KeyError):
        veu_items(demo, "jobcenter-aarhus")
    with pytest.raises(KeyError):
        write_jobcenter_csvs(demo, tmp_path, "veu-oestjylland")
    with pytest.raises(KeyError):
        deliveries(demo, ["nowhere"])


# --- jobcenter CSV drops ------------------------------------------------------------------------


def test_csv_drops_use_their_encodings_and_the_spec_headers(written) -> None:
    for name in JOBCENTRES:
        full, delta = written.jobcentres[name]
        assert [full.name, delta.name] == ["virksomhedskontakter_20260301.csv",
                                           "virksomhedskontakter_20260901.csv"]  # fmt: skip
        raw_full, raw_delta = full.read_bytes(), delta.read_bytes()
        if name == "jobcenter-herning":
            with pytest.raises(UnicodeDecodeError):
                raw_full.decode("utf-8")
            encoding = "cp1252"
        else:
            assert raw_full.startswith(b"\xef\xbb\xbf")
            encoding = "utf-8-sig"
        assert not raw_delta.startswith(b"\xef\xbb\xbf")
        raw_delta.decode("utf-8")
        for raw in (raw_full, raw_delta):
            assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
        full_rows, delta_rows = read_csv(full, encoding), read_csv(delta, "utf-8")
        header_full = raw_full.decode(encoding).lstrip("\ufeff").split("\r\n")[0].split(";")
        header_delta = raw_delta.decode("utf-8").split("\r\n")[0].split(";")
        assert header_full == SPEC_CSV_COLUMNS
        assert sorted(header_delta) == sorted(SPEC_CSV_COLUMNS) != header_delta
        assert full_rows and delta_rows
        assert "æ" in raw_full.decode(encoding) or "ø" in raw_full.decode(encoding)


def test_delta_file_updates_and_cancels_rows_of_the_full_export(written) -> None:
    updated = cancelled = 0
    for name in JOBCENTRES:
        full, delta = written.jobcentres[name]
        encoding = "cp1252" if name == "jobcenter-herning" else "utf-8-sig"
        before = {r["KontaktID"]: r for r in read_csv(full, encoding)}
        for row in read_csv(delta, "utf-8"):
            if row["KontaktID"] in before:
                updated += 1
                assert row != before[row["KontaktID"]]
                cancelled += row["Status"] == "Annulleret" != before[row["KontaktID"]]["Status"]
    assert updated >= 3 and cancelled >= 1


def test_csv_dates_cvr_and_channels_vary_like_hand_keyed_exports(written) -> None:
    rows = []
    for name in JOBCENTRES:
        full, delta = written.jobcentres[name]
        rows += read_csv(full, "cp1252" if name == "jobcenter-herning" else "utf-8-sig")
        rows += read_csv(delta, "utf-8")
    dates = {re.sub(r"\d", "9", r["Dato"]) for r in rows}
    assert {"99-99-9999", "99.99.9999"} <= dates
    assert any(r["CVR"].startswith("DK") for r in rows) and any(" " in r["CVR"] for r in rows)
    assert any(r["Kontaktform"] in ("besoeg", "BESØG", "mail") for r in rows)
    assert any(
        re.fullmatch(r"\d{4}", need) for r in rows for need in r["Rekrutteringsbehov"].split("|")
    )


def test_write_jobcenter_csvs_matches_the_demo_writer(demo: Scenario, written, tmp_path) -> None:
    paths = write_jobcenter_csvs(demo, tmp_path, "jobcenter-randers")
    assert [p.name for p in paths] == list(csv_file_names(demo))
    expected = written.jobcentres["jobcenter-randers"]
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in expected]


# --- truth --------------------------------------------------------------------------------------


def test_truth_covers_every_emitted_record_and_nothing_else(written, demo_truth) -> None:
    emitted = set()
    for name, path in {**written.crm, **written.veu}.items():
        key = "activityid" if name == "vaeksthus-midt" else "id"
        emitted |= {(name, item[key]) for item in json.loads(path.read_text("utf-8"))}
    for name, (full, delta) in written.jobcentres.items():
        encoding = "cp1252" if name == "jobcenter-herning" else "utf-8-sig"
        for path, enc in ((full, encoding), (delta, "utf-8")):
            emitted |= {(name, row["KontaktID"]) for row in read_csv(path, enc)}
    assert emitted == set(demo_truth)
    assert sum(written.records.values()) >= len(demo_truth)


def test_truth_stays_out_of_the_payloads(written) -> None:
    text = "".join(p.read_text("utf-8") for p in written.folder.rglob("records.json"))
    assert not re.search(r'"(C\d{7}|A\d{8})"', text)
    assert "company_key" not in text and "approach_key" not in text


def test_records_of_one_approach_share_one_company(demo: Scenario) -> None:
    by_approach = defaultdict(set)
    for t in truth(demo):
        if t.approach_key:
            by_approach[t.approach_key].add(t.company_key)
    assert all(len(keys) == 1 for keys in by_approach.values())


# --- what a small scenario must contain ---------------------------------------------------------


def test_demo_has_every_special_case(written) -> None:
    s = written.summary
    assert 60 <= s["companies"] <= 100 and 300 <= s["approaches"] <= 500
    for case in ("role_joint", "role_double", "cancelled", "deleted", "planned", "bad"):
        assert s[case] >= 1, case
    assert s["episode"] >= 5 and s["corrected_later"] >= 1 and s["cpr_in_notes"] >= 1
    assert set(written.records) == {"vaeksthus-midt", *JOBCENTRES, *VEU_CENTRES}
    assert all(count >= 20 for count in written.records.values())


def test_every_source_has_records_to_quarantine(demo: Scenario, demo_truth) -> None:
    bad = Counter(t.source_name for t in demo_truth.values() if t.quarantine)
    assert set(bad) == {"vaeksthus-midt", *JOBCENTRES, *VEU_CENTRES}
    assert all(count >= demo.min_bad_per_source for count in bad.values())
    assert all(t.company_key is None for t in demo_truth.values() if t.quarantine)


def test_bad_records_are_bad_in_the_documented_ways(demo: Scenario) -> None:
    kinds = set()
    for d in deliveries(demo):
        if not d.truth.quarantine:
            continue
        p = d.payload
        if d.kind == "crm":
            start, account = p["scheduledstart"], p["regardingobjectid_account"]
            if start == 12345:
                kinds.add("crm wrong type")
            elif not account["name"] and not account["cr_cvr"]:
                kinds.add("crm no company")
            else:
                assert start[5:10] in ("02-30", "02-31")
                kinds.add("crm impossible date")
        elif d.kind == "veu":
            if p["needs"] == "x":
                kinds.add("veu wrong type")
            elif p["company"]["name"] is None and p["company"]["cvr"] is None:
                kinds.add("veu no company")
            else:
                with pytest.raises(ValueError):
                    date.fromisoformat(p["date"])
                kinds.add("veu impossible date")
        else:
            if not p["Virksomhed"] and not p["CVR"]:
                kinds.add("csv no company")
            else:
                with pytest.raises(ValueError):
                    csv_date(p["Dato"])
                kinds.add("csv bad date")
    assert len(kinds) == 8


def test_joint_visits_appear_in_both_partners_sources(demo: Scenario) -> None:
    by_approach = defaultdict(list)
    for d in final_versions(demo):
        by_approach[d.truth.approach_key].append(d)
    joint = [ds for ds in by_approach.values() if any(d.truth.role == "joint" for d in ds)]
    assert len(joint) >= 10
    organisations = {n: o for n, o, _ in demo.sources()}
    for ds in joint:
        primary = next(d for d in ds if d.truth.role == "primary")
        partner = next(d for d in ds if d.truth.role == "joint")
        assert primary.source_name != partner.source_name
        assert abs((delivered_date(partner) - delivered_date(primary)).days) <= 1
        named = {joint_with(d) for d in (primary, partner)}
        assert organisations[partner.source_name] in named or (
            organisations[primary.source_name] in named
        )


def joint_with(d) -> str:
    p = d.payload
    if d.kind == "crm":
        return p["cr_jointwith"]
    if d.kind == "veu":
        return ";".join(p["joint_with"])
    return p["KoordineretMed"]


def test_double_entries_repeat_organisation_consultant_and_channel(demo: Scenario) -> None:
    by_approach = defaultdict(list)
    for d in final_versions(demo):
        if d.truth.role in ("primary", "double"):
            by_approach[d.truth.approach_key].append(d)
    doubles = [ds for ds in by_approach.values() if len(ds) == 2]
    assert doubles
    for first, second in doubles:
        assert first.source_name == second.source_name
        assert first.truth.source_id != second.truth.source_id
        assert identity(first)[1] == identity(second)[1]
        assert 0 <= (delivered_date(second) - delivered_date(first)).days <= 1


def test_uncoordinated_runs_fall_within_90_days(demo: Scenario) -> None:
    dates = defaultdict(list)
    for d in final_versions(demo):
        if d.truth.state == "active" and d.truth.role == "primary":
            dates[d.truth.company_key].append((delivered_date(d), d.source_name))
    crowded = 0
    for visits in dates.values():
        visits.sort()
        for (a, org_a), (b, org_b) in itertools.pairwise(visits):
            crowded += org_a != org_b and b - a <= timedelta(days=90)
    assert crowded >= 10


def test_notes_hold_planted_cpr_numbers_and_look_alikes(demo: Scenario) -> None:
    notes = []
    for d in deliveries(Scenario.quality()):
        note = {"crm": "description", "veu": "notes", "jobcenter": "Note"}[d.kind]
        notes.append(d.payload[note])
        if d.truth.cpr:
            assert d.truth.cpr in d.payload[note]
            assert stdnum_cpr.is_valid(d.truth.cpr)
    assert any(re.search(r"P-nr \d{10}", n) for n in notes)
    assert any(re.search(r"tlf \d{8}", n) for n in notes)


# --- scale --------------------------------------------------------------------------------------


def test_scale_preset_streams_without_building_everything() -> None:
    scenario = Scenario.scale()
    assert scenario.approaches == 2_000_000 and scenario.companies == 300_000
    stream = deliveries(scenario)
    assert inspect.isgenerator(stream)
    tracemalloc.start()
    try:
        first = list(itertools.islice(stream, 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(first) == 1000
    assert peak < 30 * 1024 * 1024  # all 2M approaches would need gigabytes
    assert {d.source_name for d in first} == {n for n, _, _ in scenario.sources()}


def test_moving_the_end_of_a_preset_keeps_its_span() -> None:
    moved = Scenario.demo(end=date(2027, 3, 31))
    assert moved.end - moved.start == Scenario.demo().end - Scenario.demo().start
    planned = [i for i in crm_appointments(moved) if i["statecode"] == 0]
    assert planned and all(i["scheduledstart"] > "2027-03-31" for i in planned)


def test_scenario_rejects_duplicate_source_names() -> None:
    with pytest.raises(ValueError):
        Scenario(jobcentres=(("veu-oestjylland", "Jobcenter X", "751"),))
