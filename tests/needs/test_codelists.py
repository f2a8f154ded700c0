"""The shipped code lists: what they contain, how they roll up, and how bad data is reported."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from connectors.base import NEED_TYPES
from coordination.needs.codelists import (
    DEFAULT_CODELISTS_DIR,
    CodeListError,
    label_key,
    load_codelists,
)

REGION_MUNICIPALITIES = {
    "710": "Favrskov",
    "766": "Hedensted",
    "657": "Herning",
    "661": "Holstebro",
    "615": "Horsens",
    "756": "Ikast-Brande",
    "665": "Lemvig",
    "707": "Norddjurs",
    "727": "Odder",
    "730": "Randers",
    "760": "Ringkøbing-Skjern",
    "741": "Samsø",
    "740": "Silkeborg",
    "746": "Skanderborg",
    "779": "Skive",
    "671": "Struer",
    "706": "Syddjurs",
    "791": "Viborg",
    "751": "Aarhus",
}
OESTJYLLAND = {"615", "706", "707", "710", "727", "730", "740", "741", "746", "751", "766"}
VESTJYLLAND = {"657", "661", "665", "671", "756", "760", "779", "791"}
TODAY = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def codelists():
    return load_codelists()


@pytest.fixture
def codelists_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped code lists, to break or extend one file."""
    directory = tmp_path / "codelists"
    shutil.copytree(DEFAULT_CODELISTS_DIR, directory)
    return directory


# --- municipalities and postcodes -------------------------------------------------------------


def test_ships_the_19_municipalities_of_region_midtjylland(codelists):
    names = {code: m.name for code, m in codelists.municipalities.items()}
    assert names == REGION_MUNICIPALITIES


def test_every_shipped_postcode_maps_to_a_municipality_of_the_region(codelists):
    postcodes = [p for m in codelists.municipalities.values() for p in m.postcodes]
    assert len(postcodes) == len(set(postcodes)) > 19
    for postcode in postcodes:
        assert codelists.municipality_for_postcode(postcode).code in REGION_MUNICIPALITIES


def test_every_municipality_has_at_least_one_postcode(codelists):
    assert all(m.postcodes for m in codelists.municipalities.values())


@pytest.mark.parametrize(
    ("postcode", "municipality"),
    [
        ("8000", "Aarhus"),
        ("8270", "Aarhus"),
        ("8680", "Skanderborg"),
        ("8305", "Samsø"),
        ("8930", "Randers"),
        ("7620", "Lemvig"),
        ("7330", "Ikast-Brande"),
        ("6950", "Ringkøbing-Skjern"),
        ("8500", "Norddjurs"),
        ("8400", "Syddjurs"),
        ("8450", "Favrskov"),
        ("7160", "Hedensted"),
        (" 7400 ", "Herning"),
    ],
)
def test_postcode_finds_its_municipality(codelists, postcode, municipality):
    assert codelists.municipality_for_postcode(postcode).name == municipality


@pytest.mark.parametrize("postcode", ["2100", "5000", "", None, "DK-8000", "80000"])
def test_postcode_outside_the_region_or_malformed_finds_none(codelists, postcode):
    assert codelists.municipality_for_postcode(postcode) is None


def test_municipality_by_code(codelists):
    assert codelists.municipality("751").name == "Aarhus"
    with pytest.raises(KeyError):
        codelists.municipality("101")


# --- council areas ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("area_id", "expected"),
    [
        ("rar-oestjylland", OESTJYLLAND),
        ("rar-vestjylland", VESTJYLLAND),
        ("region-midtjylland", set(REGION_MUNICIPALITIES)),
    ],
)
def test_area_holds_the_municipalities_the_issue_names(codelists, area_id, expected):
    assert codelists.area_municipalities(area_id, TODAY) == expected


def test_region_is_the_union_of_the_two_rar_areas_which_do_not_overlap(codelists):
    east = codelists.area_municipalities("rar-oestjylland", TODAY)
    west = codelists.area_municipalities("rar-vestjylland", TODAY)
    assert not east & west
    assert east | west == codelists.area_municipalities("region-midtjylland", TODAY)


def test_areas_apply_from_2015(codelists):
    assert codelists.area("rar-oestjylland", dt.date(2015, 1, 1)).name == "RAR Østjylland"
    with pytest.raises(KeyError):
        codelists.area("rar-oestjylland", dt.date(2014, 12, 31))


def test_a_later_area_version_replaces_the_earlier_one_from_its_date(codelists_copy):
    with (codelists_copy / "areas.toml").open("a", encoding="utf-8") as f:
        f.write(
            '\n[[area]]\nid = "rar-vestjylland"\nname = "RAR Vestjylland"\n'
            'valid_from = 2027-01-01\nmunicipalities = ["657", "661"]\n'
        )
    codelists = load_codelists(codelists_copy)
    assert codelists.area_municipalities("rar-vestjylland", dt.date(2026, 12, 31)) == VESTJYLLAND
    assert codelists.area_municipalities("rar-vestjylland", dt.date(2027, 1, 1)) == {"657", "661"}


def test_unknown_area_is_a_key_error(codelists):
    with pytest.raises(KeyError):
        codelists.area_municipalities("rar-sydjylland", TODAY)


# --- industries -------------------------------------------------------------------------------


def test_db07_has_the_sections_a_to_s(codelists):
    assert set("ABCDEFGHIJKLMNOPQRS") <= set(codelists.industry_sections)


def test_ten_grouping_places_every_section_in_exactly_one_of_ten_groups(codelists):
    assert sorted(codelists.industry_groups, key=int) == [str(n) for n in range(1, 11)]
    placed = [s for g in codelists.industry_groups.values() for s in g.sections]
    assert sorted(placed) == sorted(codelists.industry_sections)


