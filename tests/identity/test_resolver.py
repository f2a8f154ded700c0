"""Company resolution: the spec's rules in order, the CVR invariant, review proposals, blocking."""

import pytest
from rapidfuzz import fuzz

from connectors.base import CompanyRef
from coordination.identity.normalise import normalise_company_name
from coordination.identity.resolver import CompanyIndex, KnownCompany, record_key

CVR_A = "10150817"
CVR_B = "20000007"
CVR_C = "12345674"
P_NUMBER = "1012345678"


def known(company_id, name, postcode="8000", cvr=None, p_numbers=()):
    return KnownCompany(
        company_id, cvr, normalise_company_name(name), postcode, frozenset(p_numbers)
    )


def record(name, postcode="8000", cvr=None, p_number=None):
    return CompanyRef(name=name, cvr=cvr, p_number=p_number, postcode=postcode)


def outcome(result):
    """(rule, linked company, proposed company)"""
    return result.rule, result.company_id, result.proposal_company_id


# --- rule 1: valid CVR ------------------------------------------------------------------------


def test_formatted_valid_cvr_links_to_the_company_with_that_cvr_whatever_the_name():
    index = CompanyIndex([known(1, "Alfa ApS", cvr=CVR_A)])
    result = index.resolve(record("Something Else", postcode="9000", cvr="DK-10 15 08 17"))
    assert (result.rule, result.company_id, result.score) == ("cvr", 1, 100.0)


def test_valid_cvr_nobody_has_yet_asks_for_a_new_company():
    index = CompanyIndex([known(1, "Alfa ApS", cvr=CVR_A)])
    result = index.resolve(record("Beta ApS", cvr=CVR_B))
    assert (result.rule, result.company_id) == ("new_cvr", None)


def test_invalid_cvr_is_never_an_identity():
    # Company 1 was created from a record whose (invalid) CVR is 10150818; it is not indexed by it.
    index = CompanyIndex([known(1, "Alfa")])
    result = index.resolve(record("Beta", cvr="10150818"))
    assert outcome(result) == ("unresolved", None, None)


def test_invalid_cvr_one_transposition_from_a_known_cvr_in_the_postcode_is_proposed():
    index = CompanyIndex([known(1, "Nordisk Ventilation", cvr=CVR_C)])
    result = index.resolve(record("NV Service", cvr="12435674"))
    assert outcome(result) == ("unresolved", None, 1)
    assert "one transposition" in result.reason


def test_invalid_cvr_one_slip_from_a_known_cvr_in_another_postcode_is_not_proposed():
    index = CompanyIndex([known(1, "Nordisk Ventilation", postcode="9000", cvr=CVR_C)])
    result = index.resolve(record("NV Service", cvr="12435674"))
    assert result.proposal_company_id is None


# --- rule 2: P-number -------------------------------------------------------------------------


def test_known_p_number_links_a_record_without_cvr():
    index = CompanyIndex([known(1, "Alfa ApS", cvr=CVR_A, p_numbers={P_NUMBER})])
    result = index.resolve(record("Alfa afdeling Viby", postcode="8260", p_number="1012 345 678"))
    assert (result.rule, result.company_id) == ("p_number", 1)


def test_p_number_never_links_a_record_to_a_company_with_another_valid_cvr():
    index = CompanyIndex([known(1, "Alfa ApS", cvr=CVR_A, p_numbers={P_NUMBER})])
    result = index.resolve(record("Alfa ApS", cvr=CVR_B, p_number=P_NUMBER))
    assert (result.rule, result.company_id) == ("new_cvr", None)


def test_record_with_new_valid_cvr_joins_a_company_without_cvr_by_p_number():
    index = CompanyIndex([known(1, "Alfa", p_numbers={P_NUMBER})])
    result = index.resolve(record("Alfa ApS", cvr=CVR_A, p_number=P_NUMBER))
    assert (result.rule, result.company_id) == ("p_number", 1)


# --- rule 3: exact name and postcode ----------------------------------------------------------


def test_legal_form_and_aeoeaa_variants_match_exactly_in_the_same_postcode():
    index = CompanyIndex([known(1, "Madsen & Bøgh ApS", cvr=CVR_A)])
    result = index.resolve(record("MADSEN OG BOEGH APS"))
    assert (result.rule, result.company_id, result.score) == ("name_postcode", 1, 100.0)


