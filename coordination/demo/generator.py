"""Deterministic synthetic deliveries for Region Midtjylland, with known truth.

One generator feeds three users: ``coordination demo`` (:meth:`Scenario.demo`), the
identity-quality benchmark (:meth:`Scenario.quality`: heavy noise, every record labelled) and the
scale benchmark (:meth:`Scenario.scale`: millions of approaches).

The same scenario always gives the same deliveries, byte for byte. Everything is lazy: approaches
are generated day by day and rendered one at a time, and a company is computed from its index on
demand, so the first records of a two-million-approach scenario arrive at once and memory stays
flat. Typical use::

    sc = Scenario.demo()
    for appointment in crm_appointments(sc): ...            # OData appointment objects
    for item in veu_items(sc, "veu-oestjylland"): ...        # VEU API items
    write_jobcenter_csvs(sc, folder, "jobcenter-aarhus")     # a full export and a delta file
    labels = truth_map(sc)                                   # (source, id) -> TruthRecord

:func:`deliveries` is the single pass that all of these filter; use it directly to get every
source's payloads together with their truth. The truth never appears in a payload.
"""

from __future__ import annotations

import csv
import heapq
import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache, partial
from itertools import accumulate
from pathlib import Path
from random import Random
from typing import Any, NamedTuple, TextIO

# --- reference tables ---------------------------------------------------------------------------

# Municipality code -> (name, RAR area, population in thousands, real postcodes and towns).
MUNICIPALITIES: dict[str, tuple[str, str, int, tuple[tuple[str, str], ...]]] = {
    "751": ("Aarhus", "rar-oestjylland", 367, (("8000", "Aarhus C"), ("8200", "Aarhus N"),
        ("8210", "Aarhus V"), ("8220", "Brabrand"), ("8230", "Åbyhøj"), ("8240", "Risskov"),
        ("8250", "Egå"), ("8260", "Viby J"), ("8270", "Højbjerg"), ("8310", "Tranbjerg J"),
        ("8320", "Mårslet"), ("8361", "Hasselager"), ("8381", "Tilst"), ("8520", "Lystrup"),)),
    "710": ("Favrskov", "rar-oestjylland", 49, (("8370", "Hadsten"), ("8382", "Hinnerup"),)),
    "766": ("Hedensted", "rar-oestjylland", 47, (("8722", "Hedensted"), ("7130", "Juelsminde"),)),
    "615": ("Horsens", "rar-oestjylland", 97, (("8700", "Horsens"), ("8740", "Brædstrup"),)),
    "707": ("Norddjurs", "rar-oestjylland", 37, (("8500", "Grenaa"), ("8963", "Auning"),)),
    "727": ("Odder", "rar-oestjylland", 23, (("8300", "Odder"), ("8350", "Hundslund"),)),
    "730": ("Randers", "rar-oestjylland", 100, (("8900", "Randers C"), ("8920", "Randers NV"),
        ("8930", "Randers NØ"), ("8940", "Randers SV"), ("8960", "Randers SØ"),
        ("8870", "Langå"),)),
    "741": ("Samsø", "rar-oestjylland", 4, (("8305", "Samsø"),)),
    "740": ("Silkeborg", "rar-oestjylland", 100, (("8600", "Silkeborg"), ("8620", "Kjellerup"),
        ("8653", "Them"), ("8654", "Bryrup"),)),
    "746": ("Skanderborg", "rar-oestjylland", 64, (("8660", "Skanderborg"), ("8680", "Ry"),
        ("8464", "Galten"), ("8362", "Hørning"),)),
    "706": ("Syddjurs", "rar-oestjylland", 43, (("8400", "Ebeltoft"), ("8410", "Rønde"),
        ("8550", "Ryomgård"), ("8560", "Kolind"),)),
    "657": ("Herning", "rar-vestjylland", 90, (("7400", "Herning"), ("7451", "Sunds"),
        ("7480", "Vildbjerg"), ("7490", "Aulum"),)),
    "661": ("Holstebro", "rar-vestjylland", 59, (("7500", "Holstebro"), ("7830", "Vinderup"),)),
    "756": ("Ikast-Brande", "rar-vestjylland", 42, (("7430", "Ikast"), ("7330", "Brande"),
        ("7441", "Bording"), ("7361", "Ejstrupholm"),)),
    "665": ("Lemvig", "rar-vestjylland", 19, (("7620", "Lemvig"), ("7680", "Thyborøn"),)),
    "760": ("Ringkøbing-Skjern", "rar-vestjylland", 56, (("6950", "Ringkøbing"),
        ("6900", "Skjern"), ("6960", "Hvide Sande"), ("6880", "Tarm"),)),
    "779": ("Skive", "rar-vestjylland", 46, (("7800", "Skive"), ("7870", "Roslev"),)),
    "671": ("Struer", "rar-vestjylland", 21, (("7600", "Struer"), ("7560", "Hjerm"),)),
    "791": ("Viborg", "rar-vestjylland", 97, (("8800", "Viborg"), ("8850", "Bjerringbro"),
        ("8830", "Tjele"), ("7470", "Karup J"),)),
}  # fmt: skip

# Postcode -> (town, municipality code), for callers that need the lookup.
POSTCODES: dict[str, tuple[str, str]] = {
    postcode: (town, code)
    for code, (_, _, _, places) in MUNICIPALITIES.items()
    for postcode, town in places
}

SURNAMES = (
    "Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen", "Sørensen",
    "Rasmussen", "Jørgensen", "Petersen", "Madsen", "Kristensen", "Olsen", "Thomsen", "Poulsen",
    "Johansen", "Møller", "Mortensen", "Knudsen", "Jakobsen", "Mikkelsen", "Olesen", "Frederiksen",
    "Laursen", "Henriksen", "Lund", "Holm", "Schmidt", "Eriksen", "Clausen", "Simonsen",
    "Svendsen", "Andreasen", "Iversen", "Østergaard", "Jeppesen", "Vestergaard", "Nissen",
    "Lauridsen", "Kjær", "Jespersen", "Mogensen", "Skov", "Bøgh", "Dahl", "Friis", "Søgaard",
    "Brøndum", "Bækgaard", "Aagaard", "Skovgaard", "Kjærgaard", "Bech", "Høj", "Krogh", "Lassen",
    "Damgaard", "Overgaard", "Thygesen", "Bang", "Juhl", "Nørgaard", "Toft", "Bruun", "Ravn",
)  # fmt: skip
FIRST_NAMES = (
    "Anne", "Mette", "Hanne", "Kirsten", "Susanne", "Lene", "Birgitte", "Camilla", "Louise",
    "Maria", "Signe", "Julie", "Ida", "Sofie", "Trine", "Helle", "Lone", "Pia", "Rikke", "Dorte",
    "Åse", "Jørgen", "Søren", "Peter", "Jens", "Lars", "Michael", "Henrik", "Thomas", "Niels",
    "Anders", "Morten", "Martin", "Rasmus", "Jesper", "Mads", "Frederik", "Ole", "Bjørn", "Kasper",
    "Christian", "Jakob", "Mikkel", "Poul", "Torben", "Steen", "Bo", "Brian", "Kåre", "Ebbe",
)  # fmt: skip
PLACES = (
    "Østjysk", "Vestjysk", "Midtjysk", "Nordisk", "Jysk", "Djurs", "Kattegat", "Limfjords",
    "Søhøjlandets", "Gudenå", "Mols", "Herning", "Silkeborg", "Aarhus", "Randers", "Viborg",
    "Skive", "Holstebro", "Horsens", "Salling", "Fjord", "Hede", "Kyst", "Ådal",
)  # fmt: skip
# Trade word -> DB07 industry section (the company's industry in the truth).
TRADES = (
    ("Tømrer", "F"), ("Tømrer og Snedker", "F"), ("VVS", "F"), ("El-service", "F"),
    ("Elektro", "F"), ("Murer", "F"), ("Maler", "F"), ("Byg", "F"), ("Entreprise", "F"),
    ("Smedie", "C"), ("Maskinfabrik", "C"), ("Stål", "C"), ("Robotteknik", "C"), ("Plast", "C"),
    ("Emballage", "C"), ("Møbler", "C"), ("Tekstil", "C"), ("Fødevarer", "C"), ("Bageri", "C"),
    ("Metal", "C"), ("Automation", "C"), ("Beton", "C"), ("Transport", "H"), ("Logistik", "H"),
    ("Vognmænd", "H"), ("Software", "J"), ("IT", "J"), ("Data", "J"), ("Rengøring", "N"),
    ("Facility", "N"), ("Gartneri", "A"), ("Planteskole", "A"), ("Design", "M"),
    ("Rådgivning", "M"), ("Revision", "M"), ("Auto", "G"), ("Engros", "G"), ("Trælast", "G"),
    ("Kro", "I"), ("Catering", "I"), ("Energi", "D"), ("Fysioterapi", "Q"), ("Tandklinik", "Q"),
)  # fmt: skip
OWNER_TRADES = (
    ("Tømrerforretning", "F"), ("Maskinfabrik", "C"), ("Vognmandsforretning", "H"),
    ("Malerfirma", "F"), ("Bageri", "C"), ("Autoværksted", "G"), ("El-forretning", "F"),
    ("Murerfirma", "F"), ("Smedie", "C"), ("Planteskole", "A"),
)  # fmt: skip
GROUP_SUFFIXES = ("Gruppen", "Holding", "& Søn", "& Co.", "Invest", "Partnere")
# Legal forms in rough proportion; "" is a sole proprietorship that writes none.
LEGAL_FORMS = (
    ("ApS",) * 40 + ("A/S",) * 14 + ("",) * 16 + ("I/S",) * 6 + ("P/S",) * 6 + ("K/S",) * 4
    + ("IVS",) * 6 + ("AMBA",) * 4 + ("SMBA",) * 2 + ("FMBA",) * 2
)  # fmt: skip
FORM_VARIANTS = {
    "A/S": "AS", "ApS": "APS", "P/S": "PS", "I/S": "IS", "K/S": "KS", "IVS": "I.V.S.",
    "AMBA": "A.m.b.a.", "SMBA": "S.m.b.a.", "FMBA": "F.m.b.a.",
}  # fmt: skip
STREETS = (
    "Industrivej", "Håndværkervej", "Erhvervsvej", "Fabriksvej", "Søndergade", "Vestergade",
    "Østergade", "Nørregade", "Hovedgaden", "Stationsvej", "Skovvej", "Bakkevej", "Engvej",
    "Møllevej", "Kirkevej", "Birkevej", "Egevej", "Lærkevej", "Jernbanegade", "Havnegade",
    "Strandvej", "Smedevej", "Tømrervej", "Mekanikervej", "Bøgevej", "Kornmarken", "Vænget",
    "Ågade", "Grønnegade", "Tværvej",
)  # fmt: skip

