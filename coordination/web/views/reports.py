"""Rapporter (council+): the competence-needs report with its charts and downloads, a trend over
time, and the coordination report with its distribution charts."""

from __future__ import annotations

import datetime as dt

from flask import Response, render_template, request
from flask_babel import gettext

from coordination.api.common import audit, config, unit_of_work
from coordination.companies import local_today
from coordination.needs.codelists import load_codelists
from coordination.reports import Period, ReportRequestError, area_ids
from coordination.reports.cache import memo_in
from coordination.reports.competence_needs import GROUP_BY, CompetenceNeedsRequest
from coordination.reports.coordination_report import CoordinationRequest, coordination_report
from coordination.reports.export import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    flatten_competence_needs,
    to_csv,
    to_xlsx,
)
from coordination.web import charts
from coordination.web.access import page_for
from coordination.web.blueprint import bp
from coordination.web.forms import ReportForm
from coordination.web.labels import GROUPINGS, month_label
from coordination.web.queries import (
    DEFAULT_DAYS,
    TOP_NEEDS,
    competence_needs,
    default_period,
    needs_page,
)

DOWNLOADS = {
    "csv": (CSV_MEDIA_TYPE + "; charset=utf-8", to_csv),
    "xlsx": (XLSX_MEDIA_TYPE, to_xlsx),
}


@bp.get("/rapporter")
@page_for("council")
def reports():
    """The competence-needs report: tables, top needs, the trend, downloads."""
    form = _report_form()
    chosen = _validated(form)
    if chosen is None:
        return _invalid(form, "needs")
    period, area, group_by = chosen
    with unit_of_work() as session:
        asked = CompetenceNeedsRequest(area, period, group_by, top=TOP_NEEDS)
        page = needs_page(session, asked, memo_in(session))
        report, trend = page["report"], page["trend"]
        _audit_view(session, "competence-needs", area, period, group_by)
    for need in report["needs"]:  # the table looks cells up by group
        need["by_group"] = {cell["group"]: cell for cell in need["cells"]}
    return render_template(
        "reports.html",
        view="needs",
        form=form,
        report=report,
        charts=_needs_charts(report, trend),
        downloads={fmt: {**_tabs(period, area, group_by), "fmt": fmt} for fmt in DOWNLOADS},
        tabs=_tabs(period, area, group_by),
    )


@bp.get("/rapporter/koordinering")
@page_for("council")
def coordination_page():
    """The coordination report: how often companies are approached, by how many organisations,
    the share uncoordinated and checked beforehand, and flags."""
    form = _report_form()
    chosen = _validated(form)
    if chosen is None:
        return _invalid(form, "coordination")
    period, area, group_by = chosen
    with unit_of_work() as session:
        report = coordination_report(
            session, CoordinationRequest(area, period), config().rules, memo=memo_in(session)
        )
        _audit_view(session, "coordination", area, period, None)
    return render_template(
        "reports.html",
        view="coordination",
        form=form,
        report=report,
        charts=_coordination_charts(report),
        tabs=_tabs(period, area, group_by),
    )


@bp.get("/rapporter/kompetencebehov.<fmt>")
@page_for("council")
def report_download(fmt: str):
    if fmt not in DOWNLOADS:
        return render_template("error.html", code=404, message=gettext("Siden findes ikke.")), 404
    form = _report_form()
    chosen = _validated(form)
    if chosen is None:
        return _invalid(form, "needs")
    period, area, group_by = chosen
    with unit_of_work() as session:
        report = competence_needs(
            session, CompetenceNeedsRequest(area, period, group_by), memo_in(session)
        )
        _audit_view(session, "competence-needs", area, period, group_by, fmt)
    media_type, write = DOWNLOADS[fmt]
    filename = f"kompetencebehov-{area}-{period.start}-{period.end}.{fmt}"
    return Response(
        write(flatten_competence_needs(report)),
        content_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _report_form() -> ReportForm:
    """The form filled from the query string, with the defaults a first visit gets."""
    today = local_today(config().schedule.timezone)
    form = ReportForm(formdata=request.args if request.args else None)
    form.area.choices = area_choices()
    form.group_by.choices = [(code, str(GROUPINGS[code])) for code in GROUP_BY]
    if not request.args:
        period = default_period(today)
        form.date_from.data, form.date_to.data = period.start, period.end
    return form


def _validated(form: ReportForm) -> tuple[Period, str, str] | None:
    """(period, area, grouping) from a valid form; None after noting the errors on the form.
    A missing end is today, a missing start a year before the end."""
    if not form.validate():
        return None
    end = form.date_to.data or local_today(config().schedule.timezone)
    start = form.date_from.data or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    try:
        period = Period.requested(start, end)
    except ReportRequestError as exc:
        field = form.date_from if exc.field == "from" else form.date_to
        field.errors = [*field.errors, _period_error(exc)]
        return None
    return period, form.area.data, form.group_by.data


def _period_error(exc: ReportRequestError) -> str:
    if "after" in str(exc):
        return gettext("Fra-datoen må ikke ligge efter til-datoen.")
    return gettext("Datoen ligger uden for det mulige interval.")


def _invalid(form: ReportForm, view: str):
    return render_template("reports.html", view=view, form=form, report=None), 400


def _audit_view(session, target, area, period, group_by, fmt="html") -> None:
    details = {"area": area, "period": period.as_dict(), "format": fmt, "via": "web"}
    if group_by is not None:
        details["group_by"] = group_by
    audit(session, "report.download", target=target, **details)


def _tabs(period: Period, area: str, group_by: str) -> dict:
    """The query string both report pages share, so switching keeps the choices."""
    return {
        "area": area,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "group_by": group_by,
    }


def area_choices() -> list[tuple[str, str]]:
    """Council areas by name, then municipalities by name (with their code)."""
    lists = load_codelists()
    choices = []
    for area in area_ids(lists):
        if area in lists.areas:
            choices.append((area, lists.areas[area][-1].name))
        else:
            municipality = lists.municipalities[area]
            choices.append((area, f"{municipality.name} ({area})"))
    return choices


def _needs_charts(needs: dict, trend: list[dict]) -> dict:
    top = [(need["label"], need["companies"]) for need in needs["top_needs_overall"]]
    return {
        "top_needs": charts.bar_chart(gettext("Top behov (antal virksomheder)"), top),
        "trend": charts.line_chart(
            gettext("Virksomheder med behov pr. måned"),
            [(month_label(m["year"], m["month"]), m["companies"]) for m in trend],
        ),
    }


def _coordination_charts(coordination: dict) -> dict:
    return {
        "approaches_per_company": charts.bar_chart(
            gettext("Virksomheder efter antal henvendelser"),
            [(b["bucket"], b["companies"]) for b in coordination["approaches_per_company"]],
            label_width=80,
        ),
        "organisations_per_company": charts.bar_chart(
            gettext("Virksomheder efter antal organisationer"),
            [(b["bucket"], b["companies"]) for b in coordination["organisations_per_company"]],
            label_width=80,
        ),
        "flags_by_type": charts.bar_chart(
            gettext("Flag efter organisationstype"),
            [(f["label"], f["flags"]) for f in coordination["flags"]["by_organisation_type"]],
            label_width=200,
        ),
    }
