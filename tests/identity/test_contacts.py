"""Contact persons: keys and de-duplication per company. Display survivorship is at the end."""

import datetime as dt
import random

import pytest

from connectors.base import PersonRef
from coordination.identity.contacts import contact_key, merge_contacts
from coordination.identity.normalise import normalise_postcode, valid_cvr
from coordination.identity.survivorship import CompanyFacts, choose_display, display_fields

# --- contact keys ----------------------------------------------------------------------------


def test_contact_key_is_the_email_first():
    person = PersonRef(name="Anne Jensen", email=" Anne@Firma.dk", phone="86 12 34 56")
    assert contact_key(person) == "email:anne@firma.dk"


def test_contact_key_falls_back_to_the_phone():
    assert contact_key(PersonRef(name="Anne Jensen", phone="+45 86 12 34 56")) == "phone:86123456"


def test_contact_key_falls_back_to_the_name():
    assert contact_key(PersonRef(name="Jensen, Anne")) == "name:anne jensen"


def test_contact_without_usable_details_has_no_key():
    assert contact_key(PersonRef(name=" ", email="n/a", phone="0")) is None


# --- merging ---------------------------------------------------------------------------------


def test_same_email_in_any_spelling_is_one_person():
    merged = merge_contacts(
        [PersonRef(name="Anne Jensen", email="anne@firma.dk"), PersonRef(email="ANNE@firma.dk ")]
    )
    assert [m.members for m in merged] == [(0, 1)]


def test_same_phone_is_one_person_when_an_entry_lacks_an_email():
    merged = merge_contacts(
        [
            PersonRef(name="Anne Jensen", email="anne@firma.dk", phone="86123456"),
            PersonRef(name="A. Jensen", phone="+45 86 12 34 56"),
        ]
    )
    assert [m.members for m in merged] == [(0, 1)]


def test_same_name_is_one_person_when_entries_share_neither_email_nor_phone_kind():
    merged = merge_contacts(
        [PersonRef(name="Anne Jensen", email="anne@firma.dk"), PersonRef(name="Jensen, Anne")]
    )
    assert [m.members for m in merged] == [(0, 1)]


def test_different_emails_are_different_people_even_with_the_same_name_and_phone():
    merged = merge_contacts(
        [
            PersonRef(name="Anne Jensen", email="anne@firma.dk", phone="86123456"),
            PersonRef(name="Anne Jensen", email="anne.j@firma.dk", phone="86123456"),
        ]
    )
    assert len(merged) == 2


def test_name_shared_by_two_people_with_emails_is_not_guessed_into_either():
    merged = merge_contacts(
        [
            PersonRef(name="Anne Jensen", email="anne@firma.dk"),
            PersonRef(name="Anne Jensen", email="anne@andetfirma.dk"),
            PersonRef(name="Anne Jensen"),
        ]
    )
    assert [m.members for m in merged] == [(0,), (1,), (2,)]


def test_merged_person_keeps_the_most_complete_fields():
    merged = merge_contacts(
        [
            PersonRef(email="anne@firma.dk"),
            PersonRef(name="Anne Marie Jensen", email="Anne@Firma.dk", phone="86 12 34 56"),
        ]
    )
    assert merged[0].person == PersonRef(
        name="Anne Marie Jensen", email="Anne@Firma.dk", phone="86 12 34 56"
    )
    assert merged[0].key == "email:anne@firma.dk"


def test_junk_email_does_not_hide_a_real_one():
    merged = merge_contacts(
        [
            PersonRef(name="Anne Jensen", email="n/a", phone="86123456"),
            PersonRef(name="Anne Jensen", email="anne@firma.dk"),
        ]
    )
    assert merged[0].person.email == "anne@firma.dk"


def test_entries_without_any_details_are_left_out():
    assert merge_contacts([PersonRef(), PersonRef(name="Bo Holm")])[0].members == (1,)


# --- display survivorship --------------------------------------------------------------------


def facts(name, cvr=None, day=1, **fields):
    return CompanyFacts(name=name, cvr=cvr, approach_date=dt.date(2025, 3, day), **fields)


