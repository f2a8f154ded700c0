"""The ``web`` blueprint every page belongs to, and what each page request shares: the caller
from the session, CSRF protection of every form sent, HTML error pages, the navigation."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, render_template, request
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from coordination.web.access import current_caller, load_caller, may_see
from coordination.web.i18n import LANGUAGES

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)
csrf = CSRFProtect()

# The navigation: (endpoint, Danish label, role the page needs), in the order shown.
NAVIGATION = (
    ("web.company_search", _l("Tjek virksomhed"), "visitor"),
    ("web.flag_inbox", _l("Flag-indbakke"), "coordinator"),
    ("web.match_review", _l("Match-gennemgang"), "coordinator"),
    ("web.reports", _l("Rapporter"), "council"),
    ("web.sync_status", _l("Synkroniseringsstatus"), "admin"),
)
# A menu entry is also the current one on the pages below it.
SECTIONS = {
    "web.company_page": "web.company_search",
    "web.add_planned": "web.company_search",
    "web.flag_action": "web.flag_inbox",
    "web.coordination_page": "web.reports",
    "web.report_download": "web.reports",
    "web.start_sync": "web.sync_status",
}


@bp.before_request
def _identify_and_protect() -> None:
    g.caller = load_caller()
    # The API is protected by bearer tokens; only the pages' forms ride on the session cookie,
    # so only they need CSRF tokens (CSRFProtect runs with WTF_CSRF_CHECK_DEFAULT off).
    if current_app.config["WTF_CSRF_ENABLED"]:
        csrf.protect()


@bp.app_context_processor
def _page_context() -> dict:
    if request.blueprint != "web":
        return {}
    who = current_caller()
    return {
        "caller": who,
        "navigation": [
            (endpoint, str(label)) for endpoint, label, role in NAVIGATION if may_see(role, who)
        ],
        "current_section": SECTIONS.get(request.endpoint, request.endpoint),
        "languages": LANGUAGES,
        "language": str(get_locale() or "da"),
    }


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError):
    message = gettext("Formularen var udløbet eller ugyldig. Prøv igen.")
    return render_template("error.html", code=400, message=message), 400


@bp.errorhandler(HTTPException)
def _page_error(exc: HTTPException):
    code = exc.code or 500
    messages = {
        400: gettext("Forespørgslen kunne ikke forstås."),
        403: gettext("Din rolle giver ikke adgang til denne side."),
        404: gettext("Siden findes ikke."),
        405: gettext("Den handling er ikke tilladt her."),
        413: gettext("Forespørgslen er for stor."),
        429: gettext("For mange mislykkede forsøg. Vent et minut, og prøv igen."),
    }
    message = messages.get(code, gettext("Der skete en fejl."))
    return render_template("error.html", code=code, message=message), code


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unhandled error on a page")  # the log gets the trace, the person does not
    message = gettext("Der skete en fejl. Den er skrevet i loggen.")
    return render_template("error.html", code=500, message=message), 500