def test_same_name_in_another_postcode_is_another_company():
    index = CompanyIndex([known(1, "Madsen & Bøgh ApS", postcode="8000")])
    result = index.resolve(record("Madsen & Bøgh ApS", postcode="7400"))
    assert (result.rule, result.company_id) == ("unresolved", None)


def test_record_with_new_valid_cvr_joins_a_company_without_cvr_by_exact_name():
    index = CompanyIndex([known(1, "Madsen & Bøgh")])
    result = index.resolve(record("Madsen og Bøgh ApS", cvr=CVR_A))
    assert (result.rule, result.company_id) == ("name_postcode", 1)


def test_exact_name_prefers_the_company_with_cvr_over_an_unresolved_duplicate():
    index = CompanyIndex([known(1, "Madsen & Bøgh"), known(2, "Madsen & Bøgh A/S", cvr=CVR_A)])
    assert index.resolve(record("Madsen og Bøgh")).company_id == 2


def test_two_different_valid_cvrs_are_never_merged_even_with_identical_names():
    index = CompanyIndex([known(1, "Hansen VVS ApS", cvr=CVR_A)])
    result = index.resolve(record("Hansen VVS ApS", cvr=CVR_B))
    assert outcome(result) == ("new_cvr", None, None)


def test_name_shared_by_two_companies_with_different_cvrs_is_proposed_not_guessed():
    index = CompanyIndex([known(1, "Hansen VVS", cvr=CVR_A), known(2, "Hansen VVS ApS", cvr=CVR_B)])
    result = index.resolve(record("Hansen VVS"))
    assert outcome(result) == ("unresolved", None, 1)


# --- rule 4: fuzzy name in the same postcode ---------------------------------------------------


def test_typo_in_the_same_postcode_links_fuzzily():
    index = CompanyIndex([known(1, "Vestergaards Maskinfabrik A/S", cvr=CVR_A)])
    result = index.resolve(record("Vestergaards Maskinfabrk"))
    assert (result.rule, result.company_id) == ("fuzzy", 1)
    assert 95 <= result.score < 100
    assert "fuzzy name" in result.reason and "postcode 8000" in result.reason


def test_typo_in_another_postcode_does_not_link():
    index = CompanyIndex([known(1, "Vestergaards Maskinfabrik A/S", postcode="8000")])
    result = index.resolve(record("Vestergaards Maskinfabrk", postcode="8200"))
    assert outcome(result) == ("unresolved", None, None)


def test_borderline_fuzzy_match_is_proposed_not_linked():
    index = CompanyIndex([known(1, "Jensens Auto", cvr=CVR_A)])
    result = index.resolve(record("Jensens Anto"))
    assert outcome(result) == ("unresolved", None, 1)
    assert 85 <= result.score < 95


def test_clearly_different_name_in_the_postcode_is_neither_linked_nor_proposed():
    index = CompanyIndex([known(1, "Jensens Auto")])
    result = index.resolve(record("Aarhus Tandklinik"))
    assert (result.rule, result.proposal_company_id) == ("unresolved", None)


def test_record_without_postcode_is_never_matched_fuzzily():
    index = CompanyIndex([known(1, "Vestergaards Maskinfabrik", postcode=None)])
    result = index.resolve(record("Vestergaards Maskinfabrk", postcode=None))
    assert outcome(result) == ("unresolved", None, None)


def test_record_without_postcode_matches_the_same_name_without_postcode():
    index = CompanyIndex([known(1, "Vestergaards Maskinfabrik", postcode=None)])
    result = index.resolve(record("VESTERGAARDS MASKINFABRIK APS", postcode=" "))
    assert outcome(result) == ("name_postcode", 1, None)


def test_thresholds_are_settings():
    index = CompanyIndex([known(1, "Jensens Auto")], certain=90, propose=80)
    assert index.resolve(record("Jensens Anto")).rule == "fuzzy"


def test_record_with_valid_cvr_never_links_fuzzily_but_proposes_the_company_without_cvr():
    index = CompanyIndex([known(1, "Vestergaards Maskinfabrik")])
    result = index.resolve(record("Vestergaards Maskinfabrk", cvr=CVR_A))
    assert outcome(result) == ("new_cvr", None, 1)