CHANNELS = ("visit", "phone", "meeting", "email", "online")
CRM_CHANNELS = ("besoeg", "telefon", "moede", "email", "virtuelt")
CSV_CHANNELS = ("Besøg", "Telefon", "Møde", "E-mail", "Virtuelt")
# Hand-keyed spellings a jobcenter export really contains (sources.md, section 2).
CSV_CHANNEL_VARIANTS = (
    ("besoeg", "BESØG", "besøg"),
    ("telefon", "TELEFON"),
    ("moede", "møde"),
    ("mail", "e-mail", "Email"),
    ("virtuelt", "VIRTUELT"),
)
# Channel shares per organisation kind, as 20 equally likely slots.
_CHANNEL_SLOTS = {
    "crm": (0,) * 10 + (1,) * 5 + (2,) * 3 + (3,) * 1 + (4,) * 1,
    "jobcenter": (0,) * 9 + (1,) * 7 + (2,) * 2 + (3,) * 1 + (4,) * 1,
    "veu": (0,) * 10 + (1,) * 4 + (2,) * 3 + (3,) * 1 + (4,) * 2,
}
PURPOSES = {
    "crm": ("Vækstsparring",) * 4
    + ("Eksportrådgivning", "Eksportrådgivning", "Digitalisering", "Digitalisering")
    + ("Grøn omstilling", "Opfølgning", "Rekruttering", "Opkvalificering af medarbejdere"),
    "jobcenter": ("Rekruttering",) * 5
    + ("Virksomhedspraktik",) * 3
    + ("Løntilskud", "Løntilskud", "Fastholdelse", "Fastholdelse", "Jobrotation", "Opfølgning"),
    "veu": ("Efteruddannelse",) * 5
    + ("Opkvalificering af medarbejdere",) * 4
    + ("Jobrotation", "Opfølgning", "Opfølgning", "Vækstsparring"),
}


class Theme(NamedTuple):
    """One competence need, as each vocabulary writes it (None: that system cannot say it)."""

    type: str  # "upskilling" | "recruitment"
    crm_code: str | None
    veu_code: str | None
    veu_label: str | None
    labels: tuple[str, ...]  # jobcenter free-text labels (spellings vary) or occupation titles
    disco: str | None  # DISCO-08 code of a recruitment need


THEMES = (
    Theme("upskilling", "DIG", "AMU-IT", "It i arbejdet", ("Digitale kompetencer", "IT"), None),
    Theme("upskilling", "LEAN", "AMU-LEAN", "Lean og procesoptimering", ("Lean",), None),
    Theme("upskilling", "LED", "AMU-LED", "Ledelse", ("Ledelse", "Ledertræning"), None),
    Theme("upskilling", "GRØN", "AMU-GRØN", "Grøn omstilling", ("Grøn omstilling",), None),
    Theme("upskilling", "AUT", "AMU-ROBOT", "Robotbetjening", ("Robotbetjening",), None),
    Theme("upskilling", "EXP", None, None, ("Eksport", "Eksportforståelse"), None),
    Theme("upskilling", None, "AMU-CNC", "CNC-bearbejdning", ("CNC", "CNC-bearbejdning"), None),
    Theme("upskilling", None, "AMU-SVEJS", "Svejsning", ("Svejsning", "svejsecertifikat"), None),
    Theme("upskilling", None, "AMU-TRUCK", "Gaffeltruck certifikat", ("Truckcertifikat",), None),
    Theme("upskilling", None, "AMU-KRAN", "Kranfører", ("Kranførerbevis", "Kran"), None),
    Theme("upskilling", None, "AMU-HYG", "Fødevarehygiejne", ("Hygiejnebevis",), None),
    Theme("upskilling", None, "DSA", "Dansk som andetsprog", ("Dansk som andetsprog",), None),
    Theme("upskilling", None, "FVU-LÆS", "Ordblindeundervisning og læsning", ("Læsning",), None),
    Theme("upskilling", None, None, None, ("Kundeservice", "Excel", "Bæredygtig emballage"), None),
    Theme("recruitment", None, None, None, ("Svejser",), "7212"),
    Theme("recruitment", None, None, None, ("Truckfører",), "8344"),
    Theme("recruitment", None, None, None, ("Tømrer",), "7115"),
    Theme("recruitment", None, None, None, ("Elektriker",), "7411"),
    Theme("recruitment", None, None, None, ("VVS-montør",), "7126"),
    Theme("recruitment", None, None, None, ("Kok",), "5120"),
    Theme("recruitment", None, None, None, ("Procesoperatør",), "8160"),
    Theme("recruitment", None, None, None, ("Lagermedarbejder",), "4321"),
    Theme("recruitment", None, None, None, ("Softwareudvikler",), "2512"),
    Theme("recruitment", None, None, None, ("Lastbilchauffør",), "8332"),
    Theme("recruitment", None, None, None, ("CNC-operatør",), "7223"),
    Theme("recruitment", None, None, None, ("Social- og sundhedshjælper",), "5322"),
)
# Which needs each kind of organisation tends to note (theme indices, repeats weigh).
_THEME_POOLS = {
    "crm": (0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 13),
    "jobcenter": (7, 8, 9, 10, 11, 12, 13) + tuple(range(14, 26)) * 2,
    "veu": (0, 1, 2, 3, 4, 6, 6, 7, 7, 8, 8, 9, 10, 11, 12, 13, 14, 15),
}
NOTES = (
    "God dialog.",
    "Ønsker tilbud på kurser.",
    "Ring igen efter sommerferien.",
    "Mangler svejsere og truckførere.",
    "Ny produktionshal i 2026; skal bruge flere operatører.",
    "Direktøren var positiv. Sender materiale.",
    'Kunden sagde: "ring i maj".',
    "Interesseret i jobrotation og AMU-kurser.",
    "Har svært ved at rekruttere faglærte.",
    "Aftalt opfølgning om 3 måneder.",
    "Besøg gennemført.\r\nOpfølgning efter nytår.",
    "Drøftede fastholdelse af ældre medarbejdere.",
    "Ingen aktuelle behov.",
    "Vil gerne have besøg af VEU-konsulent.",
    "Ønsker hjælp til grøn omstilling og energibesparelser.",
)

CSV_COLUMNS = (
    "KontaktID", "Dato", "CVR", "PNummer", "Virksomhed", "Adresse", "Postnr", "By",
    "Kontaktform", "Formål", "Kontaktperson", "KontaktpersonEmail", "KontaktpersonTelefon",
    "Medarbejder", "MedarbejderEmail", "Rekrutteringsbehov", "Kompetencebehov", "KoordineretMed",
    "Status", "Note",
)  # fmt: skip
# The delta export writes the same columns in another order, as the samples do.
CSV_DELTA_COLUMNS = tuple(reversed(CSV_COLUMNS))