def test_newest_record_with_a_valid_cvr_wins_over_a_newer_one_without():
    chosen = choose_display(
        [facts("Alfa ApS", cvr="10150817", day=1), facts("ALFA", cvr="10150818", day=9)]
    )
    assert (chosen.name, chosen.cvr) == ("Alfa ApS", "10150817")


def test_newest_record_wins_among_records_with_valid_cvr():
    chosen = choose_display(
        [facts("Alfa ApS", cvr="10150817", day=1), facts("Alfa A/S", cvr="DK10150817", day=2)]
    )
    assert (chosen.name, chosen.cvr) == ("Alfa A/S", "10150817")


def test_modified_time_breaks_a_tie_on_approach_date():
    early = dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)
    late = dt.datetime(2025, 3, 1, 9, tzinfo=dt.UTC)
    chosen = choose_display([facts("Late", modified_at=late), facts("Early", modified_at=early)])
    assert chosen.name == "Late"


def test_fields_missing_in_the_winner_come_from_the_next_newest():
    chosen = choose_display(
        [
            facts("Alfa", day=1, postcode="8000", address="Old Street 1", city="Aarhus C"),
            facts("Alfa", day=2, postcode="8000", address="Banegårdspladsen 1"),
            facts("Alfa ApS", day=3),
        ]
    )
    assert (chosen.name, chosen.address, chosen.city) == (
        "Alfa ApS",
        "Banegårdspladsen 1",
        "Aarhus C",
    )


def test_address_is_never_borrowed_from_another_postcode():
    chosen = choose_display(
        [
            facts("Alfa", day=1, postcode="9000", address="Boulevarden 1"),
            facts("Alfa", day=2, postcode="8000"),
        ]
    )
    assert (chosen.postcode, chosen.address) == ("8000", None)


def test_invalid_cvr_is_never_displayed():
    assert choose_display([facts("Alfa", cvr="10150818")]).cvr is None


def test_display_needs_at_least_one_record():
    with pytest.raises(ValueError):
        choose_display([])


def _reference_display(records: list[CompanyFacts]) -> dict:
    """The survivorship rule of the module's docstring, written out plainly: every record put
    in order, then each field from the first record in that order that has it."""

    def order(f: CompanyFacts) -> tuple:
        modified = f.modified_at or dt.datetime.min.replace(tzinfo=dt.UTC)
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=dt.UTC)
        record_id = f.record_id if f.record_id is not None else -1
        return (valid_cvr(f.cvr) is not None, f.approach_date, modified, record_id)

    ordered = sorted(records, key=order, reverse=True)

    def first(rows, field):
        return next((getattr(f, field) for f in rows if str(getattr(f, field) or "").strip()), None)

    postcode = first(ordered, "postcode")
    place = normalise_postcode(postcode)
    same_place = [f for f in ordered if normalise_postcode(f.postcode) in (None, place)]
    return {
        "name": first(ordered, "name"),
        "cvr": valid_cvr(ordered[0].cvr),
        "p_number": first(ordered, "p_number"),
        "postcode": postcode,
        "address": first(same_place, "address"),
        "city": first(same_place, "city"),
    }


@pytest.mark.parametrize("seed", range(30))
def test_display_fields_follow_the_rule_over_random_records(seed):
    rng = random.Random(seed)
    blank = [None, "", "  "]
    records = [
        CompanyFacts(
            name=rng.choice([*blank, "Holm Byg", "Holm Byg ApS"]),
            cvr=rng.choice([None, "10150817", "12345678", "DK 10 15 08 17"]),
            approach_date=dt.date(2025, 1, rng.randrange(1, 6)),
            address=rng.choice([*blank, "Vestergade 1", "Søndergade 2"]),
            postcode=rng.choice([*blank, "8000", "DK-8000", "8200"]),
            city=rng.choice([*blank, "Aarhus C", "Aarhus N"]),
            p_number=rng.choice([None, "1000000001"]),
            modified_at=rng.choice(
                [None, dt.datetime(2025, 1, 1, 9), dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC)]
            ),
            record_id=rng.choice([None, *range(50)]),
        )
        for _ in range(rng.randrange(1, 12))
    ]

    assert display_fields(records)[1] == _reference_display(records)