# --- coordinators' rejections ----------------------------------------------------------------


def test_rejected_pair_is_neither_linked_nor_proposed():
    index = CompanyIndex([known(1, "Madsen & Bøgh ApS", cvr=CVR_A)])
    rejected = {(record_key(record("Madsen & Bøgh")), 1)}
    result = index.resolve(record("Madsen & Bøgh"), rejected_pairs=rejected)
    assert outcome(result) == ("unresolved", None, None)


def test_rejection_holds_for_every_spelling_with_the_same_key():
    index = CompanyIndex([known(1, "Jensens Auto")])
    rejected = {(record_key(record("Jensens Anto ApS")), 1)}
    result = index.resolve(record("JENSENS ANTO"), rejected_pairs=rejected)
    assert result.proposal_company_id is None


def test_rejection_of_one_company_leaves_the_next_best_candidate():
    index = CompanyIndex([known(1, "Madsen & Bøgh ApS", cvr=CVR_A), known(2, "Madsen og Bøgh")])
    rejected = {(record_key(record("Madsen & Bøgh")), 2)}
    assert index.resolve(record("Madsen & Bøgh"), rejected_pairs=rejected).company_id == 1
    rejected = {(record_key(record("Madsen & Bøgh")), 1)}
    assert index.resolve(record("Madsen & Bøgh"), rejected_pairs=rejected).company_id == 2


def test_rejected_cvr_link_leaves_the_record_unresolved_not_a_second_company_with_that_cvr():
    index = CompanyIndex([known(1, "Alfa ApS", cvr=CVR_A)])
    rejected = {(record_key(record("Alfa", cvr=CVR_A)), 1)}
    result = index.resolve(record("Alfa", cvr=CVR_A), rejected_pairs=rejected)
    assert (result.rule, result.company_id) == ("unresolved", None)


def test_record_key_is_the_cvr_when_valid_else_name_and_postcode():
    assert record_key(record("Alfa ApS", cvr="DK 10150817")) == f"cvr:{CVR_A}"
    assert record_key(record("Alfa ApS", cvr="10150818")) == "name:alfa|8000"


# --- blocking and index maintenance ----------------------------------------------------------


def test_fuzzy_comparison_stays_inside_the_postcode_block():
    compared = []

    def spy(query, choice, **kwargs):
        compared.append(choice)
        return fuzz.ratio(query, choice, **kwargs)

    companies = [
        known(postcode * 100 + n, f"Firma {postcode} nr {n}", postcode=str(postcode))
        for postcode in (8000, 8200, 9000)
        for n in range(50)
    ]
    index = CompanyIndex(companies, scorer=spy)
    index.resolve(record("Helt Ukendt Virksomhed", postcode="8200"))
    assert len(compared) == 50
    assert all(" 8200 " in name for name in compared)


def test_removed_company_is_no_longer_found():
    index = CompanyIndex([known(1, "Alfa ApS", cvr=CVR_A, p_numbers={P_NUMBER})])
    index.remove(1)
    assert index.resolve(record("Alfa ApS", cvr=CVR_A, p_number=P_NUMBER)).rule == "new_cvr"
    assert len(index) == 0


def test_the_index_gives_back_the_companies_it_was_given():
    companies = [
        known(1, "Alfa ApS", cvr=CVR_A),
        known(2, "Beta", postcode=None, p_numbers={P_NUMBER}),
        known(3, "Gamma", p_numbers={P_NUMBER, "1012345679"}),
    ]
    index = CompanyIndex(companies)
    assert [index.get(c.id) for c in companies] == companies
    assert sorted(index, key=lambda c: c.id) == companies
    assert index.remove(3) == companies[2]
    assert index.get(3) is None and 3 not in index


