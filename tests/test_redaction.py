"""CPR redaction: planted CPR numbers go, look-alike P-numbers, phones and other numbers stay."""

from __future__ import annotations

import random

import pytest

from coordination.redaction import (
    CPR_CANDIDATE,
    MARKER,
    cpr_candidates,
    might_hold_cpr,
    redact_cpr,
    redact_mapping,
)

# Synthetic CPR numbers with real birth dates; the 7th digit picks the century.
CPRS = ["010190-1234", "0101901234", "211062-5629", "2110625629", "290204-4321", "010190 1234"]


@pytest.mark.parametrize("number", CPRS)
def test_planted_cpr_is_replaced_and_the_danish_text_kept(number: str) -> None:
    text = f"Borgeren Søren Ærø ({number}) var med på besøget; næste møde i år."
    assert redact_cpr(text) == f"Borgeren Søren Ærø ({MARKER}) var med på besøget; næste møde i år."


def test_several_cprs_in_one_note() -> None:
    text = "Åse 010190-1234 og Bjørn 2110625629.\nØvrige: ingen."
    assert redact_cpr(text) == f"Åse {MARKER} og Bjørn {MARKER}.\nØvrige: ingen."


def test_cpr_at_the_edges_of_the_text() -> None:
    assert redact_cpr("0101901234") == MARKER
    assert redact_cpr("cpr:0101901234") == f"cpr:{MARKER}"


@pytest.mark.parametrize(
    "text",
    [
        "P-nr 1012345678",  # reads as 10/12/2034: not born yet, never a CPR
        "P-nr 1012341234",  # reads as 10/12/1934: a valid date, kept only thanks to the label
        "P-nr. 1012341234",
        "p-nummer: 1012341234",
        "pnr 1012341234",
        "PNR:1012341234",
        "CVR 1012341234",
        "cvr-nr. 1012341234",
        "tlf 31124567",
        "tlf. 0101901234",
        "Telefon: 010190 1234",
        "tel 0101901234",
        "Mobil 0101901234",
        "tlf.nr. 0101901234",
    ],
)
def test_labelled_p_numbers_cvr_and_phones_are_untouched(text: str) -> None:
    assert redact_cpr(f"Kontakt på Ølstykke Værft, {text}, spørg efter Åse.") == (
        f"Kontakt på Ølstykke Værft, {text}, spørg efter Åse."
    )


@pytest.mark.parametrize("number", ["3102901234", "320190-1234", "011390-1234", "0000001234"])
def test_numbers_without_a_real_birth_date_are_untouched(number: str) -> None:
    assert redact_cpr(f"Sag {number} afsluttet") == f"Sag {number} afsluttet"


def test_birth_date_in_the_future_is_no_cpr() -> None:
    # 7th digit 5 with year 50 means 2050.
    assert redact_cpr("Ordre 0101505000") == "Ordre 0101505000"


@pytest.mark.parametrize(
    "text", ["12345601019012345", "0101901234567", "90101901234", "Konto 98760101901234"]
)
def test_numbers_inside_longer_digit_runs_are_untouched(text: str) -> None:
    assert redact_cpr(text) == text


def test_a_cpr_labelled_as_such_goes_even_with_an_impossible_date() -> None:
    assert redact_cpr("CPR-nr. 310290-1234 oplyst") == f"CPR-nr. {MARKER} oplyst"


def test_a_word_ending_in_a_label_is_no_label() -> None:
    # "Hotel" ends in "tel" but is not a phone label.
    assert redact_cpr("Hotel 0101901234") == f"Hotel {MARKER}"


def test_none_and_empty_pass_through() -> None:
    assert redact_cpr(None) is None
    assert redact_cpr("") == ""
    assert redact_cpr("Ingen tal her, kun æøå") == "Ingen tal her, kun æøå"


def test_redact_mapping_walks_nested_structures_and_returns_a_copy() -> None:
    raw = {
        "Note": "Borger 010190-1234 deltog",
        "count": 3,
        "flag": None,
        "nested": {"list": ["0101901234", {"deep": "x 2110625629"}, 7], "pair": ("0101901234", 1)},
        "0101901234": "key kept",
    }
    assert redact_mapping(raw) == {
        "Note": f"Borger {MARKER} deltog",
        "count": 3,
        "flag": None,
        "nested": {"list": [MARKER, {"deep": f"x {MARKER}"}, 7], "pair": (MARKER, 1)},
        "0101901234": "key kept",
    }
    assert raw["Note"] == "Borger 010190-1234 deltog"  # the input is not changed
    assert redact_mapping("0101901234") == MARKER
    assert redact_mapping(None) is None
    assert redact_mapping(42) == 42


@pytest.mark.parametrize(
    "key", ["PNummer", "cr_pnumber", "p_number", "CVR", "cr_cvr", "KontaktpersonTelefon", "phone"]
)
def test_redact_mapping_keeps_identifier_fields_that_look_like_a_cpr(key: str) -> None:
    assert redact_mapping({key: " 1012341234 "}) == {key: " 1012341234 "}
    # A CPR written into such a field among other text is still removed.
    assert redact_mapping({key: "ring 0101901234"}) == {key: f"ring {MARKER}"}


def test_redact_mapping_treats_other_fields_as_free_text() -> None:
    assert redact_mapping({"Note": "1012341234", "Virksomhed": "Bæk 0101901234"}) == {
        "Note": MARKER,
        "Virksomhed": f"Bæk {MARKER}",
    }


@pytest.mark.parametrize("text", ["010190\x00-1234", "0101\x0090\x001234", "cpr 010190-12\x0034"])
def test_a_cpr_split_by_nul_characters_is_still_found(text: str) -> None:
    assert redact_cpr(text).endswith(MARKER)
    assert "1234" not in redact_cpr(text)


def test_cpr_candidates_are_the_candidate_pattern_s_matches() -> None:
    """The fast scan finds what ``CPR_CANDIDATE.finditer`` finds, at the same places, also in
    digit runs, next to separators and at the edges (random texts of digits, separators and
    letters, and a few written out)."""
    rnd = random.Random(9)
    texts = ["", "0101901234", "x0101901234", "01019012345", "010190-1234-5678", "12345 67890 1"]
    texts += [
        "".join(rnd.choice("0123456789- \u2013ab") for _ in range(rnd.randint(0, 40)))
        for _ in range(20_000)
    ]
    for text in texts:
        expected = [(m.span(), m.groups()) for m in CPR_CANDIDATE.finditer(text)]
        assert [(m.span(), m.groups()) for m in cpr_candidates(text)] == expected, text
        assert might_hold_cpr(text) == (len(text) >= 10 and bool(expected)), text
