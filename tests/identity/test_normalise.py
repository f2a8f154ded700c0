"""Normalisation: identifiers, company names, organisations, people."""

import random
import unicodedata

import pytest
from stdnum.dk import cvr as stdnum_cvr

from coordination.identity import normalise
from coordination.identity.normalise import (
    clean_p_number,
    fold_letters,
    normalise_company_name,
    normalise_email,
    normalise_organisation_name,
    normalise_person_name,
    normalise_phone,
    normalise_postcode,
    valid_cvr,
)

VALID = "10150817"  # passes modulus 11: 2*1+7*0+6*1+5*5+4*0+3*8+2*1+1*7 = 66


@pytest.mark.parametrize(
    "raw", ["10150817", "10 15 08 17", "DK10150817", "DK-10150817", "dk 1015 0817", "10.15.08.17"]
)
def test_valid_cvr_ignores_spaces_dk_prefix_dashes_and_dots(raw):
    assert valid_cvr(raw) == VALID


def test_cvr_failing_modulus_11_is_not_valid():
    assert valid_cvr("10150818") is None


@pytest.mark.parametrize("raw", [None, "", "1015081", "101508170", "CVR ukendt", "00000000"])
def test_missing_short_long_or_non_numeric_cvr_is_not_valid(raw):
    assert valid_cvr(raw) is None


def test_valid_cvr_agrees_with_stdnum():
    """The modulus-11 check is written out; python-stdnum's ``dk.cvr`` decides the same for
    random eight-digit numbers (about one in eleven valid), with leading zeros, and formatted."""
    rnd = random.Random(11)
    numbers = [f"{rnd.randrange(10**8):08d}" for _ in range(30_000)]
    numbers += ["0" + n[1:] for n in numbers[:2_000]] + [
        f"DK-{n[:4]} {n[4:]}" for n in numbers[:2_000]
    ]
    for number in numbers:
        expected = stdnum_cvr.compact(number) if stdnum_cvr.is_valid(number) else None
        assert valid_cvr(number) == expected, number


def test_p_number_is_ten_digits_after_stripping_spaces():
    assert clean_p_number(" 1012 345 678 ") == "1012345678"


def test_p_number_with_wrong_length_is_dropped():
    assert clean_p_number("101234567") is None


def test_postcode_drops_country_prefix_and_spaces():
    assert normalise_postcode(" DK-8000 ") == "8000"


@pytest.mark.parametrize(
    "a, b",
    [
        ("Madsen & Bøgh ApS", "MADSEN OG BOEGH APS"),
        ("Ærø Tømrer Åbyhøj A/S", "AEROE TOEMRER AABYHOEJ AS"),
        ("Bögh Müller ApS", "Boegh Mueller"),
        ("Café Émile I/S", "cafe emile"),
        ("Brugsen A.M.B.A.", "Brugsen AMBA"),
        ("Andelsslagteriet F.M.B.A.", "andelsslagteriet"),
        ("Hansen aps.", "Hansen"),
        ("A.P. Møller - Mærsk A/S", "AP Moeller Maersk"),
        ("Jensen's Tømrerforretning", "Jensens Tømrerforretning"),
        ("  Hansen   VVS,  ", "hansen vvs"),
    ],
)
def test_company_name_variants_share_one_key(a, b):
    assert normalise_company_name(a) == normalise_company_name(b)


def test_legal_form_is_removed_wherever_it_stands():
    assert normalise_company_name("K/S Ejendom Vest") == "ejendom vest"
    assert normalise_company_name("Hansen ApS & Co") == "hansen og co"


def test_slash_legal_form_is_removed_before_punctuation_breaks_it_apart():
    assert normalise_company_name("Hansen A/S") == "hansen"
    assert normalise_company_name("Hansen A / S") == "hansen"


def test_legal_form_letters_inside_a_word_are_kept():
    assert normalise_company_name("Aps Kasse Ivsen") == "kasse ivsen"
    assert normalise_company_name("Kasper Isager") == "kasper isager"


def test_name_that_is_only_a_legal_form_gives_empty_key():
    assert normalise_company_name("A/S") == ""
    assert normalise_company_name(None) == ""


def test_organisation_names_compare_without_case_punctuation_or_aeoeaa():
    assert normalise_organisation_name("Erhvervshus Midtjylland") == normalise_organisation_name(
        " erhvervshus  MIDTJYLLAND. "
    )
    assert normalise_organisation_name("Jobcenter Århus") == "jobcenter aarhus"


def test_person_name_reads_surname_comma_given_names():
    assert normalise_person_name("Jensen, Anne-Mette") == normalise_person_name("Anne Mette Jensen")


def test_email_is_trimmed_and_casefolded():
    assert normalise_email(" Anne.Jensen@Firma.DK ") == "anne.jensen@firma.dk"


@pytest.mark.parametrize("raw", [None, "", "n/a", "anne@", "anne jensen@firma.dk"])
def test_email_without_a_usable_address_is_none(raw):
    assert normalise_email(raw) is None


@pytest.mark.parametrize("raw", ["+45 86 12 34 56", "0045 86123456", "86-12-34-56", "4586123456"])
def test_phone_is_digits_without_danish_prefix(raw):
    assert normalise_phone(raw) == "86123456"


def test_phone_too_short_to_identify_anybody_is_none():
    assert normalise_phone("112") is None


# The definitions fold_letters and normalise_email had before their fast paths (ASCII text
# returned without NFKD; the whitespace test made by str.split in C).
def _fold_letters_plainly(text: str) -> str:
    folded = text.casefold().translate(normalise._LETTER_FOLDS)
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _email_plainly(email: str | None) -> str | None:
    if not email:
        return None
    text = email.strip().casefold().removeprefix("mailto:").strip()
    local, at, domain = text.partition("@")
    if not (at and local and domain) or any(ch.isspace() for ch in text):
        return None
    return text


def test_fold_letters_and_email_agree_with_their_plain_definitions():
    # the code points of the first two planes (every whitespace and nearly every combining
    # character) and a sample of the others, alone and inside an address; then random mixes
    for code in [*range(0x20000), *range(0x20000, 0x110000, 97)]:
        ch = chr(code)
        assert fold_letters(ch) == _fold_letters_plainly(ch), hex(code)
        assert normalise_email(f"a@b{ch}c") == _email_plainly(f"a@b{ch}c"), hex(code)
    alphabet = "aB @.\t\u00a0\u2003\u0301é ÆøÅäöü\u200bmailto:_-\n\x1c\x1f\x85ﬁ①Ǆ"
    rng = random.Random(8)
    for _ in range(20_000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 14)))
        assert fold_letters(text) == _fold_letters_plainly(text), repr(text)
        assert normalise_email(text) == _email_plainly(text), repr(text)