def test_companies_added_all_at_once_are_found_as_when_added_one_by_one():
    # As a sync run loads them: plain tuples, the P-numbers as a mutable set.
    rows = [
        (1, CVR_A, normalise_company_name("Alfa ApS"), "8000", set()),
        (2, None, normalise_company_name("Vestergaards Maskinfabrik"), "8000", {P_NUMBER}),
        (3, None, normalise_company_name("Vestergaards Maskinfabrik"), "9000", set()),
        (4, None, normalise_company_name("Gamma"), None, {"1012345679", "1012345680"}),
    ]
    at_once = CompanyIndex()
    at_once.add_all(rows)
    one_by_one = CompanyIndex()
    for company_id, cvr, key, postcode, p_numbers in rows:
        one_by_one.add(KnownCompany(company_id, cvr, key, postcode, frozenset(p_numbers)))
    assert sorted(at_once, key=lambda c: c.id) == sorted(one_by_one, key=lambda c: c.id)
    probes = [
        record("Alfa", postcode="9000", cvr=CVR_A),
        record("Helt Andet", postcode="6000", p_number=P_NUMBER),
        record("Vestergaard Maskinfabrik", postcode="9000"),  # a typo: the postcode's block
        record("Vestergaards Maskinfabrik", postcode="8000"),
        record("Gamma", postcode=None),
        record("Helt Andet", postcode="6000", p_number="1012345680"),
    ]
    expected = [("cvr", 1), ("p_number", 2), ("fuzzy", 3), ("name_postcode", 2)]
    expected += [("name_postcode", 4), ("p_number", 4)]
    for probe, (rule, company_id) in zip(probes, expected, strict=True):
        assert outcome(one_by_one.resolve(probe)) == (rule, company_id, None)
        assert outcome(at_once.resolve(probe)) == (rule, company_id, None)


def test_adding_all_at_once_refuses_a_cvr_twice_as_adding_one_does():
    index = CompanyIndex()
    with pytest.raises(ValueError, match="already belongs to company 1"):
        index.add_all([(1, CVR_A, "alfa", "8000", set()), (2, CVR_A, "beta", "8000", set())])
    with pytest.raises(ValueError, match="already in the index"):
        index.add_all([(1, None, "alfa", "8000", set())])


def test_a_p_number_of_several_companies_identifies_one_again_once_the_others_are_gone():
    index = CompanyIndex(
        [
            known(1, "Alfa", p_numbers={P_NUMBER}),
            known(2, "Beta", postcode="9000", p_numbers={P_NUMBER}),
            known(3, "Gamma", postcode="7000", p_numbers={P_NUMBER, "1012345679"}),
        ]
    )
    probe = record("Helt Andet", postcode="6000", p_number=P_NUMBER)
    assert outcome(index.resolve(probe)) == ("unresolved", None, None)
    index.remove(2)
    assert outcome(index.resolve(probe)) == ("unresolved", None, None)
    index.remove(1)
    assert outcome(index.resolve(probe)) == ("p_number", 3, None)
    index.update(known(3, "Gamma", postcode="7000"))
    assert outcome(index.resolve(probe)) == ("unresolved", None, None)


def test_a_name_of_several_companies_in_a_postcode_identifies_one_again_once_the_others_are_gone():
    index = CompanyIndex(
        [
            known(1, "Hansen VVS", cvr=CVR_A),
            known(2, "Hansen VVS ApS", cvr=CVR_B),
            known(3, "Hansen VVS", postcode=None),
            known(4, "Hansen VVS", postcode="9000"),
        ]
    )
    assert outcome(index.resolve(record("Hansen VVS"))) == ("unresolved", None, 1)
    index.remove(1)
    assert outcome(index.resolve(record("Hansen VVS"))) == ("name_postcode", 2, None)
    index.remove(2)
    assert outcome(index.resolve(record("Hansen VVS"))) == ("unresolved", None, None)
    for postcode, company_id in ((None, 3), ("9000", 4)):
        result = index.resolve(record("Hansen VVS", postcode=postcode))
        assert outcome(result) == ("name_postcode", company_id, None)


def test_updated_company_is_found_by_its_new_cvr():
    index = CompanyIndex([known(1, "Alfa")])
    index.update(known(1, "Alfa", cvr=CVR_A))
    assert index.resolve(record("Other name", postcode="9000", cvr=CVR_A)).company_id == 1


def test_a_cvr_belongs_to_one_company_only():
    index = CompanyIndex([known(1, "Alfa", cvr=CVR_A)])
    with pytest.raises(ValueError, match="already belongs to company 1"):
        index.add(known(2, "Beta", cvr=CVR_A))


