"""The competence-needs report: what it counts, where, when, by which group, and what it hides."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import delete, func, select

from coordination.models import ApproachRecord, Need, ReportFactState
from coordination.reports import Period, ReportRequestError
from coordination.reports.competence_needs import CompetenceNeedsRequest, competence_needs_report
from coordination.reports.facts import refresh_report_facts
from tests.reports import builders as b

YEAR = Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
MARCH = dt.date(2025, 3, 14)
WELDING = b.need("upskilling", "Svejsning", "komp:svejsning")
CNC = b.need("upskilling", "CNC", "komp:cnc")
LEAN = b.need("upskilling", "Lean", "komp:lean")
WELDER = b.need("recruitment", "Svejser", "disco:7212")
SMITH = b.need("recruitment", "Smed", "disco:7214")


@pytest.fixture
def vaeksthus(session):
    return b.source(session, b.organisation(session, "Væksthus Midtjylland", "vaeksthus"))


def report(session, area="region-midtjylland", period=YEAR, codelists=None, **options):
    """The report counted from the approaches, checked against the same report counted from
    freshly built report facts."""
    request = CompetenceNeedsRequest(area=area, period=period, **options)
    session.execute(delete(ReportFactState))
    counted = competence_needs_report(session, request, codelists)
    refresh_report_facts(session)
    assert competence_needs_report(session, request, codelists) == counted
    return counted


def need_row(found, code, need_type=None):
    rows = [
        r
        for r in found["needs"]
        if r["code"] == code and (need_type is None or r["need_type"] == need_type)
    ]
    assert len(rows) == 1, [r["code"] for r in found["needs"]]
    return rows[0]


def cell(row, group):
    return next((c for c in row["cells"] if c["group"] == group), None)


def companies_with(session, source, needs, count=3, municipality="751", section=None, on=MARCH):
    made = []
    for _ in range(count):
        company = b.company(session, municipality, section)
        b.approach(session, company, on, source, needs)
        made.append(company)
    return made


# --- what is counted ----------------------------------------------------------------------------


def test_each_sources_own_word_for_a_need_ends_in_the_same_report_row(
    session, jobcenter, veu, vaeksthus
):
    words = [
        b.noted(vaeksthus, "upskilling", "DIG", "DIG"),  # the CRM's code
        b.noted(veu, "upskilling", "It i arbejdet", "AMU-IT"),  # the VEU API's AMU code
        b.noted(jobcenter, "upskilling", "Digitale kompetencer"),  # the jobcentre's free text
    ]
    for source, word in zip((vaeksthus, veu, jobcenter), words, strict=True):
        b.approach(session, b.company(session), MARCH, source, [word])
    row = need_row(report(session), "komp:digitale-kompetencer")
    assert (row["label"], row["companies"], row["approaches"]) == ("Digitale kompetencer", 3, 3)
    assert [r["code"] for r in report(session)["needs"]] == ["komp:digitale-kompetencer"]


def test_recruitment_needs_as_disco_codes_and_titles_meet_in_one_occupation_row(
    session, jobcenter, veu
):
    words = [
        b.noted(jobcenter, "recruitment", "7212 Svejsere", "7212"),
        b.noted(jobcenter, "recruitment", "Svejser"),
        b.noted(veu, "recruitment", "svejsere"),
    ]
    for source, word in zip((jobcenter, jobcenter, veu), words, strict=True):
        b.approach(session, b.company(session), MARCH, source, [word])
    row = need_row(report(session), "disco:7212")
    assert (row["need_type"], row["need_type_label"]) == ("recruitment", "Rekruttering")
    assert (row["companies"], row["approaches"]) == (3, 3)


def test_companies_and_approaches_are_counted_apart(session, jobcenter):
    first, second, third = companies_with(session, jobcenter, [WELDING])
    b.approach(session, first, dt.date(2025, 5, 2), jobcenter, [WELDING])
    row = need_row(report(session), "komp:svejsning")
    assert (row["companies"], row["approaches"]) == (3, 4)


def test_a_need_noted_in_both_records_of_a_joint_approach_counts_once(session, jobcenter, veu):
    for _ in range(3):
        b.approach(
            session, b.company(session), MARCH, jobcenter, [WELDING], joint=[(veu, [WELDING])]
        )
    row = need_row(report(session), "komp:svejsning")
    assert (row["companies"], row["approaches"]) == (3, 3)


def test_unclassified_needs_are_counted_together_per_need_type(session, jobcenter):
    labels = ["Bæredygtig emballage", "Sikkerhedskultur på værkstedet", "Noget helt tredje"]
    for label in labels:
        b.approach(session, b.company(session), MARCH, jobcenter, [b.need("upskilling", label)])
    row = need_row(report(session), "unclassified")
    assert (row["need_type"], row["label"], row["companies"]) == (
        "upskilling",
        "Ikke klassificeret",
        3,
    )


def test_approach_counts_of_all_needs_add_up_to_the_approach_need_pairs(session, jobcenter, veu):
    for index in range(9):
        needs = [[WELDING, CNC], [CNC], [WELDING, LEAN, WELDER]][index % 3]
        company = b.company(session, "751" if index % 2 else "657")
        b.approach(session, company, MARCH, jobcenter, needs, joint=[(veu, needs[:1])])
        b.approach(session, company, dt.date(2025, 9, 1), veu, needs[-1:])
    distinct_pairs = (
        select(ApproachRecord.approach_id, Need.type, Need.taxonomy_code)
        .join(Need, Need.source_record_id == ApproachRecord.source_record_id)
        .distinct()
        .subquery()
    )
    pairs = session.execute(select(func.count()).select_from(distinct_pairs)).scalar_one()
    found = report(session)
    assert all(not row["suppressed"] for row in found["needs"])
    assert sum(row["approaches"] for row in found["needs"]) == pairs == 3 * (2 + 1 + 3) + 9


def test_planned_approaches_do_not_count(session, jobcenter):
    companies_with(session, jobcenter, [WELDING])
    for _ in range(3):
        b.approach(session, b.company(session), MARCH, jobcenter, [CNC], planned=True)
    assert [r["code"] for r in report(session)["needs"]] == ["komp:svejsning"]


def test_the_period_includes_its_first_and_last_day_and_nothing_outside(session, jobcenter):
    for day in (dt.date(2025, 1, 1), dt.date(2025, 12, 31), dt.date(2025, 6, 1)):
        b.approach(session, b.company(session), day, jobcenter, [WELDING])
    b.approach(session, b.company(session), dt.date(2026, 1, 1), jobcenter, [WELDING])
    assert need_row(report(session), "komp:svejsning")["companies"] == 3


# --- areas --------------------------------------------------------------------------------------


def test_a_company_in_herning_counts_for_vestjylland_and_not_for_oestjylland(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], municipality="657")
    assert need_row(report(session, "rar-vestjylland"), "komp:svejsning")["companies"] == 3
    assert report(session, "rar-oestjylland")["needs"] == []


def test_the_region_counts_both_council_areas(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], municipality="657")
    companies_with(session, jobcenter, [WELDING], municipality="751")
    found = report(session, "region-midtjylland")
    assert need_row(found, "komp:svejsning")["companies"] == 6
    assert found["area"]["name"] == "Region Midtjylland"
    assert len(found["area"]["municipalities"]) == 19


def test_a_municipality_code_is_an_area_of_its_own(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], municipality="657")
    companies_with(session, jobcenter, [CNC], municipality="661")
    found = report(session, "657")
    assert [r["code"] for r in found["needs"]] == ["komp:svejsning"]
    assert found["area"] == {"id": "657", "name": "Herning", "municipalities": ["657"]}


def test_companies_without_a_known_municipality_belong_to_no_area(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], municipality=None)
    assert report(session, "region-midtjylland")["needs"] == []


def test_a_council_area_counts_a_municipality_only_while_it_belonged_to_it(
    session, jobcenter, tmp_path
):
    # From 1 July 2025 Herning (657) moves to RAR Østjylland in this made-up reform.
    reformed = b.herning_moves_to_oestjylland(tmp_path / "codelists", dt.date(2025, 7, 1))
    companies_with(session, jobcenter, [WELDING], municipality="657", on=dt.date(2025, 3, 1))
    companies_with(session, jobcenter, [CNC], municipality="657", on=dt.date(2025, 9, 1))
    found = report(session, "rar-oestjylland", codelists=reformed)
    assert [r["code"] for r in found["needs"]] == ["komp:cnc"]
    assert "657" in found["area"]["municipalities"]


def test_an_unknown_area_is_refused(session):
    with pytest.raises(ReportRequestError) as refused:
        report(session, "rar-nordjylland")
    assert refused.value.field == "area"


# --- the previous period ------------------------------------------------------------------------


def test_each_figure_carries_the_previous_period_of_equal_length_and_the_change(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], count=5, on=dt.date(2025, 2, 1))
    companies_with(session, jobcenter, [WELDING], count=3, on=dt.date(2024, 12, 31))
    companies_with(session, jobcenter, [WELDING], count=4, on=dt.date(2024, 11, 1))  # too early
    found = report(session, period=Period(dt.date(2025, 1, 1), dt.date(2025, 2, 28)))
    assert found["previous_period"] == {"from": "2024-11-03", "to": "2024-12-31"}
    row = need_row(found, "komp:svejsning")
    assert (row["companies"], row["previous_companies"], row["change_companies"]) == (5, 3, 2)
    assert (row["approaches"], row["previous_approaches"], row["change_approaches"]) == (5, 3, 2)


def test_a_need_seen_only_in_the_previous_period_is_listed_with_zero_now(session, jobcenter):
    companies_with(session, jobcenter, [LEAN], count=3, on=dt.date(2024, 6, 1))
    row = need_row(report(session), "komp:lean")
    assert (row["companies"], row["previous_companies"], row["change_companies"]) == (0, 3, -3)


def test_the_change_is_hidden_when_the_previous_figure_is_suppressed(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], count=4)
    companies_with(session, jobcenter, [WELDING], count=1, on=dt.date(2024, 6, 1))
    row = need_row(report(session), "komp:svejsning")
    assert (row["companies"], row["previous_companies"], row["change_companies"]) == (4, None, None)
    assert row["previous_suppressed"] and not row["suppressed"]


# --- periods that start or end within a month -------------------------------------------------


def busy_companies(session, sources, count=30, seed=5):
    """``count`` companies in Herning and Aarhus, each approached about six times between
    September 2024 and July 2025 (several times on some days), by one source or jointly by two,
    noting one to three needs among welding, CNC, lean and an unclassified one."""
    chosen = random.Random(seed)
    needs = [WELDING, CNC, LEAN, b.need("upskilling", "Bæredygtig emballage")]
    first, days = dt.date(2024, 9, 1), 330
    for _ in range(count):
        company = b.company(session, chosen.choice(["657", "751"]), chosen.choice("CFG"))
        visits = [first + dt.timedelta(days=chosen.randrange(days)) for _ in range(5)]
        for on in [*visits, visits[0]]:
            source, other = chosen.sample(sources, 2)
            noted = chosen.sample(needs, chosen.randint(1, 3))
            joint = [(other, chosen.sample(needs, 1))] if chosen.random() < 0.3 else []
            b.approach(session, company, on, source, noted, joint=joint)


@pytest.mark.parametrize(
    "start, end",
    [
        (dt.date(2025, 2, 10), dt.date(2025, 5, 20)),  # partial months at both ends
        (dt.date(2025, 3, 1), dt.date(2025, 5, 31)),  # whole months, previous from 30 Nov
        (dt.date(2025, 2, 15), dt.date(2025, 3, 14)),  # no whole month
        (dt.date(2025, 1, 31), dt.date(2025, 4, 1)),  # one day of each end month
        (dt.date(2024, 10, 1), dt.date(2025, 6, 30)),  # whole months on both sides
    ],
)
@pytest.mark.parametrize("group_by", ["sector", "municipality", "organisation_type"])
def test_periods_cut_within_months_count_the_same_from_the_facts(
    session, jobcenter, veu, vaeksthus, start, end, group_by
):
    busy_companies(session, [jobcenter, veu, vaeksthus])
    found = report(session, period=Period(start, end), group_by=group_by)
    published = [r for r in found["needs"] if r["companies"] is not None]
    assert published and found["total"]["companies"] > 3


def test_a_municipality_that_joins_an_area_mid_month_counts_from_that_day(
    session, jobcenter, veu, vaeksthus, tmp_path
):
    # From 15 March 2025 Herning (657) moves to RAR Østjylland in this made-up reform.
    reformed = b.herning_moves_to_oestjylland(tmp_path / "codelists", dt.date(2025, 3, 15))
    busy_companies(session, [jobcenter, veu, vaeksthus])
    for group_by in ("sector", "municipality", "organisation_type"):
        for period in (YEAR, Period(dt.date(2025, 2, 1), dt.date(2025, 6, 30))):
            for area in ("rar-oestjylland", "rar-vestjylland"):
                report(session, area, period, reformed, group_by=group_by)


# --- grouping -----------------------------------------------------------------------------------


def test_group_by_sector_uses_the_ten_grouping_and_an_unknown_group(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], count=3, section="C")
    companies_with(session, jobcenter, [WELDING], count=4, section="B")
    companies_with(session, jobcenter, [WELDING], count=3, section=None)
    found = report(session, group_by="sector")
    assert [(g["group"], g["companies"]) for g in found["groups"]] == [("2", 7), ("unknown", 3)]
    assert found["groups"][0]["group_label"] == "Industri, råstofindvinding og forsyningsvirksomhed"
    assert found["groups"][1]["group_label"] == "Ukendt branche"


def test_group_by_municipality_gives_each_municipality_its_name(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], municipality="657")
    companies_with(session, jobcenter, [WELDING], count=4, municipality="751")
    row = need_row(report(session, group_by="municipality"), "komp:svejsning")
    assert [(c["group"], c["group_label"], c["companies"]) for c in row["cells"]] == [
        ("657", "Herning", 3),
        ("751", "Aarhus", 4),
    ]


def test_group_by_organisation_type_counts_the_organisation_that_noted_the_need(
    session, jobcenter, veu
):
    for _ in range(3):
        b.approach(session, b.company(session), MARCH, jobcenter, [WELDING], joint=[(veu, [CNC])])
    found = report(session, group_by="organisation_type")
    assert [(c["group"], c["companies"]) for c in need_row(found, "komp:svejsning")["cells"]] == [
        ("jobcenter", 3)
    ]
    assert [(c["group"], c["companies"]) for c in need_row(found, "komp:cnc")["cells"]] == [
        ("veu", 3)
    ]
    assert [g["group_label"] for g in found["groups"]] == ["Jobcenter", "VEU-center"]


def test_a_need_total_counts_each_company_once_over_all_groups(session, jobcenter, veu):
    for _ in range(3):
        b.approach(
            session, b.company(session), MARCH, jobcenter, [WELDING], joint=[(veu, [WELDING])]
        )
    row = need_row(report(session, group_by="organisation_type"), "komp:svejsning")
    assert [c["companies"] for c in row["cells"]] == [3, 3]
    assert row["companies"] == 3


def test_occupations_can_be_rolled_up_to_their_sub_major_group(session, jobcenter):
    companies_with(session, jobcenter, [WELDER], count=2)
    companies_with(session, jobcenter, [SMITH], count=2)
    found = report(session, occupation_level="sub_major")
    row = need_row(found, "disco:72")
    assert (row["label"], row["companies"]) == ("Metal- og maskinarbejde", 4)
    major = need_row(report(session, occupation_level="major"), "disco:7")
    assert major["label"] == "Håndværkspræget arbejde"


# --- top needs and suppression ------------------------------------------------------------------


def test_top_needs_per_group_are_the_most_expressed_published_needs(session, jobcenter):
    companies_with(session, jobcenter, [WELDING, CNC], count=5, section="C")
    companies_with(session, jobcenter, [LEAN], count=3, section="C")
    companies_with(session, jobcenter, [b.need("upskilling", "Ukendt ønske")], count=9, section="C")
    companies_with(session, jobcenter, [WELDING], count=3, section="F")
    found = report(session, top=2)
    industry = next(t for t in found["top_needs"] if t["group"] == "2")
    assert [(n["code"], n["companies"]) for n in industry["needs"]] == [
        ("komp:cnc", 5),
        ("komp:svejsning", 5),
    ]
    assert found["top_needs_overall"][0] == {
        "need_type": "upskilling",
        "need_type_label": "Opkvalificering",
        "code": "komp:svejsning",
        "label": "Svejsning",
        "companies": 8,
        "approaches": 8,
    }


def test_a_cell_of_fewer_than_three_companies_and_its_complement_are_suppressed(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], count=2, section="F")
    companies_with(session, jobcenter, [WELDING], count=4, section="C")
    companies_with(session, jobcenter, [WELDING], count=6, section="G")
    row = need_row(report(session), "komp:svejsning")
    building, industry, trade = (cell(row, g) for g in ("3", "2", "4"))
    assert building["companies"] is None and building["approaches"] is None
    assert building["suppressed"]
    assert industry["suppressed"] and industry["companies"] is None  # else 12 - 6 - 4 = 2
    assert (trade["companies"], row["companies"]) == (6, 12)


def test_suppressed_cells_are_never_among_the_top_needs(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], count=2, section="C")
    companies_with(session, jobcenter, [CNC], count=2, section="C")
    found = report(session)
    assert found["top_needs"] == [
        {"group": "2", "group_label": found["groups"][0]["group_label"], "needs": []}
    ]
    assert found["top_needs_overall"] == []


def test_a_period_before_an_areas_first_version_counts_nothing(session, jobcenter):
    companies_with(session, jobcenter, [WELDING], on=dt.date(1990, 3, 1))
    found = report(session, "rar-vestjylland", Period(dt.date(1990, 1, 1), dt.date(1990, 12, 31)))
    assert found["needs"] == [] and found["area"]["municipalities"] == []
