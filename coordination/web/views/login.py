"""Log-in, log-out, the start page and the language switch."""

from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import gettext

from coordination.api import auth as api_auth
from coordination.api.common import audit, unit_of_work
from coordination.web.access import current_caller, log_in, log_out, safe_next
from coordination.web.blueprint import bp
from coordination.web.forms import LanguageForm, LoginForm
from coordination.web.i18n import choose_language

# Where each role starts after logging in.
START_PAGES = {
    "visitor": "web.company_search",
    "coordinator": "web.flag_inbox",
    "council": "web.reports",
    "admin": "web.sync_status",
}


@bp.get("/")
def home():
    who = current_caller()
    if who is None:
        return redirect(url_for("web.login"))
    return redirect(url_for(START_PAGES.get(who.role, "web.login")))


@bp.route("/log-ind", methods=["GET", "POST"])
def login():
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        address = request.remote_addr or "?"
        # Failed log-ins count against the same limit as failed API calls.
        if api_auth._too_many_failures(address):
            abort(429)
        who = log_in(form.token.data, form.name.data)
        if who is not None:
            g.caller = who
            with unit_of_work() as session:
                audit(session, "web.login")
            target = safe_next(request.args.get("next"))
            return redirect(target or url_for(START_PAGES[who.role]))
        api_auth._fail(address)
        error = gettext("Adgangsnøglen er ukendt, udløbet eller spærret.")
        status = 401
    elif form.is_submitted():
        status = 400
    return render_template("login.html", form=form, error=error), status


@bp.post("/log-ud")
def logout():
    log_out()
    return redirect(url_for("web.login"))


@bp.post("/sprog")
def switch_language():
    form = LanguageForm()
    if not form.validate_on_submit() or not choose_language(form.lang.data):
        abort(400)
    return redirect(safe_next(form.next.data) or url_for("web.home"))