def test_known_company_from_a_record_uses_the_normalised_keys():
    ref = CompanyRef(
        name="Madsen & Bøgh ApS", cvr="DK-10150817", p_number="1012 345678", postcode=" 8000 "
    )
    assert KnownCompany.from_ref(7, ref) == KnownCompany(
        7, CVR_A, "madsen og boegh", "8000", frozenset({P_NUMBER})
    )


def test_record_without_name_or_valid_cvr_stays_unresolved():
    index = CompanyIndex([known(1, "Alfa")])
    assert index.resolve(record(None, cvr="123")).rule == "unresolved"


# --- loading a whole index at once --------------------------------------------------------------


def _index_state(index):
    """Everything the index keeps, look-up structures included, in comparable form."""
    blocks = {pc: (list(b.ids), list(b.keys)) for pc, b in index._blocks.items()}
    return (index._companies, index._by_cvr, index._by_p_number, index._by_name, blocks)


def _random_columns(rng):
    """Companies as a sync run loads them: shared names within a postcode, no postcode, empty
    name keys, P-numbers shared by several companies, one or several P-numbers."""
    names = ["alfa", "beta", "gamma", "hansen vvs", "jensen tomrer", "", "alfa smed"]
    postcodes = ["8000", "9000", "7100", None]
    p_numbers = [f"10123456{i:02d}" for i in range(12)]
    ids = rng.sample(range(1, 500), rng.randrange(0, 40))
    cvr_pool = rng.sample(range(10_000_000, 10_000_100), len(ids))
    columns = ([], [], [], [], [])
    for company_id, cvr in zip(ids, cvr_pool, strict=True):
        units = frozenset(rng.sample(p_numbers, rng.choice((0, 0, 1, 1, 2, 3))))
        packed = None if not units else next(iter(units)) if len(units) == 1 else units
        row = (
            company_id,
            str(cvr) if rng.random() < 0.5 else None,
            rng.choice(names) + rng.choice(("", "", " aps")),
            rng.choice(postcodes),
            packed,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _as_rows(columns):
    ids, cvrs, keys, postcodes, packed = columns
    units = [
        frozenset() if p is None else frozenset((p,)) if isinstance(p, str) else p for p in packed
    ]
    return list(zip(ids, cvrs, keys, postcodes, units, strict=True))


@pytest.mark.parametrize("seed", range(40))
def test_an_index_loaded_column_by_column_is_the_index_added_company_by_company(seed):
    import random

    rng = random.Random(seed)
    columns = _random_columns(rng)
    loaded = CompanyIndex()
    loaded.load(*columns)
    added = CompanyIndex()
    for row in _as_rows(columns):
        added.add(KnownCompany(*row))
    assert _index_state(loaded) == _index_state(added)
    # and it goes on as one: changes and resolutions alike
    names = ["alfa", "alfa smed", "alfs", "hansen vvs", "jensen tomer", "beta", "gama", ""]
    for _ in range(30):
        probe = CompanyRef(
            name=rng.choice(names),
            cvr=rng.choice([None, "10000042", "1000004", "100000420", "10000043", "abc"]),
            p_number=rng.choice([None, "1012345601", "1012345605", "1012345699"]),
            postcode=rng.choice(["8000", "9000", "7100", None]),
        )
        assert loaded.resolve(probe) == added.resolve(probe)
    for company_id in rng.sample(columns[0], min(5, len(columns[0]))):
        assert loaded.remove(company_id) == added.remove(company_id)
    loaded.add(KnownCompany(999, None, "alfa", "8000", frozenset({"1012345601"})))
    added.add(KnownCompany(999, None, "alfa", "8000", frozenset({"1012345601"})))
    assert _index_state(loaded) == _index_state(added)


def test_loading_refuses_what_adding_refuses():
    with pytest.raises(ValueError, match="already belongs to company 1"):
        CompanyIndex().load([1, 2], [CVR_A, CVR_A], ["alfa", "beta"], ["8000", None], [None, None])
    with pytest.raises(ValueError, match="already in the index"):
        CompanyIndex().load([1, 1], [None, None], ["alfa", "beta"], ["8000", None], [None, None])
    with pytest.raises(ValueError, match="empty index"):
        CompanyIndex([known(1, "Alfa")]).load([2], [None], ["beta"], ["8000"], [None])
    with pytest.raises(ValueError, match="one length"):
        CompanyIndex().load([1, 2], [None], ["alfa"], ["8000"], [None])
