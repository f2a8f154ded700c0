"""The pages in a real browser (Chromium through Playwright) over a seeded region: log in as each
role, check a company by CVR number and by a misspelled name, see its timeline, resolve a flag,
accept a match proposal, download a report and compare it with the API. Every page visited is
saved as a screenshot in ``artifacts/screenshots/``."""

from __future__ import annotations

import csv
import io
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect

from tests.web import OLD_NAME, ROBOT_CVR, ROBOT_NAME, ROBOT_SLIP_NAME

START_PAGES = {
    "visitor": "Tjek virksomhed",
    "coordinator": "Flag-indbakke",
    "council": "Rapporter",
    "admin": "Synkroniseringsstatus",
}


def snapshot(page: Page, screenshots, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def heading(page: Page, text: str):
    return page.get_by_role("heading", name=text, level=1)


def test_each_role_logs_in_to_its_own_start_page(page, log_in, screenshots):
    page.goto("/log-ind")
    expect(heading(page, "Log ind")).to_be_visible()
    snapshot(page, screenshots, "log-ind")

    for role, start in START_PAGES.items():
        log_in(role)
        expect(heading(page, start)).to_be_visible()
        expect(page.get_by_test_id("who")).to_contain_text("Jobcenter Aarhus")
        navigation = page.get_by_role("navigation", name="Hovedmenu")
        expect(navigation.get_by_role("link", name="Synkroniseringsstatus")).to_have_count(
            1 if role == "admin" else 0
        )
        page.get_by_role("button", name="Log ud").click()
        expect(heading(page, "Log ind")).to_be_visible()


def test_a_consultant_checks_a_company_by_cvr_and_sees_its_timeline(page, log_in, screenshots):
    log_in("visitor")
    snapshot(page, screenshots, "tjek-virksomhed")

    page.get_by_label("CVR-nummer eller virksomhedsnavn").fill(ROBOT_CVR)
    page.get_by_role("button", name="Søg", exact=True).click()

    expect(heading(page, ROBOT_NAME)).to_be_visible()
    items = page.get_by_test_id("timeline-item")
    expect(items).to_have_count(4)
    dates = [items.nth(i).locator("time").get_attribute("datetime") for i in range(4)]
    assert dates == sorted(dates, reverse=True)
    expect(items.first).to_contain_text("Jobcenter Aarhus + Jobcenter Randers")
    expect(items.first).to_contain_text("Fælles")
    expect(page.get_by_test_id("check-recorded")).to_contain_text("Jobcenter Aarhus")
    snapshot(page, screenshots, "virksomhed")


def test_a_consultant_finds_a_company_by_a_misspelled_name(page, log_in, screenshots):
    log_in("visitor")

    page.get_by_label("CVR-nummer eller virksomhedsnavn").fill("Østjysk Robbotteknik")
    page.get_by_role("button", name="Søg", exact=True).click()

    results = page.get_by_test_id("search-results")
    row = results.get_by_role("row").filter(has_text=ROBOT_CVR)
    expect(row).to_contain_text("Skanderborg")
    expect(results).to_contain_text(ROBOT_SLIP_NAME)
    snapshot(page, screenshots, "tjek-virksomhed-resultater")
    row.get_by_role("link", name=ROBOT_NAME).click()
    expect(page.get_by_test_id("company-cvr")).to_have_text(ROBOT_CVR)
    expect(page.get_by_test_id("timeline-item")).to_have_count(4)


def test_search_results_appear_while_typing(page, log_in):
    log_in("visitor")

    page.get_by_label("CVR-nummer eller virksomhedsnavn").press_sequentially("Gammel Smed")

    expect(page.get_by_test_id("search-results")).to_contain_text(OLD_NAME)
    page.get_by_role("link", name=OLD_NAME).click()
    expect(page.get_by_test_id("no-contact")).to_have_text("Ingen kontakt de seneste 180 dage.")


def test_a_council_analyst_downloads_a_report_with_the_api_s_numbers(page, log_in, screenshots):
    token = log_in("council", organisation="RAR Østjylland")
    expect(page.get_by_test_id("chart-top-needs")).to_be_visible()
    expect(page.get_by_test_id("chart-trend")).to_be_visible()
    snapshot(page, screenshots, "rapporter")

    link = page.get_by_test_id("download-csv")
    with page.expect_download() as download:
        link.click()
    rows = list(
        csv.DictReader(
            io.StringIO(download.value.path().read_bytes().decode("utf-8-sig")), delimiter=";"
        )
    )

    query = parse_qs(urlsplit(link.get_attribute("href")).query)
    answer = page.request.get(
        "/api/v1/reports/competence-needs",
        params={key: values[0] for key, values in query.items()},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.ok
    report = answer.json()
    downloaded = {
        (row["group"], row["need_code"]): row["companies"] for row in rows if row["companies"]
    }
    expected = {("total", need["code"]): str(need["companies"]) for need in report["needs"]}
    expected[("total", "total")] = str(report["total"]["companies"])
    for need in report["needs"]:
        for cell in need["cells"]:
            if cell["companies"] is not None:
                expected[(cell["group"], need["code"])] = str(cell["companies"])
    assert {key: downloaded[key] for key in expected} == expected
    assert expected[("total", "komp:svejsning")] == "5"


def test_a_council_analyst_reads_the_coordination_report(page, log_in, screenshots):
    log_in("council", organisation="RAR Østjylland")

    page.get_by_role("link", name="Koordinering").click()

    expect(page.get_by_test_id("chart-approaches-per-company")).to_be_visible()
    expect(page.get_by_test_id("chart-organisations-per-company")).to_be_visible()
    expect(page.get_by_test_id("municipality-table")).to_contain_text("Skanderborg")
    snapshot(page, screenshots, "rapporter-koordinering")


def test_an_admin_sees_the_sync_status_of_every_source(page, log_in, screenshots):
    log_in("admin")

    sources = page.get_by_test_id("sources")
    expect(sources.get_by_role("row")).to_have_count(3)
    expect(sources).to_contain_text("jobcenter-1")
    expect(page.get_by_test_id("all-fresh")).to_be_visible()
    expect(page.get_by_test_id("runs")).to_contain_text("Gennemført")
    snapshot(page, screenshots, "synkroniseringsstatus")


def test_the_pages_switch_to_english_and_stay_english(page, log_in, screenshots):
    log_in("visitor")

    page.get_by_role("button", name="English").click()

    expect(heading(page, "Check company")).to_be_visible()
    page.get_by_label("CVR number or company name").fill(ROBOT_CVR)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_role("heading", name="Contact history")).to_be_visible()
    snapshot(page, screenshots, "virksomhed-en")


def test_the_keyboard_reaches_the_content_through_the_skip_link(page, log_in):
    log_in("visitor")
    page.goto(f"/tjek?q={ROBOT_CVR}")  # the company page: nothing on it takes focus by itself
    expect(heading(page, ROBOT_NAME)).to_be_visible()

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Gå til indholdet")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("main")).to_be_focused()


# The two tests below change the shared data (a flag resolved; a merge made and undone), so
# they come last; no other test looks at what they change.


def test_a_coordinator_resolves_a_flag_with_a_comment(page, log_in, screenshots):
    log_in("coordinator")
    flag = page.get_by_test_id("flag").filter(has_text=ROBOT_NAME)
    expect(flag.get_by_role("row")).to_have_count(3)  # a header and two approaches
    snapshot(page, screenshots, "flag-indbakke")

    flag.get_by_label("Kommentar").fill("Aftalt: jobcentrene besøger fremover sammen")
    flag.get_by_role("button", name="Løs").click()

    expect(page.get_by_role("status")).to_contain_text("er løst")
    expect(page.get_by_test_id("no-flags")).to_be_visible()
    page.get_by_role("link", name="Løst").click()
    expect(page.get_by_test_id("flag")).to_contain_text("Aftalt: jobcentrene besøger fremover")


def test_a_coordinator_accepts_a_match_proposal_and_undoes_it(page, log_in, screenshots):
    log_in("coordinator")
    page.get_by_role("link", name="Match-gennemgang").click()
    proposal = page.get_by_test_id("proposal")
    expect(proposal).to_contain_text(ROBOT_SLIP_NAME)
    expect(proposal).to_contain_text(ROBOT_NAME)
    snapshot(page, screenshots, "match-gennemgang")

    proposal.get_by_label("Begrundelse").fill("Samme adresse, stavefejl i navnet")
    proposal.get_by_role("button", name="Acceptér: samme virksomhed").click()

    expect(page.get_by_role("status")).to_contain_text("Forslaget er accepteret")
    expect(page.get_by_test_id("no-proposals")).to_be_visible()
    decisions = page.get_by_test_id("decisions")
    expect(decisions).to_contain_text("Accepteret forslag")

    decisions.get_by_role("textbox").fill("Ved en fejl")
    decisions.get_by_role("button", name="Fortryd").click()

    expect(page.get_by_role("status")).to_contain_text("er fortrudt")
    expect(page.get_by_test_id("proposal")).to_contain_text(ROBOT_SLIP_NAME)