DEMO_CRM = ("vaeksthus-midt", "Væksthus Midtjylland")
DEMO_JOBCENTRES = (
    ("jobcenter-aarhus", "Jobcenter Aarhus", "751"),
    ("jobcenter-herning", "Jobcenter Herning", "657"),
    ("jobcenter-randers", "Jobcenter Randers", "730"),
)
DEMO_VEU_CENTRES = (
    ("veu-oestjylland", "VEU-center Østjylland", "rar-oestjylland"),
    ("veu-vestjylland", "VEU-center Vestjylland", "rar-vestjylland"),
)

# Record states in the truth.
ACTIVE, PLANNED, CANCELLED, DELETED, BAD = "active", "planned", "cancelled", "deleted", "bad"

_MASK64 = (1 << 64) - 1
MAX_COMPANIES = 1_000_000
_CVR_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)
# Multipliers coprime with the ranges they permute (9e6, 9e9), so indices map to distinct numbers.
_CVR_MULT = 7_654_321
_PNR_MULT = 7_777_777_777
_VEU_ID_MULT = 4_999_999
_FOLD = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa"})


# --- scenario -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What to generate. Equal scenarios give identical deliveries.

    ``approaches`` counts true approaches (contact events); joint visits and double entries add
    records on top, and bad records (to be quarantined) come on top of those. Rates are
    probabilities per approach (``joint_rate``, ``double_rate``, ``episode_rate``,
    ``cancel_rate``, ``planned_rate``) or per record (``noise``, ``delete_rate``, ``bad_rate``).
    ``noise`` drives the identity noise: missing, mistyped or formatted CVR numbers and name
    variants. ``jobcentres`` are ``(source name, organisation, municipality code)``;
    ``veu_centres`` are ``(source name, organisation, RAR area)``; each serves companies in its
    area, the CRM serves the whole region.
    """

    seed: int = 2014
    companies: int = 60
    approaches: int = 300
    start: date = date(2025, 9, 1)
    end: date = date(2026, 8, 31)
    noise: float = 0.15
    crm: tuple[str, str] | None = DEMO_CRM
    jobcentres: tuple[tuple[str, str, str], ...] = DEMO_JOBCENTRES
    veu_centres: tuple[tuple[str, str, str], ...] = DEMO_VEU_CENTRES
    windows1252_sources: tuple[str, ...] = ("jobcenter-herning",)
    joint_rate: float = 0.12
    double_rate: float = 0.03
    episode_rate: float = 0.08
    cancel_rate: float = 0.03
    planned_rate: float = 0.03
    delete_rate: float = 0.02
    bad_rate: float = 0.01
    min_bad_per_source: int = 2
    csv_update_rate: float = 0.1
    pii_rate: float = 0.03
    popularity_skew: float = 1.6

    def __post_init__(self) -> None:
        if not 1 <= self.companies <= MAX_COMPANIES:
            raise ValueError(f"companies must be between 1 and {MAX_COMPANIES}")
        if self.approaches < 1:
            raise ValueError("approaches must be at least 1")
        if self.end < self.start:
            raise ValueError("end is before start")
        names = [s[0] for s in self.sources()]
        if not names:
            raise ValueError("a scenario needs at least one source")
        if len(set(names)) != len(names):
            raise ValueError("source names must be unique")

    @classmethod
    def demo(cls, **overrides: Any) -> Scenario:
        """The demo: 80 companies, 400 approaches over a year, six sources, light noise.

        Dates are fixed so that the demo is reproducible; ``Scenario.demo(end=date.today())``
        moves the whole year (planned CRM appointments then lie in the coming weeks).
        """
        base = cls(companies=80, approaches=400, bad_rate=0.005, min_bad_per_source=3)
        return base._with(overrides)

    @classmethod
    def quality(cls, **overrides: Any) -> Scenario:
        """The identity benchmark: about 5,000 records over 1,500 companies, heavy noise."""
        base = cls(
            companies=1500,
            approaches=4000,
            noise=0.35,
            joint_rate=0.15,
            double_rate=0.05,
            episode_rate=0.1,
            bad_rate=0.004,
        )
        return base._with(overrides)

    @classmethod
    def scale(
        cls, approaches: int = 2_000_000, companies: int = 300_000, **overrides: Any
    ) -> Scenario:
        """The scale benchmark: two years of deliveries, streamed."""
        base = cls(
            companies=companies,
            approaches=approaches,
            start=date(2024, 9, 1),
            end=date(2026, 8, 31),
            bad_rate=0.001,
        )
        return base._with(overrides)

    def _with(self, overrides: dict[str, Any]) -> Scenario:
        # Moving only the end (e.g. end=date.today() for a live-looking demo) keeps the span.
        if "end" in overrides and "start" not in overrides:
            overrides = {**overrides, "start": overrides["end"] - (self.end - self.start)}
        return replace(self, **overrides)

    def sources(self) -> list[tuple[str, str, str]]:
        """``(source name, organisation, kind)`` for every source; kind: crm, jobcenter or veu."""
        out = [(self.crm[0], self.crm[1], "crm")] if self.crm else []
        out += [(name, org, "jobcenter") for name, org, _ in self.jobcentres]
        out += [(name, org, "veu") for name, org, _ in self.veu_centres]
        return out


# --- companies ----------------------------------------------------------------------------------


class ProductionUnit(NamedTuple):
    """A workplace (P-unit) of a company. ``account_id`` is the CRM account for it."""

    p_number: str
    street: str
    postcode: str
    city: str
    municipality_code: str
    account_id: str


class ContactPerson(NamedTuple):
    """A person at the company whom consultants talk to."""

    name: str
    email: str
    phone: str


class Company(NamedTuple):
    """A true company. ``key`` is what the truth calls it; ``units[0]`` is the head office."""

    key: str
    index: int
    cvr: str
    name: str
    base_name: str
    legal_form: str
    industry: str
    units: tuple[ProductionUnit, ...]
    contacts: tuple[ContactPerson, ...]


_new_company = partial(tuple.__new__, Company)
_new_unit = partial(tuple.__new__, ProductionUnit)
_new_contact = partial(tuple.__new__, ContactPerson)


def cvr_check_digit(first7: str) -> int | None:
    """The modulus-11 check digit for seven CVR digits, or None when no digit makes it valid."""
    if len(first7) != 7 or not first7.isdigit():
        raise ValueError(f"not seven digits: {first7!r}")
    number = int(first7)
    digit = -(_HEAD_SUMS[number // 10_000] + _TAIL_SUMS[number % 10_000]) % 11
    return None if digit == 10 else digit


def _weighted_sums(weights: tuple[int, ...]) -> list[int]:
    """Weighted digit sums of every number with len(weights) digits, for a fast check digit."""
    size = len(weights)
    sums = []
    for n in range(10**size):
        sums.append(sum(int(c) * w for c, w in zip(f"{n:0{size}d}", weights, strict=True)))
    return sums


_HEAD_SUMS = _weighted_sums(_CVR_WEIGHTS[:3])
_TAIL_SUMS = _weighted_sums(_CVR_WEIGHTS[3:])


def company_key(index: int) -> str:
    return f"C{index:07d}"


def approach_key(number: int) -> str:
    return f"A{number:08d}"


def _mix(x: int) -> int:
    """splitmix64: a well-spread 64-bit hash, so any company can be derived from its index."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _guid(h: int) -> str:
    s = f"{h:032x}"
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:32]}"


def _fold(text: str) -> str:
    return text.translate(_FOLD)


@lru_cache(maxsize=4096)
def _local_part(text: str) -> str:
    """An e-mail-safe lower-case form of a word: "Søren" -> "soeren"."""
    return "".join(c for c in _fold(text).lower() if c.isalnum())