@pytest.mark.parametrize(
    ("section", "group"), [("A", "1"), ("C", "2"), ("F", "3"), ("G", "4"), ("I", "4"), ("Q", "9")]
)
def test_section_rolls_up_to_its_group(codelists, section, group):
    assert codelists.industry_group(section).code == group


@pytest.mark.parametrize(
    ("branch_code", "section"),
    [("251100", "C"), ("25.11.00", "C"), ("011100", "A"), ("471100", "G"), ("620100", "J")],
)
def test_branch_code_finds_its_section(codelists, branch_code, section):
    assert codelists.industry_section_for_branch_code(branch_code).code == section


@pytest.mark.parametrize("branch_code", ["", None, "4", "000000", "040000"])
def test_branch_code_outside_db07_finds_no_section(codelists, branch_code):
    assert codelists.industry_section_for_branch_code(branch_code) is None


# --- occupations ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["7212", "721210", "disco:7212"])
def test_disco_code_rolls_up_to_major_and_sub_major_group(codelists, code):
    rollup = codelists.disco_groups(code)
    assert (rollup.code, rollup.major.code, rollup.sub_major.code) == ("7212", "7", "72")
    assert rollup.major.label == "Håndværkspræget arbejde"


@pytest.mark.parametrize("code", ["72", "72121", "abcd", "1999", "", None])
def test_malformed_or_ungrouped_disco_code_rolls_up_to_nothing(codelists, code):
    assert codelists.disco_groups(code) is None


def test_every_occupation_title_rolls_up(codelists):
    assert len(codelists.occupations) >= 40
    for occupation in codelists.occupations:
        assert codelists.disco_groups(occupation.disco) is not None, occupation.title


def test_every_major_group_has_sub_major_groups(codelists):
    majors = {code[0] for code in codelists.disco_sub_major_groups}
    assert majors == set(codelists.disco_major_groups) == set("0123456789")


# --- competences, need types, taxonomy codes --------------------------------------------------


def test_ships_20_to_40_competence_areas_with_danish_and_english_labels(codelists):
    assert 20 <= len(codelists.competences) <= 40
    for competence in codelists.competences.values():
        assert competence.label_da and competence.label_en and competence.synonyms


def test_need_types_are_the_ones_connectors_deliver(codelists):
    assert set(codelists.need_types) == set(NEED_TYPES)
    assert codelists.need_type("upskilling").label_da == "Opkvalificering"


@pytest.mark.parametrize(
    ("taxonomy_code", "label"),
    [
        ("komp:svejsning", "Svejsning"),
        ("disco:7212", "svejser"),
        ("disco:7219", "Metal- og maskinarbejde"),
    ],
)
def test_taxonomy_code_has_a_danish_label(codelists, taxonomy_code, label):
    assert codelists.taxonomy_label(taxonomy_code) == label


@pytest.mark.parametrize("taxonomy_code", ["komp:nope", "disco:1999", "disco:721210", "svejsning"])
def test_unknown_taxonomy_code_is_rejected(codelists, taxonomy_code):
    assert not codelists.is_taxonomy_code(taxonomy_code)
    with pytest.raises(KeyError):
        codelists.taxonomy_label(taxonomy_code)


def test_label_key_folds_case_danish_letters_and_punctuation():
    assert label_key("Gaffeltruck-certifikat") == label_key("gaffeltruck certifikat")
    assert label_key("GRØN") == label_key("groen")
    assert label_key("vvs'er") == "vvser"
    assert label_key("MIG/MAG") == "migmag"


# --- loading ----------------------------------------------------------------------------------


def test_lists_are_loaded_once_per_directory(codelists):
    assert load_codelists() is codelists
    assert load_codelists(str(DEFAULT_CODELISTS_DIR)) is codelists


def _break(directory: Path, file: str, old: str, new: str) -> None:
    path = directory / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "key"),
    [
        ("municipalities.toml", "[municipality.615]", "[municipality.61]", "municipality.61"),
        ("municipalities.toml", '8732 = "Hovedgård"', '8000 = "Aarhus"', "postcodes.8000"),
        ("areas.toml", '"615", "706"', '"615", "999"', "area[0].municipalities"),
        ("areas.toml", "valid_from = 2015-01-01", 'valid_from = "2015"', "area[0].valid_from"),
        ("industries.toml", 'sections = ["M", "N"]', 'sections = ["M"]', "group"),
        ("occupations.toml", 'disco = "7212"', 'disco = "1912"', ".disco"),
        ("occupations.toml", '"svejsere",', '"smed",', "occupation["),
        ("competences.toml", '"svejse",', '"truck",', "competence[1]"),
        ("competences.toml", 'label_en = "Welding"\n', "", "competence[0].label_en"),
        ("need_types.toml", "[need_type.retention]", "[need_type.fastholdelse]", "need_type"),
    ],
)
def test_bad_data_fails_naming_the_file_and_key(codelists_copy, file, old, new, key):
    _break(codelists_copy, file, old, new)
    with pytest.raises(CodeListError) as raised:
        load_codelists(codelists_copy)
    assert raised.value.origin == codelists_copy.resolve() / file
    assert key in raised.value.key
    assert file in str(raised.value)


def test_missing_file_fails_naming_it(codelists_copy):
    (codelists_copy / "industries.toml").unlink()
    with pytest.raises(CodeListError, match="industries.toml.*missing"):
        load_codelists(codelists_copy)


def test_invalid_toml_fails_naming_the_file(codelists_copy):
    _break(codelists_copy, "competences.toml", "[[competence]]", "[[competence")
    with pytest.raises(CodeListError, match="competences.toml"):
        load_codelists(codelists_copy)
