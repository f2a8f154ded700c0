"""Tjek virksomhed: the company search and the company page (the prior-contact check)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from coordination.api.approaches import MAX_ID
from coordination.api.common import audit, config, unit_of_work
from coordination.api.companies import CONTACT_ROLES
from coordination.companies import (
    CompanyNotFound,
    CompanyQuery,
    PlannedDateInPast,
    add_planned_visit,
    check_prior_contact,
    company_by_id,
    local_today,
    search_companies,
)
from coordination.identity.normalise import valid_cvr
from coordination.needs.codelists import load_codelists
from coordination.web.access import current_caller, page_for
from coordination.web.blueprint import bp
from coordination.web.forms import PlannedVisitForm

SEARCH_MAX_LENGTH = 200
SEARCH_PAGE_SIZE = 50
# The look-back periods offered on the company page, in days; the first is the default.
PERIODS = (180, 30, 90, 365, 730)


@bp.get("/tjek")
@page_for("visitor")
def company_search():
    text = _printable(request.args.get("q", ""))[:SEARCH_MAX_LENGTH].strip()
    hits, total = [], 0
    if text:
        with unit_of_work() as session:
            hits, total = search_companies(session, CompanyQuery(text=text), 1, SEARCH_PAGE_SIZE)
            audit(session, "companies.search", q=text, total=total, via="web")
    partial = request.headers.get("HX-Request") == "true"
    if hits and total == 1 and valid_cvr(text) and not partial:
        return redirect(url_for("web.company_page", company_id=hits[0]["id"]))
    page = "company_results.html" if partial else "company_search.html"
    return render_template(
        page,
        query=text,
        hits=[{**hit, "municipality": municipality_name(hit)} for hit in hits],
        total=total,
        shown=len(hits),
        is_cvr=valid_cvr(text) is not None,
    )


@bp.get("/virksomhed/<int:company_id>")
@page_for("visitor")
def company_page(company_id: int):
    days = _period(request.args.get("dage"))
    who = current_caller()
    with unit_of_work() as session:
        company = _company(session, company_id)
        if company.id != company_id:  # merged into another: show the surviving company
            return redirect(url_for("web.company_page", company_id=company.id, dage=days))
        answer = check_prior_contact(
            session,
            company,
            config(),
            who.organisation,
            who.name,
            days,
            with_contacts=who.role in CONTACT_ROLES,
        )
        audit(
            session,
            "companies.prior_contact",
            f"id:{company.id}",
            found=True,
            company_id=company.id,
            days=days,
            via="web",
        )
    return render_template(
        "company.html",
        answer=answer,
        company=answer["company"],
        municipality=municipality_name(answer["company"]),
        days=days,
        periods=sorted(PERIODS),
        form=PlannedVisitForm(),
    )


@bp.post("/virksomhed/<int:company_id>/planlagte-besoeg")
@page_for("visitor")
def add_planned(company_id: int):
    form = PlannedVisitForm()
    who = current_caller()
    target = url_for("web.company_page", company_id=company_id) + "#planlagte"
    if not form.validate_on_submit():
        flash(gettext("Angiv en gyldig dato for det planlagte besøg."), "error")
        return redirect(target)
    with unit_of_work() as session:
        company = _company(session, company_id)
        try:
            visit = add_planned_visit(
                session,
                company.id,
                who.organisation,
                form.date.data,
                form.purpose.data or None,
                who.actor,
                local_today(config().schedule.timezone),
            )
        except PlannedDateInPast:
            flash(gettext("Et planlagt besøg skal ligge i dag eller senere."), "error")
            return redirect(target)
        audit(session, "companies.plan_visit", f"id:{company.id}", visit_id=visit["id"], via="web")
    flash(gettext("Det planlagte besøg er registreret."), "success")
    return redirect(target)


def municipality_name(company: dict) -> str | None:
    """The company's municipality by name (from its code, else its postcode)."""
    lists = load_codelists()
    code = company.get("municipality_code")
    if code and code in lists.municipalities:
        return lists.municipalities[code].name
    found = lists.municipality_for_postcode(company.get("postcode"))
    return found.name if found else None


def _company(session, company_id: int):
    if company_id > MAX_ID:
        abort(404)
    try:
        return company_by_id(session, company_id)
    except CompanyNotFound:
        abort(404)


def _printable(text: str) -> str:
    """The search text without control characters (NUL and the like mean nothing in a name,
    and PostgreSQL refuses NUL in text)."""
    return "".join(ch for ch in text if ch.isprintable())


def _period(value: str | None) -> int:
    try:
        days = int(value) if value else PERIODS[0]
    except ValueError:
        return PERIODS[0]
    return days if days in PERIODS else PERIODS[0]