class _Universe:
    """All companies of a scenario, each computed from (seed, index) and cached while in use."""

    def __init__(self, scenario: Scenario) -> None:
        self._salt = _mix(scenario.seed)
        self._cvr_offset = self._salt % 9_000_000
        self._pnr_offset = (self._salt >> 20) % 9_000_000_000
        codes = sorted(MUNICIPALITIES)
        # The jobcentres' home municipalities are over-represented, so that every source has
        # enough records to show even in a small scenario.
        boosted = {code for _, _, code in scenario.jobcentres}
        self._muni_codes = codes
        self._muni_cum = list(
            accumulate(MUNICIPALITIES[c][2] * (3 if c in boosted else 1) for c in codes)
        )
        self.company = lru_cache(maxsize=1 << 16)(self.build)

    def build(self, index: int) -> Company:
        """Company ``index``, computed afresh (``company`` is the cached version)."""
        base = (self._salt + index * 8) & _MASK64
        h_name, h_place, h_people, h_branch = _mix(base), _mix(base + 1), _mix(base + 2), 0
        base_name, form, industry = _company_name(h_name)
        domain = _local_part(base_name.split()[0]) + ".dk"
        units = (self._unit(index, 0, h_place, h_name),)
        if h_people % 10 == 0:  # one in ten has a second workplace
            h_branch = _mix(base + 3)
            units += (self._unit(index, 1, h_branch, _mix(h_branch)),)
        return _new_company(
            (
                company_key(index),
                index,
                self._cvr(index),
                f"{base_name} {form}" if form else base_name,
                base_name,
                form,
                industry,
                units,
                _contacts(h_people // 10, domain),
            )
        )

    def _cvr(self, index: int) -> str:
        # Each index owns nine disjoint candidates; about one in eleven has no valid check digit.
        for k in range(9):
            j = index + k * MAX_COMPANIES
            first7 = 1_000_000 + (_CVR_MULT * j + self._cvr_offset) % 9_000_000
            digit = -(_HEAD_SUMS[first7 // 10_000] + _TAIL_SUMS[first7 % 10_000]) % 11
            if digit != 10:
                return str(first7 * 10 + digit)
        raise RuntimeError(f"no valid CVR number for company {index}")  # pragma: no cover

    def _unit(self, index: int, number: int, h: int, h_account: int) -> ProductionUnit:
        account = _guid(h_account << 64 | h)
        j = index + number * MAX_COMPANIES
        p_number = str(1_000_000_000 + (_PNR_MULT * j + self._pnr_offset) % 9_000_000_000)
        h, pick = divmod(h, self._muni_cum[-1])
        code = self._muni_codes[bisect_right(self._muni_cum, pick)]
        places = MUNICIPALITIES[code][3]
        h, place = divmod(h, len(places))
        postcode, city = places[place]
        h, street_pick = divmod(h, len(SURNAMES) + len(STREETS))
        if street_pick < len(SURNAMES):
            street = SURNAMES[street_pick] + "vej"
        else:
            street = STREETS[street_pick - len(SURNAMES)]
        h, house = divmod(h, 160)
        letter = "AB"[h % 12] if h % 12 < 2 else ""
        street = f"{street} {house + 1}{letter}"
        return _new_unit((p_number, street, postcode, city, code, account))


def _company_name(h: int) -> tuple[str, str, str]:
    """(name without legal form, legal form, industry section) from a hash."""
    h, pattern = divmod(h, 100)
    h, s1 = divmod(h, len(SURNAMES))
    h, s2 = divmod(h, len(SURNAMES))
    h, t = divmod(h, len(TRADES))
    h, form_pick = divmod(h, len(LEGAL_FORMS))
    h, extra = divmod(h, 997)
    trade, industry = TRADES[t]
    form = LEGAL_FORMS[form_pick]
    surname, other = SURNAMES[s1], SURNAMES[s2 if s2 != s1 else (s2 + 1) % len(SURNAMES)]
    if pattern < 36:
        return f"{surname} {trade}", form, industry
    if pattern < 50:
        return f"{surname} & {other}", form, "CFGMN"[extra % 5]
    if pattern < 66:
        return f"{PLACES[extra % len(PLACES)]} {trade}", form, industry
    if pattern < 78:
        first = FIRST_NAMES[extra % len(FIRST_NAMES)]
        return f"{first} {surname} {trade}", "", industry
    if pattern < 88:
        owner_trade, owner_industry = OWNER_TRADES[extra % len(OWNER_TRADES)]
        return f"{surname}s {owner_trade}", form if form != "" else "ApS", owner_industry
    suffix = GROUP_SUFFIXES[extra % len(GROUP_SUFFIXES)]
    return f"{surname} {suffix}", form, "CFGHM"[extra % 5]


def _contacts(seed: int, domain: str) -> tuple[ContactPerson, ...]:
    people = []
    for n in range(1 + seed % 3):
        h = _mix(seed + n)  # fresh bits per person: a phone number alone needs 27
        h, f = divmod(h, len(FIRST_NAMES))
        h, s = divmod(h, len(SURNAMES))
        h, phone = divmod(h, 70_000_000)
        first = FIRST_NAMES[f]
        local = _local_part(first) if n == 0 else _local_part(first) + _local_part(SURNAMES[s])[:2]
        people.append(
            _new_contact((f"{first} {SURNAMES[s]}", f"{local}@{domain}", str(20_000_000 + phone)))
        )
    return tuple(people)


def company(scenario: Scenario, index: int) -> Company:
    """The true company with this index (0 .. scenario.companies - 1)."""
    if not 0 <= index < scenario.companies:
        raise IndexError(index)
    return _universe(scenario).company(index)


def companies(scenario: Scenario) -> Iterator[Company]:
    """Every true company of the scenario, in index order, lazily."""
    universe = _universe(scenario)
    return (universe.build(i) for i in range(scenario.companies))


@lru_cache(maxsize=4)
def _universe(scenario: Scenario) -> _Universe:
    return _Universe(scenario)


# --- organisations ------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Org:
    """A source system and the organisation behind it, with mutable per-run counters."""

    index: int
    source_name: str
    organisation: str
    kind: str
    municipalities: frozenset[str]
    weight: float
    consultants: tuple[tuple[str, str], ...]
    bad_kinds: tuple[str, ...]
    channels: tuple[int, ...]
    purposes: tuple[str, ...]
    themes: tuple[int, ...]
    next_id: int = 0
    bad_count: int = 0
    corrected: int = 0
    last_modified: int = 0


_BAD_KINDS = {
    "crm": ("impossible_date", "no_company", "wrong_type"),
    "jobcenter": ("impossible_date", "no_company", "unreadable_date"),
    "veu": ("impossible_date", "wrong_type", "no_company"),
}
_ORG_WEIGHTS = {"crm": 1.0, "jobcenter": 2.2, "veu": 1.0}


def _orgs(scenario: Scenario) -> list[_Org]:
    region = frozenset(MUNICIPALITIES)
    areas = {
        name: frozenset(code for code, m in MUNICIPALITIES.items() if m[1] == area)
        for name, _, area in scenario.veu_centres
    }
    served = {name: frozenset([code]) for name, _, code in scenario.jobcentres}
    # Bigger scenarios have bigger consultant teams, so names and e-mails stay plausible.
    team = max(5, min(400, scenario.approaches // 2500))
    orgs = []
    for i, (name, organisation, kind) in enumerate(scenario.sources()):
        municipalities = region if kind == "crm" else areas.get(name) or served.get(name, region)
        consultants = _consultants(Random(scenario.seed * 7919 + i), name, team)
        orgs.append(
            _Org(
                i, name, organisation, kind, municipalities, _ORG_WEIGHTS[kind], consultants,
                _BAD_KINDS[kind], _CHANNEL_SLOTS[kind], PURPOSES[kind], _THEME_POOLS[kind],
            )
        )  # fmt: skip
    return orgs


def _consultants(rng: Random, source_name: str, size: int) -> tuple[tuple[str, str], ...]:
    people = []
    for n in range(size):
        first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        people.append((f"{first} {last}", f"{_local_part(first)}{n}@{source_name}.dk"))
    return tuple(people)


# --- calendar -----------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _summer_time(year: int) -> tuple[int, int]:
    """Ordinals of the EU summer-time switch days (last Sundays of March and October)."""
    march, october = date(year, 3, 31), date(year, 10, 31)
    return (
        (march - timedelta(days=(march.weekday() + 1) % 7)).toordinal(),
        (october - timedelta(days=(october.weekday() + 1) % 7)).toordinal(),
    )


@lru_cache(maxsize=8192)
def _day_info(ordinal: int) -> tuple[str, str, int]:
    """(ISO date, Copenhagen UTC offset text, offset in seconds) for a day, business hours.

    The switch happens at 02:00-03:00 local time, so any time from 07:00 on the switch day
    already has the new offset.
    """
    d = date.fromordinal(ordinal)
    begin, finish = _summer_time(d.year)
    summer = begin <= ordinal < finish
    return d.isoformat(), "+02:00" if summer else "+01:00", 7200 if summer else 3600


_CLOCK = [f"{m // 60:02d}:{m % 60:02d}" for m in range(1440)]
_SECONDS = [f":{s:02d}Z" for s in range(60)]


def _utc_text(seconds: int) -> str:
    day, rest = divmod(seconds, 86400)
    minute, second = divmod(rest, 60)
    return _day_info(day)[0] + "T" + _CLOCK[minute] + _SECONDS[second]


def _day_weight(d: date) -> float:
    if d.weekday() == 6:
        return 0.0
    if d.weekday() == 5:
        return 0.02
    if d.month == 7 or (d.month == 12 and d.day >= 22) or (d.month == 1 and d.day <= 2):
        return 0.3
    return 1.0


def _next_workday(ordinal: int) -> int:
    weekday = date.fromordinal(ordinal).weekday()
    return ordinal + (7 - weekday if weekday >= 5 else 0)


def csv_file_names(scenario: Scenario) -> tuple[str, str]:
    """Names of a jobcenter's two drops: the full export, then the delta at the period's end."""
    return (
        f"virksomhedskontakter_{_cutover(scenario):%Y%m%d}.csv",
        f"virksomhedskontakter_{scenario.end + timedelta(days=1):%Y%m%d}.csv",
    )


def _cutover(scenario: Scenario) -> date:
    """Day of the full export: the first of the month in the middle of the period."""
    middle = scenario.start + (scenario.end - scenario.start) / 2
    return max(middle.replace(day=1), scenario.start)


# --- the record stream --------------------------------------------------------------------------


class _Rec:
    """One source record as decided by the generator; renderers only format it."""

    __slots__ = (
        "org", "sid", "approach", "company", "unit", "day", "minute", "channel", "consultant",
        "contact", "purpose", "themes", "joint", "notes", "state", "role", "episode", "bits",
        "cvr", "cvr_noise", "name", "name_noise", "pnr", "city", "modified", "bad", "csv_update",
        "cpr",
    )  # fmt: skip


class TruthRecord(NamedTuple):
    """What a record really is. ``quarantine``: the record must be quarantined (``state`` bad).

    ``company_key``/``approach_key`` are None for bad records. ``state`` is the final state
    (active, planned, cancelled, deleted, bad). ``role`` is primary, joint (the partner's own
    record of a joint visit), double (a second entry of the same approach) or bad. ``episode``:
    the approach is a follow-up in a run of uncoordinated approaches. ``corrected_later``: the
    first CSV delivery of this row is unreadable and the delta file corrects it. ``cpr``: a CPR
    number planted in the notes.
    """

    source_name: str
    source_id: str
    company_key: str | None
    approach_key: str | None
    state: str
    quarantine: bool
    role: str
    episode: bool
    cvr_noise: str
    name_noise: str
    corrected_later: bool
    cpr: str | None


class _Generator:
    """Walks the period day by day and decides every record; see :func:`deliveries`.

    All randomness comes from one ``Random(seed)`` consumed in a fixed order, so a scenario
    always yields the same records. Hot paths read rates into locals and draw few numbers: the
    scale benchmark needs millions of records a minute.
    """

    def __init__(self, scenario: Scenario) -> None:
        sc = self.sc = scenario
        self.rng = Random(scenario.seed)
        # A universe of its own, so the company cache goes away with the stream.
        self.company = _Universe(scenario).company
        self.orgs = _orgs(scenario)
        self.start = scenario.start.toordinal()
        self.end = scenario.end.toordinal()
        self.cutover = _cutover(scenario).toordinal()
        self.veu_salt = _mix(scenario.seed + 99) % 9_000_000
        self.serving = self._serving_table()
        self.heap: list[tuple[int, int, int, int, int]] = []
        self.approach_no = 0
        self.started = 0
        has_crm = any(o.kind == "crm" for o in self.orgs)
        self.n_planned = round(sc.approaches * sc.planned_rate) if has_crm else 0
        self.n_main = sc.approaches - self.n_planned
        # Companies are approached in bursts: most draws come from a window of "active"
        # companies that slides through all of them over the period. In big scenarios this
        # also keeps the company cache warm.
        self.window = min(sc.companies, max(2000, sc.companies // 8))
        # day -> (company, organisation) -> {(consultant, channel)}: the last few days only
        self.recent: dict[int, dict[tuple[int, int], set]] = {}
        self.slide = sc.companies / max(1, self.end - self.start + 1)

    def _serving_table(self) -> dict[str, tuple[tuple[_Org, ...], list[float]]]:
        table = {}
        for code in MUNICIPALITIES:
            orgs = tuple(o for o in self.orgs if code in o.municipalities) or tuple(self.orgs)
            table[code] = (orgs, list(accumulate(o.weight for o in orgs)))
        return table

    def records(self) -> Iterator[_Rec]:
        """Every record in delivery order: day by day, then planned ones, then late bad ones."""
        heap = self.heap
        for day, target in self._calendar():
            # Follow-ups that fall due come first, then new approaches up to the day's share.
            while heap and heap[0][0] <= day:
                _, _, index, unit, org_index = heapq.heappop(heap)
                yield from self._approach(day, index, unit, self.orgs[org_index])
            while self.started < target:
                yield from self._approach(day, -1, 0, None)
        yield from self._planned()
        yield from self._missing_bad()

    def _calendar(self) -> Iterator[tuple[int, int]]:
        days = range(self.start, self.end + 1)
        weights = [_day_weight(date.fromordinal(d)) for d in days]
        total = sum(weights) or 1.0
        for day, cumulative in zip(days, accumulate(weights), strict=True):
            yield day, round(self.n_main * cumulative / total)

    def _approach(self, day: int, index: int, unit: int, org: _Org | None) -> list[_Rec]:
        """The records of one true approach: its own, a joint partner's, a double entry."""
        random, sc = self.rng.random, self.sc
        episode = org is not None
        if index < 0:
            index = self._pick_company(day)
        comp = self.company(index)
        if not episode and len(comp.units) > 1 and random() < 0.3:
            unit = 1
        orgs, cum = self.serving[comp.units[unit].municipality_code]
        if org is None:
            org = orgs[bisect_right(cum, random() * cum[-1])]
            if random() < sc.episode_rate:
                self._schedule_followups(day, index, unit, org, orgs)
        self.started += 1
        number = self.approach_no
        self.approach_no += 1
        partner = None
        if not episode and len(orgs) > 1 and random() < sc.joint_rate:
            partner = self._partner(org, orgs)
        state = CANCELLED if random() < sc.cancel_rate else ACTIVE
        visit = (comp, unit, day, 480 + 15 * int(random() * 33), int(random() * 4) - 1)
        first = self._record(org, number, visit, "primary", episode, partner, state)
        out = [first]
        if partner is not None and random() < 0.9:
            # The partner keys in the same visit, same day or the next, naming us most times.
            moved = (comp, unit, min(day + (random() < 0.3), self.end), visit[3], visit[4])
            names_us = org if random() < 0.75 else None
            out.append(self._record(partner, number, moved, "joint", False, names_us, state))
        if random() < sc.double_rate:
            moved = (comp, unit, min(day + (random() < 0.4), self.end), visit[3], visit[4])
            double = self._record(org, number, moved, "double", episode, partner, state)
            double.consultant, double.channel = first.consultant, first.channel
            out.append(double)
        if random() < sc.bad_rate:
            out.append(self._bad(org, day))
        return out

    def _pick_company(self, day: int) -> int:
        random, sc = self.rng.random, self.sc
        if random() < 0.95:
            start = int((day - self.start) * self.slide)
            return (start + int(self.window * random() ** sc.popularity_skew)) % sc.companies
        return int(sc.companies * random() ** sc.popularity_skew)

    def _schedule_followups(self, day: int, index: int, unit: int, org: _Org, orgs: tuple) -> None:
        """Plan approaches by other organisations within weeks: the flags to be found."""
        if len(orgs) < 2:
            return
        rng = self.rng
        count = 1 + (rng.random() < 0.5) + (rng.random() < 0.2)
        if self.started + len(self.heap) + count >= self.n_main:
            return
        previous = org
        for _ in range(count):
            day = _next_workday(day + 3 + int(rng.random() * 38))
            if day > self.end:
                break
            choices = [o for o in orgs if o is not previous]
            previous = choices[int(rng.random() * len(choices))]
            heapq.heappush(self.heap, (day, rng.getrandbits(32), index, unit, previous.index))

    def _partner(self, org: _Org, orgs: tuple[_Org, ...]) -> _Org:
        pool = [o for o in orgs if o.kind != org.kind] or [o for o in orgs if o is not org]
        return pool[int(self.rng.random() * len(pool))]

    def _record(
        self,
        org: _Org,
        number: int,
        visit: tuple[Company, int, int, int, int],
        role: str,
        episode: bool,
        joint_with: _Org | None,
        state: str,
    ) -> _Rec:
        rng, sc = self.rng, self.sc
        comp, unit, day, minute, contact = visit
        rec = _Rec()
        rec.org, rec.approach, rec.company, rec.unit, rec.role = org, number, comp, unit, role
        rec.day, rec.minute, rec.episode = day, minute, episode
        rec.contact = contact if contact < len(comp.contacts) else -1
        rec.sid = self._source_id(org)
        bits = rng.getrandbits(62)
        rec.bits = bits & 0x3FFFFFFF
        hi = bits >> 30
        rec.channel = org.channels[hi % 20]
        rec.purpose = org.purposes[(hi >> 5) % len(org.purposes)]
        team = org.consultants
        # Most companies have a regular consultant in each organisation.
        regular = (hi >> 10) % 10 < 7
        rec.consultant = team[(comp.index * 31 + org.index if regular else hi >> 14) % len(team)]
        if role != "double":
            self._avoid_false_double_entry(rec, team)
        rec.themes = self._themes(org.themes)
        rec.joint = (joint_with.organisation,) if joint_with is not None else ()
        rec.notes, rec.cpr = self._notes(rec.bits)
        if org.kind == "veu" and (state == CANCELLED or rng.random() < sc.delete_rate):
            state = DELETED  # the VEU API knows no cancellation, only deletion
        rec.state = state
        rec.cvr, rec.cvr_noise = self._cvr(comp.cvr, org.kind)
        rec.name, rec.name_noise = _name_variant(rng, comp, sc.noise)
        place = comp.units[unit]
        rec.pnr = place.p_number if rng.random() < 0.35 else ""
        rec.city = _city_variant(rng, place.city, sc.noise)
        rec.bad = ""
        rec.csv_update = self._csv_update(rec) if org.kind == "jobcenter" else ""
        self._stamp(rec, 3600 + rec.bits % (3 * 86400))
        return rec

    def _avoid_false_double_entry(self, rec: _Rec, team: tuple) -> None:
        """Two different approaches by one consultant, on one channel, to one company within a
        day are one approach by the spec's double-entry rule; so the truth must not contain
        such pairs. Another consultant of the team takes the second one."""
        key = (rec.company.index, rec.org.index)
        taken = set()
        for day in (rec.day - 1, rec.day, rec.day + 1):
            taken |= self.recent.get(day, {}).get(key, set())
        start = team.index(rec.consultant)
        for step in range(len(team)):
            candidate = team[(start + step) % len(team)]
            if (candidate, rec.channel) not in taken:
                rec.consultant = candidate
                break
        for old in [d for d in self.recent if d < rec.day - 2]:
            del self.recent[old]
        self.recent.setdefault(rec.day, {}).setdefault(key, set()).add(
            (rec.consultant, rec.channel)
        )

    def _source_id(self, org: _Org) -> str:
        org.next_id += 1
        if org.kind == "crm":
            return _guid(self.rng.getrandbits(128))
        if org.kind == "veu":
            return f"veu-{1_000_000 + (_VEU_ID_MULT * org.next_id + self.veu_salt) % 9_000_000}"
        org.next_id += int(self.rng.random() * 3)  # exports skip numbers for other teams' rows
        return str(200_000 + org.next_id)

    def _stamp(self, rec: _Rec, delay: int) -> None:
        """Set ``modified``: after the appointment, and strictly increasing within a source."""
        if rec.state == PLANNED:
            natural = self.end * 86400 + 43200  # booked before the period ended
        else:
            natural = rec.day * 86400 + rec.minute * 60 - _day_info(rec.day)[2] + delay
        org = rec.org
        rec.modified = max(natural, org.last_modified + 1 + rec.bits % 43)
        org.last_modified = rec.modified

    def _themes(self, pool: tuple[int, ...]) -> tuple[int, ...]:
        """Indices into THEMES, sorted, no repeats: 0-3 needs per record."""
        random = self.rng.random
        r = random()
        if r < 0.25:
            return ()
        size = len(pool)
        a = pool[int(random() * size)]
        if r < 0.65:
            return (a,)
        b = pool[int(random() * size)]
        if r < 0.9:
            return (a,) if a == b else (a, b) if a < b else (b, a)
        return tuple(sorted({a, b, pool[int(random() * size)]}))

    def _notes(self, bits: int) -> tuple[str, str | None]:
        """A note, and the CPR number planted in it if any; bits vary the look-alikes."""
        r = self.rng.random()
        pii = self.sc.pii_rate
        if r >= 3 * pii:
            return ("" if r < 0.4 else NOTES[bits % len(NOTES)]), None
        d, m, y = 1 + bits % 28, 1 + bits // 28 % 12, bits // 336 % 100
        serial = bits // 33600 % 10_000
        if r < pii:
            # Born 1940-1999 with a 7th digit of 0-3: a valid CPR number by stdnum.
            cpr = f"{d:02d}{m:02d}{40 + y % 60:02d}-{serial % 4000:04d}"
            return f"Drøftede praktik for borger {cpr}. Følg op.", cpr
        if r < 2 * pii:
            # A P-number whose first six digits read as a date: a CPR look-alike.
            return f"Kontakt afdelingen via P-nr {d:02d}{m:02d}{y:02d}{serial:04d}.", None
        # A phone number starting like a date of birth (DDMM), e.g. "tlf 31124567".
        return f"Ring til tlf {20 + bits % 12}{m:02d}{serial:04d} efter kl. 14.", None

    def _cvr(self, cvr: str, kind: str) -> tuple[str, str]:
        rng = self.rng
        r = rng.random() / self.sc.noise if self.sc.noise else 1.0
        if r < 0.3:
            return "", "missing"
        if r < 0.42:
            return _mistype(rng, cvr), "mistyped"
        # Jobcentres type CVR numbers by hand; the JSON systems mostly store them clean.
        if rng.random() < (0.35 if kind == "jobcenter" else 0.06):
            fmt = int(rng.random() * 3)
            text = (f"{cvr[:2]} {cvr[2:4]} {cvr[4:6]} {cvr[6:]}", f"DK{cvr}", f"DK-{cvr}")[fmt]
            return text, "formatted"
        return cvr, "plain"

    def _csv_update(self, rec: _Rec) -> str:
        """How the delta file changes a row of the full export ("": not at all)."""
        if rec.day >= self.cutover:
            return ""  # the row is first delivered in the delta file itself
        if rec.state == CANCELLED:
            return "cancel" if rec.bits & 1 else ""
        r = self.rng.random()
        rate = self.sc.csv_update_rate
        if r < rate * 0.1 or not rec.org.corrected:
            rec.org.corrected += 1  # every jobcentre shows at least one corrected row
            return "correct"
        if r < rate * 0.4 and rec.cvr_noise in ("missing", "mistyped"):
            return "cvr"
        return "note" if r < rate else ""

    def _bad(self, org: _Org, day: int) -> _Rec:
        """A record the service must quarantine; each source cycles through its kinds."""
        rng = self.rng
        comp = self.company(int(self.sc.companies * rng.random()))
        rec = _Rec()
        rec.org, rec.sid, rec.approach, rec.company, rec.unit = (
            org,
            self._source_id(org),
            -1,
            comp,
            0,
        )
        rec.day, rec.minute, rec.contact, rec.role, rec.episode = day, 600, -1, "bad", False
        rec.bits = rng.getrandbits(30)
        rec.channel, rec.consultant, rec.purpose = 0, org.consultants[0], "Opfølgning"
        rec.themes, rec.joint, rec.notes, rec.cpr = (), (), "", None
        rec.state, rec.cvr, rec.cvr_noise, rec.name_noise = BAD, comp.cvr, "", ""
        rec.name, rec.pnr, rec.city, rec.csv_update = comp.name, "", comp.units[0].city, ""
        rec.bad = org.bad_kinds[org.bad_count % len(org.bad_kinds)]
        org.bad_count += 1
        if rec.bad == "no_company":
            rec.cvr, rec.name = "", ""
        self._stamp(rec, 7200)
        return rec

    def _planned(self) -> Iterator[_Rec]:
        """CRM appointments booked for the weeks after the period (statecode 0)."""
        crm = next((o for o in self.orgs if o.kind == "crm"), None)
        if crm is None or not self.n_planned:
            return
        random = self.rng.random
        ahead = sorted(int(random() * 28) for _ in range(self.n_planned))
        for days in ahead:
            comp = self.company(self._pick_company(self.end))
            number = self.approach_no
            self.approach_no += 1
            day = _next_workday(self.end + 1 + days)
            visit = (comp, 0, day, 480 + 15 * int(random() * 33), int(random() * 4) - 1)
            yield self._record(crm, number, visit, "primary", False, None, PLANNED)

    def _missing_bad(self) -> Iterator[_Rec]:
        """Top every source up to ``min_bad_per_source`` bad records."""
        for org in self.orgs:
            while org.bad_count < self.sc.min_bad_per_source:
                yield self._bad(org, self.end)


def _city_variant(rng: Random, city: str, noise: float) -> str:
    """Some people still write the old spelling "Århus"."""
    if city.startswith("Aarhus") and rng.random() < noise * 0.3:
        return "Århus" + city[6:]
    return city


def _mistype(rng: Random, cvr: str) -> str:
    """A CVR one keystroke off: one digit changed or two different neighbours swapped.

    Both always fail the modulus-11 check: the weights are below 11 and differ for neighbours.
    """
    digits = list(cvr)
    swaps = [i for i in range(7) if digits[i] != digits[i + 1]]
    if swaps and rng.random() < 0.4:
        i = swaps[int(rng.random() * len(swaps))]
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    else:
        i = 1 + int(rng.random() * 7)
        digits[i] = str((int(digits[i]) + 1 + int(rng.random() * 9)) % 10)
    return "".join(digits)


def _name_variant(rng: Random, comp: Company, noise: float) -> tuple[str, str]:
    """The company name as someone keyed it in, and which variant it is ("exact": unchanged)."""
    name = comp.name
    if rng.random() >= noise * 0.8:
        return name, "exact"
    kind = int(rng.random() * 8)
    if kind == 0 and comp.legal_form:
        return comp.base_name, "form_dropped"
    if kind <= 1:
        form = FORM_VARIANTS.get(comp.legal_form, "ApS" if not comp.legal_form else "")
        return (f"{comp.base_name} {form}" if form else comp.base_name), "form_changed"
    if kind == 2:
        return name.upper(), "case"
    if kind == 3 and _fold(name) != name:
        return _fold(name), "folded"
    if kind == 4 and (" & " in name or " og " in name):
        swapped = name.replace(" & ", " og ") if " & " in name else name.replace(" og ", " & ")
        return swapped, "ampersand"
    if kind == 5:
        return name.lower() if rng.random() < 0.3 else name.title(), "case"
    return _typo(rng, comp), "typo"


def _typo(rng: Random, comp: Company) -> str:
    words = comp.base_name.split()
    long_words = [i for i, w in enumerate(words) if len(w) >= 5]
    if not long_words:
        return comp.name.upper()
    i = long_words[int(rng.random() * len(long_words))]
    w = words[i]
    p = 1 + int(rng.random() * (len(w) - 2))
    op = int(rng.random() * 3)
    if op == 0 and w[p] != w[p + 1]:
        w = w[:p] + w[p + 1] + w[p] + w[p + 2 :]
    elif op == 1:
        w = w[:p] + w[p + 1 :]
    else:
        w = w[:p] + w[p] + w[p:]
    words[i] = w
    base = " ".join(words)
    return f"{base} {comp.legal_form}" if comp.legal_form else base


# --- truth --------------------------------------------------------------------------------------


# NamedTuple's own constructor is a Python-level function; these build the same tuples in C,
# which matters at millions of records.
_new_truth = partial(tuple.__new__, TruthRecord)


def _truth(rec: _Rec) -> TruthRecord:
    bad = rec.state == BAD
    return _new_truth(
        (
            rec.org.source_name,
            rec.sid,
            None if bad else rec.company.key,
            None if bad else approach_key(rec.approach),
            rec.state,
            bad,
            rec.role,
            rec.episode,
            rec.cvr_noise,
            rec.name_noise,
            rec.csv_update == "correct",
            rec.cpr,
        )
    )


def truth(scenario: Scenario) -> Iterator[TruthRecord]:
    """The truth of every record the scenario delivers, one per (source, source id), lazily.

    A CSV row updated by the delta file has one truth record: its final state.
    """
    return (_truth(rec) for rec in _Generator(scenario).records())


def truth_map(scenario: Scenario) -> dict[tuple[str, str], TruthRecord]:
    """:func:`truth` as a dict keyed by (source name, source id); for small scenarios."""
    return {(t.source_name, t.source_id): t for t in truth(scenario)}


def summary(records: Iterable[TruthRecord]) -> dict[str, int]:
    """Counts a caller can print: records, approaches, companies, and each special case.

    ``records`` must hold each (source, source id) once, as :func:`truth` yields them.
    """
    counts: Counter[str] = Counter()
    companies_seen = set()
    for t in records:
        counts["records"] += 1
        counts[t.state] += 1
        counts[f"role_{t.role}"] += 1
        counts["episode"] += t.episode
        counts["corrected_later"] += t.corrected_later
        counts["cpr_in_notes"] += t.cpr is not None
        if t.company_key:
            companies_seen.add(t.company_key)
    counts["approaches"] = counts["role_primary"]  # every approach has one primary record
    counts["companies"] = len(companies_seen)
    return dict(counts)


# --- rendering ----------------------------------------------------------------------------------


class Delivered(NamedTuple):
    """One delivered payload. ``file_index`` is 0, or 1 for a jobcenter's delta file."""

    source_name: str
    kind: str
    payload: dict[str, Any]
    truth: TruthRecord
    file_index: int


def deliveries(scenario: Scenario, sources: Iterable[str] | None = None) -> Iterator[Delivered]:
    """Every source's payloads in one lazy pass, each with its truth; ``sources`` filters.

    CRM payloads are OData appointment objects, VEU payloads API items, jobcenter payloads CSV
    rows (column -> text). A CSV row that the delta file updates comes twice, with file_index 0
    and then 1.
    """
    known = {name for name, _, _ in scenario.sources()}
    wanted = known if sources is None else set(sources)
    if wanted - known:
        raise KeyError(f"unknown sources: {sorted(wanted - known)}")
    return _deliveries(scenario, wanted)


def _deliveries(scenario: Scenario, wanted: set[str]) -> Iterator[Delivered]:
    gen = _Generator(scenario)
    new = partial(tuple.__new__, Delivered)
    for rec in gen.records():
        org = rec.org
        if org.source_name not in wanted:
            continue
        label = _truth(rec)
        if org.kind == "crm":
            yield new((org.source_name, "crm", _crm_payload(rec), label, 0))
        elif org.kind == "veu":
            yield new((org.source_name, "veu", _veu_payload(rec), label, 0))
        else:
            for file_index, row in _csv_rows(rec, gen.cutover):
                yield new((org.source_name, "jobcenter", row, label, file_index))


def crm_appointments(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """The CRM's appointment objects (sources.md section 1), ``modifiedon`` increasing."""
    if scenario.crm is None:
        return iter(())
    return (d.payload for d in deliveries(scenario, [scenario.crm[0]]))


def veu_items(scenario: Scenario, source_name: str) -> Iterator[dict[str, Any]]:
    """One VEU centre's contact items (sources.md section 3), ``updated_at`` increasing."""
    if source_name not in {name for name, _, _ in scenario.veu_centres}:
        raise KeyError(f"{source_name!r} is not a VEU centre of this scenario")
    return (d.payload for d in deliveries(scenario, [source_name]))


def _contact(rec: _Rec) -> ContactPerson | None:
    return rec.company.contacts[rec.contact] if rec.contact >= 0 else None


_STATECODES = {PLANNED: 0, CANCELLED: 2}


def _crm_payload(rec: _Rec) -> dict[str, Any]:
    unit = rec.company.units[rec.unit]
    iso, offset, _ = _day_info(rec.day)
    start = f"{iso}T{rec.minute // 60:02d}:{rec.minute % 60:02d}:00{offset}"
    contact = _contact(rec)
    payload: dict[str, Any] = {
        "activityid": rec.sid,
        "subject": rec.purpose,
        "scheduledstart": start,
        "modifiedon": _utc_text(rec.modified),
        "statecode": _STATECODES.get(rec.state, 1),
        "cr_contacttype": CRM_CHANNELS[rec.channel],
        "regardingobjectid_account": {
            "accountid": unit.account_id,
            "name": rec.name,
            "cr_cvr": rec.cvr,
            "cr_pnumber": rec.pnr,
            "address1_line1": unit.street,
            "address1_postalcode": unit.postcode,
            "address1_city": rec.city,
        },
        "cr_contact": None
        if contact is None
        else {
            "fullname": contact.name,
            "emailaddress1": contact.email,
            "telephone1": contact.phone if rec.bits & 4 else "",
        },
        "owninguser": {"fullname": rec.consultant[0], "internalemailaddress": rec.consultant[1]},
        "cr_competenceneeds": _crm_needs(rec.themes),
        "cr_jointwith": ";".join(rec.joint),
        "description": rec.notes,
    }
    if rec.bad:
        _break_crm(rec, payload)
    return payload


def _break_crm(rec: _Rec, payload: dict[str, Any]) -> None:
    year = date.fromordinal(rec.day).year
    if rec.bad == "impossible_date":
        payload["scheduledstart"] = f"{year}-02-{30 + rec.bits % 2}T10:00:00+01:00"
    elif rec.bad == "wrong_type":
        payload["scheduledstart"] = 12345
    # no_company: name and cr_cvr are already empty


def _veu_payload(rec: _Rec) -> dict[str, Any]:
    unit = rec.company.units[rec.unit]
    contact = _contact(rec)
    payload: dict[str, Any] = {
        "id": rec.sid,
        "updated_at": _utc_text(rec.modified),
        "deleted": rec.state == DELETED,
        "date": _day_info(rec.day)[0],
        "channel": CHANNELS[rec.channel],
        "purpose": rec.purpose,
        "company": {
            "cvr": rec.cvr or None,
            "p_number": rec.pnr or None,
            "name": rec.name,
            "address": unit.street,
            "postcode": unit.postcode,
            "city": rec.city,
        },
        "contact_person": None
        if contact is None
        else {
            "name": contact.name,
            "email": None if rec.bits & 24 == 16 else contact.email,
            "phone": contact.phone if rec.bits & 4 else None,
        },
        "consultant": {"name": rec.consultant[0], "email": rec.consultant[1]},
        "needs": [_veu_need(THEMES[t], rec.bits >> t & 1) for t in rec.themes],
        "joint_with": list(rec.joint),
        "notes": rec.notes,
    }
    if rec.bad:
        _break_veu(rec, payload)
    return payload


def _veu_need(theme: Theme, alternative: int) -> dict[str, Any]:
    if theme.veu_code is not None:
        return {"type": theme.type, "code": theme.veu_code, "label": theme.veu_label}
    return {
        "type": theme.type,
        "code": None,
        "label": theme.labels[alternative % len(theme.labels)],
    }


def _break_veu(rec: _Rec, payload: dict[str, Any]) -> None:
    if rec.bad == "impossible_date":
        payload["date"] = f"{date.fromordinal(rec.day).year}-13-40"
    elif rec.bad == "wrong_type":
        payload["needs"] = "x"
    else:
        payload["company"]["name"] = None
        payload["company"]["cvr"] = None


def _csv_date(rec: _Rec) -> str:
    style = rec.bits >> 5 & 7
    text = _csv_day(rec.day, style < 3)
    return text + " " + _CLOCK[rec.minute] if style == 7 else text


@lru_cache(maxsize=8192)
def _csv_day(ordinal: int, dots: bool) -> str:
    """dd.mm.yyyy or dd-mm-yyyy: both occur in the exports."""
    return date.fromordinal(ordinal).strftime("%d.%m.%Y" if dots else "%d-%m-%Y")


def _csv_channel(rec: _Rec) -> str:
    if rec.bits >> 8 & 7:
        return CSV_CHANNELS[rec.channel]
    variants = CSV_CHANNEL_VARIANTS[rec.channel]
    return variants[(rec.bits >> 11) % len(variants)]


@lru_cache(maxsize=8192)
def _csv_needs(themes: tuple[int, ...], spelling: int) -> tuple[str, str]:
    """(Rekrutteringsbehov, Kompetencebehov); ``spelling`` bits pick codes vs titles, variants."""
    recruitment, upskilling = [], []
    for t in themes:
        theme = THEMES[t]
        choice = spelling >> (t % 8)
        if theme.type == "recruitment":
            recruitment.append(theme.disco if theme.disco and choice & 1 else theme.labels[0])
        else:
            upskilling.append(theme.labels[choice % len(theme.labels)])
    return "|".join(recruitment), "|".join(upskilling)


@lru_cache(maxsize=1024)
def _crm_needs(themes: tuple[int, ...]) -> str:
    return ";".join(c for c in (THEMES[t].crm_code for t in themes) if c is not None)


def _csv_row(rec: _Rec) -> dict[str, str]:
    unit = rec.company.units[rec.unit]
    contact = _contact(rec)
    recruitment, upskilling = _csv_needs(rec.themes, rec.bits >> 16 & 0xFF)
    if rec.state == CANCELLED and rec.csv_update != "cancel":
        status = "Annulleret"
    else:
        status = ("", "Aktiv")[rec.bits >> 14 & 1]
    return {
        "KontaktID": rec.sid,
        "Dato": _csv_date(rec),
        "CVR": rec.cvr,
        "PNummer": rec.pnr,
        "Virksomhed": rec.name,
        "Adresse": unit.street,
        "Postnr": unit.postcode,
        "By": rec.city,
        "Kontaktform": _csv_channel(rec),
        "Formål": rec.purpose,
        "Kontaktperson": contact.name if contact else "",
        "KontaktpersonEmail": contact.email if contact else "",
        "KontaktpersonTelefon": contact.phone if contact and rec.bits & 4 else "",
        "Medarbejder": rec.consultant[0],
        "MedarbejderEmail": rec.consultant[1],
        "Rekrutteringsbehov": recruitment,
        "Kompetencebehov": upskilling,
        "KoordineretMed": "|".join(rec.joint),
        "Status": status,
        "Note": rec.notes,
    }


def _csv_rows(rec: _Rec, cutover: int) -> list[tuple[int, dict[str, str]]]:
    """The row in the full export (0) or the delta (1), plus its update in the delta if any."""
    row = _csv_row(rec)
    file_index = 0 if rec.day < cutover else 1
    if rec.bad:
        _break_csv(rec, row)
        return [(file_index, row)]
    update = rec.csv_update
    if not update:
        return [(file_index, row)]
    first = dict(row)
    if update == "correct":
        d = date.fromordinal(rec.day)
        first["Dato"] = f"{29 + rec.bits % 3:02d}-02-{d.year}" if d.year % 4 else f"31-04-{d.year}"
    elif update == "cancel":
        row["Status"] = "Annulleret"
    elif update == "cvr":
        row["CVR"] = rec.company.cvr
    else:
        row["Note"] = (row["Note"] + " Opfølgning aftalt.").strip()
    return [(0, first), (1, row)]


def _break_csv(rec: _Rec, row: dict[str, str]) -> None:
    year = date.fromordinal(rec.day).year
    if rec.bad == "impossible_date":
        row["Dato"] = f"31-02-{year}"
    elif rec.bad == "unreadable_date":
        row["Dato"] = f"{year}-13-40"
    # no_company: Virksomhed and CVR are already empty


# --- writers ------------------------------------------------------------------------------------


class _JsonList:
    """Writes a JSON list one item at a time (one item a line), so no list is held in memory."""

    def __init__(self, stack: ExitStack, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.count = 0
        self._file: TextIO = stack.enter_context(path.open("w", encoding="utf-8", newline="\n"))
        self._file.write("[")
        stack.callback(self._file.write, "\n]\n")

    def add(self, payload: dict[str, Any]) -> None:
        self._file.write(",\n" if self.count else "\n")
        self._file.write(json.dumps(payload, ensure_ascii=False))
        self.count += 1


class _CsvDrop:
    """A jobcenter's two drops: the full export (cp1252 or UTF-8 with BOM) and a UTF-8 delta."""

    def __init__(self, stack: ExitStack, scenario: Scenario, folder: Path, source: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [folder / name for name in csv_file_names(scenario)]
        first = "cp1252" if source in scenario.windows1252_sources else "utf-8-sig"
        self.count = 0
        self._writers = []
        for path, encoding, columns in (
            (self.paths[0], first, CSV_COLUMNS),
            (self.paths[1], "utf-8", CSV_DELTA_COLUMNS),
        ):
            handle = stack.enter_context(path.open("w", encoding=encoding, newline=""))
            writer = csv.writer(handle, delimiter=";", quotechar='"', lineterminator="\r\n")
            writer.writerow(columns)
            self._writers.append((writer, columns))

    def add(self, file_index: int, row: dict[str, str]) -> None:
        writer, columns = self._writers[file_index]
        writer.writerow([row[c] for c in columns])
        self.count += 1


def write_jobcenter_csvs(scenario: Scenario, folder: Path, source_name: str) -> list[Path]:
    """Write one jobcenter's full export and delta file into ``folder``; return their paths."""
    if source_name not in {name for name, _, _ in scenario.jobcentres}:
        raise KeyError(f"{source_name!r} is not a jobcentre of this scenario")
    with ExitStack() as stack:
        drop = _CsvDrop(stack, scenario, Path(folder), source_name)
        for d in deliveries(scenario, [source_name]):
            drop.add(d.file_index, d.payload)
    return drop.paths


@dataclass(frozen=True)
class DemoDeliveries:
    """What :func:`write_demo_deliveries` wrote. ``records``: payloads per source (CSV: rows,
    delta rows included). ``summary``: see :func:`summary`.
    """

    folder: Path
    crm: dict[str, Path] = field(default_factory=dict)
    veu: dict[str, Path] = field(default_factory=dict)
    jobcentres: dict[str, list[Path]] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    summary: dict[str, int] = field(default_factory=dict)


def write_demo_deliveries(folder: Path, scenario: Scenario | None = None) -> DemoDeliveries:
    """Write every source of the scenario (default: the demo) under ``folder``, in one pass.

    Layout as in the samples: ``<source>/records.json`` for the CRM and VEU centres (JSON
    lists of what their APIs return, all pages together) and
    ``<source>/virksomhedskontakter_*.csv`` for jobcentres. No truth is written; streams, so
    the scale preset works too.
    """
    scenario = scenario or Scenario.demo()
    folder = Path(folder)
    kinds = {name: kind for name, _, kind in scenario.sources()}
    with ExitStack() as stack:
        sinks: dict[str, _JsonList | _CsvDrop] = {}
        for name, kind in kinds.items():
            if kind == "jobcenter":
                sinks[name] = _CsvDrop(stack, scenario, folder / name, name)
            else:
                sinks[name] = _JsonList(stack, folder / name / "records.json")
        counts = summary(_write_each(deliveries(scenario), sinks))
    return DemoDeliveries(
        folder=folder,
        crm={n: s.path for n, s in sinks.items() if kinds[n] == "crm"},
        veu={n: s.path for n, s in sinks.items() if kinds[n] == "veu"},
        jobcentres={n: s.paths for n, s in sinks.items() if kinds[n] == "jobcenter"},
        records={n: s.count for n, s in sinks.items()},
        summary=counts,
    )


def _write_each(
    stream: Iterable[Delivered], sinks: dict[str, _JsonList | _CsvDrop]
) -> Iterator[TruthRecord]:
    """Write each payload to its source's sink; yield each record's truth once."""
    previous = None
    for d in stream:
        sink = sinks[d.source_name]
        if isinstance(sink, _CsvDrop):
            sink.add(d.file_index, d.payload)
        else:
            sink.add(d.payload)
        # A CSV row updated by the delta comes twice in a row, with one truth.
        if d.truth is not previous:
            yield d.truth
        previous = d.truth
