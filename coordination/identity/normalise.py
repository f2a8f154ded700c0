"""Normalisation of identifiers, names and contact details for matching.

Every function is pure and total: it accepts ``None`` or rubbish and answers ``None`` (for
identifiers that may be absent) or ``""`` (for names), never raises. The normalised forms are
comparison keys, not display values.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from stdnum.dk import cvr as stdnum_cvr

__all__ = [
    "LEGAL_FORMS",
    "clean_p_number",
    "fold_letters",
    "normalise_company_name",
    "normalise_email",
    "normalise_organisation_name",
    "normalise_person_name",
    "normalise_phone",
    "normalise_postcode",
    "valid_cvr",
]

# Legal forms as single tokens, i.e. after their dots and slashes are gone.
LEGAL_FORMS = frozenset({"as", "aps", "ivs", "is", "ks", "ps", "amba", "fmba", "smba"})

# Danish and neighbouring letters folded to the spelling used when the keyboard lacks them, so
# "Bøgh", "Bögh" and "Boegh" meet. Other accents (é, è, á ...) are dropped via NFKD below.
_LETTER_FOLDS = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "ä": "ae", "ö": "oe", "ü": "ue"})

# Legal forms written with "/" or ".", removed *before* punctuation becomes space: otherwise
# "A/S" would fall apart into the two harmless-looking tokens "a" and "s".
_PUNCTUATED_LEGAL_FORM = re.compile(
    r"(?<![0-9a-z])(?:[aikp]\s*/\s*s|[afs]\.\s*m\.\s*b\.\s*a\.?|a\.\s*p\.\s*s\.?)(?![0-9a-z])"
)
_APOSTROPHES = re.compile(r"['’`´]")
_NOT_WORD = re.compile(r"[\W_]+")
_NOT_DIGIT = re.compile(r"\D+")
_CVR_NOISE = re.compile(r"[\s.\-]+")
_WHITESPACE = re.compile(r"\s+")

_MIN_PHONE_DIGITS = 8  # a Danish subscriber number; shorter strings identify nobody


def fold_letters(text: str) -> str:
    """Casefold ``text`` and spell æ/ø/å (and ä/ö/ü) as ae/oe/aa; strip other accents."""
    folded = text.casefold().translate(_LETTER_FOLDS)
    if folded.isascii():  # most text: NFKD leaves ASCII as it is, and it has no accents
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def valid_cvr(raw: str | None) -> str | None:
    """The 8-digit CVR number in ``raw`` if it passes the modulus-11 check, else None.

    Spaces, dots, ``-`` and a leading ``DK`` are ignored: ``"DK-12 34 56 78"`` is read as
    ``"12345678"``. An invalid number is never returned: it must not be used as an identity.
    """
    return _valid_cvr(raw) if isinstance(raw, str) else None


@functools.lru_cache(maxsize=65536)  # the pipeline asks several times per record
def _valid_cvr(raw: str) -> str | None:
    digits = cvr_digits(raw)
    if digits is None or len(digits) != 8 or not _cvr_checks(digits):
        return None
    return digits


def _cvr_checks(digits: str) -> bool:
    """``stdnum.dk.cvr.is_valid`` for eight ASCII digits (no leading zero, stdnum's modulus-11
    checksum), without its clean-up and exceptions: most CVR numbers of a sync are seen once,
    and that machinery cost more than the rest of a record's identity keys (a test compares
    the two)."""
    return digits[0] != "0" and stdnum_cvr.checksum(digits) == 0


def cvr_digits(raw: str | None) -> str | None:
    """``raw`` with CVR formatting removed, if what remains is all digits (valid or not)."""
    if raw is None:
        return None
    if type(raw) is str and raw.isascii() and raw.isdigit():  # as most sources deliver it
        return raw
    compact = _CVR_NOISE.sub("", str(raw)).upper()
    compact = compact.removeprefix("DK")
    compact = _CVR_NOISE.sub("", compact)
    return compact if compact.isascii() and compact.isdigit() else None


def clean_p_number(raw: str | None) -> str | None:
    """The 10-digit P-number in ``raw`` (spaces, dots and ``-`` ignored), else None.

    P-numbers have no public check digit, so any 10 digits are accepted.
    """
    digits = cvr_digits(raw)
    return digits if digits is not None and len(digits) == 10 else None


def normalise_postcode(raw: str | None) -> str | None:
    """The postcode as a comparison key: ``" DK-8000 "`` → ``"8000"``; None when empty."""
    if raw is None:
        return None
    return _postcode_key(raw) if isinstance(raw, str) else _postcode_key(str(raw))


@functools.lru_cache(maxsize=16384)  # a few thousand postcodes, asked for per stored record
def _postcode_key(raw: str) -> str | None:
    compact = _WHITESPACE.sub("", raw).upper().removeprefix("DK-").removeprefix("DK")
    return compact or None


def normalise_company_name(name: str | None) -> str:
    """A company name as a matching key.

    Casefolded, æøå folded, ``&`` read as ``og``, punctuation turned into space, legal forms
    (A/S, ApS, IVS, I/S, K/S, P/S, AMBA, FMBA, SMBA in any spelling) removed wherever they stand,
    runs of single letters joined ("A.P. Møller" = "AP Møller") and whitespace collapsed.
    ``"Madsen & Bøgh ApS"`` and ``"MADSEN OG BOEGH APS"`` both give ``"madsen og boegh"``.
    A name that is nothing but a legal form gives ``""``.
    """
    if not name:
        return ""
    return _company_key(name)


# The sync asks for a company's key whenever its display name is derived again, and the resolver
# for every record: most spellings recur. About 5 MB when full.
@functools.lru_cache(maxsize=16384)
def _company_key(name: str) -> str:
    text = fold_letters(name)
    text = _PUNCTUATED_LEGAL_FORM.sub(" ", text)
    text = text.replace("&", " og ")
    tokens = _words(text)
    return " ".join(_join_single_letters([t for t in tokens if t not in LEGAL_FORMS]))


def normalise_organisation_name(name: str | None) -> str:
    """An organisation name (as named in joint-with fields) as a comparison key.

    Casefolded, æøå folded, ``&`` read as ``og``, punctuation to space, whitespace collapsed:
    ``"Erhvervshus Midtjylland"`` = ``"erhvervshus  MIDTJYLLAND."``.
    """
    return _organisation_key(name) if isinstance(name, str) and name else ""


# Organisation names are few (the partner organisations) and grouping asks for every pair of
# records and every approach, so one normalisation per distinct spelling is enough.
@functools.lru_cache(maxsize=4096)
def _organisation_key(name: str) -> str:
    return " ".join(_words(fold_letters(name).replace("&", " og ")))


def normalise_person_name(name: str | None) -> str:
    """A person's name as a comparison key; ``"Jensen, Anne-Mette"`` = ``"anne mette jensen"``.

    A single comma is read as "surname, given names" and turned around.
    """
    if not name:
        return ""
    text = fold_letters(name)
    if text.count(",") == 1:
        surname, given = text.split(",")
        text = f"{given} {surname}"
    return " ".join(_words(text))


def normalise_email(email: str | None) -> str | None:
    """The address trimmed and casefolded (``mailto:`` dropped); None unless it has an ``@``."""
    if not email:
        return None
    text = email.strip().casefold().removeprefix("mailto:").strip()
    local, at, domain = text.partition("@")
    # text.split() == [text]: no whitespace in it (str.split and str.isspace agree on what
    # whitespace is), tested in C rather than by a generator per character
    if not (at and local and domain) or text.split() != [text]:
        return None
    return text


def normalise_phone(phone: str | None) -> str | None:
    """The digits of a phone number without the Danish ``+45``/``0045`` prefix.

    ``"+45 86 12 34 56"`` → ``"86123456"``. None when fewer than 8 digits remain: such a number
    is a placeholder or an extension and must not tie two people together.
    """
    if not phone:
        return None
    digits = _NOT_DIGIT.sub("", phone)
    if digits.startswith("0045"):
        digits = digits[4:]
    elif digits.startswith("45") and len(digits) == 10:
        digits = digits[2:]
    return digits if len(digits) >= _MIN_PHONE_DIGITS else None


def _words(text: str) -> list[str]:
    return _NOT_WORD.sub(" ", _APOSTROPHES.sub("", text)).split()


def _join_single_letters(tokens: list[str]) -> list[str]:
    """Join runs of two or more one-character tokens: ["a", "p", "moeller"] → ["ap", "moeller"]."""
    joined: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1:
            run.append(token)
            continue
        if run:
            joined.append("".join(run))
            run = []
        if token:
            joined.append(token)
    return joined
