"""Removing citizens' CPR numbers from free text before it is stored or shown.

Notes from the sources sometimes hold CPR numbers (``DDMMYY-XXXX`` or ``DDMMYYXXXX``). A number
is treated as a CPR when it stands alone (not part of a longer run of digits) and its first six
digits are a real birth date (``stdnum.dk.cpr``, which reads the century from the 7th digit and
refuses birth dates in the future).

That test alone also hits some P-numbers (10 digits: "P-nr 1012341234" reads as 10/12/1934) and
phone numbers, so a number labelled as one of those just before it is left alone. A number
labelled as a CPR is removed even when its date is impossible (a mistyped CPR is still one).

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from stdnum.dk import cpr

MARKER = "[CPR fjernet]"

# Six digits, an optional separator (hyphen, en dash or one space), four digits; never part of a
# longer digit run.
CPR_CANDIDATE = re.compile(r"(?<![0-9])([0-9]{6})[-\u2013 ]?([0-9]{4})(?![0-9])")
# Where a candidate may start: its digits without the look-arounds. The leading look-behind
# makes the regex engine try every position of a text (about eight times slower than this,
# which skips to the next digit); every candidate starts where this matches.
_CPR_SHAPE = re.compile(r"[0-9]{6}[-\u2013 ]?[0-9]{4}")

# Between a label and its number: "CPR-nr.: ", "tlf. nr. ", "Telefonnummer ", "P-nr ".
_LABEL_GAP = r"[-.]?\s*(?:nr\.?|nummer)?\s*[:.#]?\s*"
# Labels that say "this number is not a CPR": P-number, CVR, phone. Matched at the end of the
# text before the number, so "P-nr.: 1012341234" and "tlf. 2112601234" are skipped.
NOT_CPR_LABEL = re.compile(
    r"\b(?:p-?nr|p-?nummer|produktionsenhed|cvr|cvr-?nr|se-?nr|tlf|telefon|tel|mobil|mob)"
    + _LABEL_GAP
    + r"$",
    re.IGNORECASE,
)
# Field names of identifiers that are not CPR numbers, in the sources' raw records
# ("PNummer", "cr_pnumber", "p_number", "cr_cvr", "KontaktpersonTelefon", "telephone1").
NOT_CPR_FIELD = re.compile(r"p_?(?:nr|num)|cvr|phone|telefon|tlf|mobil", re.IGNORECASE)
CPR_LABEL = re.compile(r"\b(?:cpr|personnummer|personnr)" + _LABEL_GAP + r"$", re.IGNORECASE)
_SHORTEST_CPR = 10  # "DDMMYYXXXX"
# How far back a label may start; labels are short, and this keeps the look-back cheap.
LABEL_WINDOW = 30


def redact_cpr(text: str | None) -> str | None:
    """``text`` with every CPR number replaced by :data:`MARKER`; None stays None. NUL
    characters are dropped first: storage drops them anyway, and a CPR number split by one
    ("010190\x00-1234") would otherwise pass here and become whole when it is stored."""
    if not text:
        return text
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not might_hold_cpr(text):
        return text
    return CPR_CANDIDATE.sub(lambda match: _replacement(text, match), text)


def might_hold_cpr(text: str) -> bool:
    """Whether ``text`` has a CPR-shaped number at all; most strings do not, and one search (or
    none, for strings too short to hold ten digits) spares them the substitution machinery."""
    if len(text) < _SHORTEST_CPR or _CPR_SHAPE.search(text) is None:
        return False
    return next(cpr_candidates(text), None) is not None


def cpr_candidates(text: str) -> Iterator[re.Match[str]]:
    """``CPR_CANDIDATE.finditer(text)``, the same matches, faster: the full pattern is tried
    only where the digits of one start (``CPR_CANDIDATE`` reads the text before a position,
    so matching from there sees what a search from the start would)."""
    position = 0
    while (shape := _CPR_SHAPE.search(text, position)) is not None:
        match = CPR_CANDIDATE.match(text, shape.start())
        if match is None:
            position = shape.start() + 1
        else:
            yield match
            position = match.end()


def redact_mapping(obj: Any) -> Any:
    """A copy of a JSON-like structure with :func:`redact_cpr` applied to every string value.

    Dictionary keys are kept as they are (they are field names, and rewriting them could make two
    keys collide); values of other types pass through unchanged. A key works as a label: a field
    named like a P-number, CVR or phone field (``PNummer``, ``cr_cvr``, ``KontaktpersonTelefon``)
    whose whole value is one number keeps it, as "P-nr 1012341234" does in free text.
    """
    kind = type(obj)  # exact types first: this runs for every value of every payload
    if kind is str:
        return redact_cpr(obj)
    if kind is dict:
        return {key: _redact_value(key, value) for key, value in obj.items()}
    if obj is None or kind is int or kind is bool:
        return obj
    if isinstance(obj, str):
        return redact_cpr(obj)
    if isinstance(obj, Mapping):
        return {key: _redact_value(key, value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [redact_mapping(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(redact_mapping(item) for item in obj)
    return obj


def _redact_value(key: Any, value: Any) -> Any:
    return redact_field(key, value) if isinstance(value, str) else redact_mapping(value)


def redact_field(key: Any, value: str) -> str:
    """The string ``value`` of the field named ``key`` as :func:`redact_mapping` leaves it."""
    redacted = redact_cpr(value)
    # The field name is read only when something was removed: that is rare.
    if redacted != value and _is_identifier_field(key) and CPR_CANDIDATE.fullmatch(value.strip()):
        return value
    return redacted


def _is_identifier_field(key: Any) -> bool:
    return isinstance(key, str) and NOT_CPR_FIELD.search(key) is not None


def _replacement(text: str, match: re.Match[str]) -> str:
    before = text[max(0, match.start() - LABEL_WINDOW) : match.start()]
    if CPR_LABEL.search(before):
        return MARKER
    if NOT_CPR_LABEL.search(before):
        return match.group(0)
    if cpr.is_valid(match.group(1) + match.group(2)):
        return MARKER
    return match.group(0)
