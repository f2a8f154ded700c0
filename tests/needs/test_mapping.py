"""Classifying each source's need vocabulary onto the shipped taxonomy."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import NeedRef
from coordination.needs.codelists import load_codelists
from coordination.needs.mapping import (
    FUZZY_THRESHOLD,
    MappingTableError,
    NeedMapper,
    SourceTable,
    load_source_tables,
)


@pytest.fixture(scope="module")
def codelists():
    return load_codelists()


@pytest.fixture(scope="module")
def mapper(codelists):
    return NeedMapper(codelists, load_source_tables())


def classify(mapper, need_type, label, code=None, kind="csv-drop", name="jobcenter-aarhus"):
    return mapper.classify(NeedRef(need_type, label, code), source_kind=kind, source_name=name)


def table(**data):
    return SourceTable.from_mapping(data, origin="test")


# --- per-source code tables -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("DIG", "komp:digitale-kompetencer"),
        ("LEAN", "komp:lean"),
        ("LED", "komp:ledelse"),
        ("GRØN", "komp:groen-omstilling"),
        ("AUT", "komp:automatisering-og-robotter"),
        ("EXP", "komp:eksport-og-salg"),
    ],
)
def test_every_crm_need_code_maps_through_the_crm_table(mapper, code, expected):
    found = classify(mapper, "upskilling", code, code, kind="odata-crm", name="vaeksthus-midt")
    assert (found.taxonomy_code, found.method, found.score) == (expected, "source-code", 1.0)


@pytest.mark.parametrize(
    ("code", "label", "expected"),
    [
        ("AMU-CNC", "CNC-bearbejdning", "komp:cnc"),
        ("AMU-IT", "It i arbejdet", "komp:digitale-kompetencer"),
        ("AMU-KRAN", "Kranfører", "komp:kran"),
        ("AMU-ROBOT", "Robotbetjening", "komp:automatisering-og-robotter"),
        ("AMU-SVEJS", "Svejsning", "komp:svejsning"),
        ("AMU-TRUCK", "Gaffeltruck certifikat", "komp:truck"),
        ("AMU-HYG", "Fødevarehygiejne", "komp:foedevarehygiejne"),
        ("FVU-LÆS", "Ordblindeundervisning og læsning", "komp:laesning-og-regning"),
        ("DSA", "Dansk som andetsprog", "komp:dansk-som-andetsprog"),
    ],
)
def test_every_veu_need_code_maps_through_the_veu_table(mapper, code, label, expected):
    found = classify(mapper, "upskilling", label, code, kind="rest-json", name="veu-oestjylland")
    assert (found.taxonomy_code, found.method) == (expected, "source-code")


@pytest.mark.parametrize(
    ("code", "label", "expected"),
    [
        ("AMU-CNC", "CNC-bearbejdning", "komp:cnc"),
        ("AMU-IT", "It i arbejdet", "komp:digitale-kompetencer"),
        ("AMU-KRAN", "Kranfører", "komp:kran"),
        ("AMU-ROBOT", "Robotbetjening", "komp:automatisering-og-robotter"),
        ("AMU-TRUCK", "Gaffeltruck certifikat", "komp:truck"),
        ("FVU-LÆS", "Ordblindeundervisning og læsning", "komp:laesning-og-regning"),
    ],
)
def test_veu_labels_map_on_their_own_when_the_code_is_unknown(mapper, code, label, expected):
    found = classify(mapper, "upskilling", label, "AMU-9999", kind="rest-json", name="veu-ny")
    assert found.taxonomy_code == expected


def test_a_code_table_applies_only_to_its_own_source_kind(mapper):
    found = classify(mapper, "upskilling", "Ukendt", "AUT", kind="rest-json", name="veu-ny")
    assert not found.is_classified


def test_code_matching_ignores_case_and_danish_spelling(mapper):
    found = classify(mapper, "upskilling", "groen", "groen", kind="odata-crm", name="crm")
    assert found.taxonomy_code == "komp:groen-omstilling"


def test_a_table_for_one_source_name_wins_over_the_table_for_its_kind(codelists):
    mapper = NeedMapper(
        codelists,
        [
            table(source={"kind": "odata-crm"}, codes={"AUT": "komp:automatisering-og-robotter"}),
            table(source={"name": "crm-vest"}, codes={"AUT": "komp:cnc"}),
        ],
    )
    vest = classify(mapper, "upskilling", "x", "AUT", kind="odata-crm", name="crm-vest")
    oest = classify(mapper, "upskilling", "x", "AUT", kind="odata-crm", name="crm-oest")
    assert vest.taxonomy_code == "komp:cnc"
    assert oest.taxonomy_code == "komp:automatisering-og-robotter"


def test_a_table_label_entry_maps_a_label_that_matching_cannot(codelists):
    mapper = NeedMapper(
        codelists,
        [table(source={"name": "jobcenter-herning"}, labels={"Kørsel med kran": "komp:kran"})],
    )
    found = classify(mapper, "upskilling", "kørsel med kran", name="jobcenter-herning")
    assert (found.taxonomy_code, found.method) == ("komp:kran", "source-label")


def test_a_table_entry_may_correct_the_need_type(codelists):
    entry = {"taxonomy": "disco:7115", "need_type": "apprentices"}
    mapper = NeedMapper(codelists, [table(source={"kind": "odata-crm"}, codes={"LÆR": entry})])
    found = classify(mapper, "upskilling", "Lærlinge", "LÆR", kind="odata-crm", name="crm")
    assert (found.taxonomy_code, found.need_type) == ("disco:7115", "apprentices")


# --- free-text upskilling labels (jobcentres' Kompetencebehov) --------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Svejsning", "komp:svejsning"),
        ("svejser", "komp:svejsning"),
        ("MIG/MAG", "komp:svejsning"),
        ("Truckcertifikat", "komp:truck"),
        ("Dansk som andetsprog", "komp:dansk-som-andetsprog"),
        ("lean", "komp:lean"),
        ("Robotter", "komp:automatisering-og-robotter"),
        ("PLC", "komp:automatisering-og-robotter"),
        ("Hygiejnebevis", "komp:foedevarehygiejne"),
        ("Ordblind", "komp:laesning-og-regning"),
        ("Lederuddannelse", "komp:ledelse"),
        ("Bæredygtighed", "komp:groen-omstilling"),
        ("Eksport", "komp:eksport-og-salg"),
        ("Kranfører", "komp:kran"),
        ("IT i arbejdet", "komp:digitale-kompetencer"),
    ],
)
def test_jobcenter_labels_match_exactly_after_folding(mapper, label, expected):
    found = classify(mapper, "upskilling", label)
    assert (found.taxonomy_code, found.method, found.score) == (expected, "exact", 1.0)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Fødevarehygiejnne", "komp:foedevarehygiejne"),
        ("Svejsnig", "komp:svejsning"),
        ("Truckcertfikat", "komp:truck"),
    ],
)
def test_a_misspelt_label_matches_fuzzily(mapper, label, expected):
    found = classify(mapper, "upskilling", label)
    assert (found.taxonomy_code, found.method) == (expected, "fuzzy")
    assert FUZZY_THRESHOLD / 100 <= found.score < 1.0


def test_a_longer_label_naming_one_area_matches_by_its_words(mapper):
    found = classify(mapper, "upskilling", "Kursus i TIG-svejsning")
    assert (found.taxonomy_code, found.method, found.score) == ("komp:svejsning", "contains", 0.5)


def test_a_label_naming_two_areas_stays_unclassified(mapper):
    assert not classify(mapper, "upskilling", "Lean og eksport").is_classified


@pytest.mark.parametrize("label", ["Blåbærsyltetøj til kantinen", "xyzzy", "---"])
def test_a_nonsense_label_stays_unclassified(mapper, label):
    found = classify(mapper, "upskilling", label)
    assert (found.taxonomy_code, found.need_type, found.method, found.score) == (
        None,
        "upskilling",
        "none",
        0.0,
    )


def test_retention_labels_match_competences(mapper):
    assert classify(mapper, "retention", "Arbejdsmiljø").taxonomy_code == "komp:arbejdsmiljoe"


# --- recruitment needs (jobcentres' Rekrutteringsbehov) ---------------------------------------


@pytest.mark.parametrize(
    ("label", "code", "expected", "method"),
    [
        ("7212", None, "disco:7212", "disco-code"),
        ("Svejsere", "7212", "disco:7212", "disco-code"),
        ("721210", None, "disco:7212", "disco-code"),
        ("7212 Svejsere og flammeskærere", None, "disco:7212", "disco-code"),
        ("svejser", None, "disco:7212", "exact"),
        ("Sosu-assistent", None, "disco:5321", "exact"),
        ("Social- og sundhedsassistent", None, "disco:5321", "exact"),
        ("Tømrere", None, "disco:7115", "exact"),
        ("VVS'er", None, "disco:7126", "exact"),
        ("Lagerarbjder", None, "disco:4321", "fuzzy"),
    ],
)
def test_recruitment_need_maps_to_an_occupation(mapper, label, code, expected, method):
    found = classify(mapper, "recruitment", label, code)
    assert (found.taxonomy_code, found.need_type, found.method) == (expected, "recruitment", method)


def test_a_disco_code_without_a_known_group_stays_unclassified(mapper):
    assert not classify(mapper, "recruitment", "1999").is_classified


def test_a_recruitment_label_is_not_matched_against_competences(mapper):
    assert not classify(mapper, "recruitment", "Dansk som andetsprog").is_classified


def test_an_apprentice_need_maps_to_its_occupation(mapper):
    found = classify(mapper, "apprentices", "Lærling som tømrer")
    assert (found.taxonomy_code, found.method) == ("disco:7115", "contains")


def test_a_classified_occupation_rolls_up_to_its_groups(mapper, codelists):
    found = classify(mapper, "recruitment", "Sosu-assistent")
    rollup = codelists.disco_groups(found.taxonomy_code)
    assert (rollup.major.code, rollup.sub_major.code) == ("5", "53")


def test_an_unknown_need_type_is_an_error(mapper):
    with pytest.raises(ValueError, match="need type"):
        classify(mapper, "wishes", "Svejsning")


# --- loading and checking tables --------------------------------------------------------------


def test_shipped_tables_cover_the_crm_and_veu_kinds():
    kinds = {t.kind for t in load_source_tables()}
    assert {"odata-crm", "rest-json"} <= kinds


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_table_naming_an_unknown_taxonomy_code_fails_with_file_and_key(codelists, tmp_path):
    path = _write(
        tmp_path, "crm.toml", '[source]\nkind = "odata-crm"\n[codes]\nXYZ = "komp:nope"\n'
    )
    with pytest.raises(MappingTableError) as raised:
        NeedMapper(codelists, load_source_tables(tmp_path))
    assert (raised.value.origin, raised.value.key) == (str(path), "codes.XYZ")


def test_two_tables_for_the_same_kind_fail(codelists, tmp_path):
    for name in ("a.toml", "b.toml"):
        _write(tmp_path, name, '[source]\nkind = "odata-crm"\n')
    with pytest.raises(MappingTableError, match="a.toml"):
        NeedMapper(codelists, load_source_tables(tmp_path))


def test_two_codes_that_fold_together_fail(codelists):
    codes = {"GRØN": "komp:groen-omstilling", "groen": "komp:lean"}
    with pytest.raises(MappingTableError, match="codes.groen"):
        NeedMapper(codelists, [table(source={"kind": "odata-crm"}, codes=codes)])


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({}, "source"),
        ({"source": {"kind": "odata-crm", "name": "crm"}}, "source"),
        ({"source": {"kind": "odata-crm"}, "codes": {"X": 3}}, "codes.X"),
        ({"source": {"kind": "odata-crm"}, "extra": {}}, "extra"),
    ],
)
def test_a_malformed_table_fails_naming_the_key(data, key):
    with pytest.raises(MappingTableError) as raised:
        SourceTable.from_mapping(data, origin="test.toml")
    assert raised.value.key == key


def test_a_missing_mappings_directory_means_no_tables(tmp_path):
    assert load_source_tables(tmp_path / "none") == ()
