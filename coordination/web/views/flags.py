"""Flag-indbakke: flags with the approaches behind them; acknowledge and resolve with a comment."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from coordination.api.approaches import MAX_ID
from coordination.api.common import audit, config, unit_of_work
from coordination.companies import local_today
from coordination.flag_service import ACTIONS, FlagNotFound, act_on_flag, list_flags
from coordination.rules import FLAG_STATUSES, FlagTransitionError
from coordination.web.access import current_caller, page_for
from coordination.web.blueprint import bp
from coordination.web.forms import FlagActionForm
from coordination.web.pagination import Pagination, page_number
from coordination.web.queries import approaches_by_id, newest_approach_ids

FLAGS_PER_PAGE = 20
# The newest approaches shown under each flag; a flag of a company approached thousands of
# times would otherwise render them all (the company page lists every one).
APPROACHES_PER_FLAG = 10


@bp.get("/flag")
@page_for("coordinator")
def flag_inbox():
    status = request.args.get("status", "open")
    if status not in FLAG_STATUSES:
        status = "open"
    page = page_number(request.args.get("side"))
    who = current_caller()
    with unit_of_work() as session:
        flags, total = list_flags(session, status, page, FLAGS_PER_PAGE)
        shown = newest_approach_ids(
            session, [flag["approach_ids"] for flag in flags], APPROACHES_PER_FLAG
        )
        approaches = approaches_by_id(
            session, sorted({i for ids in shown for i in ids}), who.organisation
        )
    for flag, ids in zip(flags, shown, strict=True):
        flag["approaches"] = [approaches[i] for i in ids if i in approaches]
        flag["more_approaches"] = len(flag["approach_ids"]) - len(flag["approaches"])
    return render_template(
        "flags.html",
        flags=flags,
        status=status,
        statuses=FLAG_STATUSES,
        pagination=Pagination(page, FLAGS_PER_PAGE, total),
        form=FlagActionForm(),
    )


@bp.post("/flag/<int:flag_id>")
@page_for("coordinator")
def flag_action(flag_id: int):
    form = FlagActionForm()
    back = url_for("web.flag_inbox", status=request.args.get("status", "open"))
    if not form.validate_on_submit() or form.action.data not in ACTIONS:
        abort(400)
    comment = (form.comment.data or "").strip()
    if not comment:  # as in the API: every step on a flag says why
        flash(gettext("Skriv en kommentar, før du kvitterer for eller løser et flag."), "error")
        return redirect(f"{back}#flag-{flag_id}")
    if flag_id > MAX_ID:
        abort(404)
    who = current_caller()
    with unit_of_work() as session:
        try:
            act_on_flag(
                session,
                flag_id,
                form.action.data,
                comment,
                who.actor,
                who.organisation,
                local_today(config().schedule.timezone),
            )
        except FlagNotFound:
            abort(404)
        except FlagTransitionError as exc:
            flash(_transition_refused(exc), "error")
            return redirect(back)
        audit(session, f"flags.{form.action.data}", f"flag:{flag_id}", via="web")
    done = {
        "acknowledge": gettext("Flag %(id)s er kvitteret.", id=flag_id),
        "resolve": gettext("Flag %(id)s er løst.", id=flag_id),
    }
    flash(done[form.action.data], "success")
    return redirect(back)


def _transition_refused(exc: FlagTransitionError) -> str:
    statuses = {
        "open": gettext("åbent"),
        "acknowledged": gettext("kvitteret"),
        "resolved": gettext("løst"),
    }
    return gettext(
        "Flaget er allerede %(status)s; handlingen blev ikke udført.",
        status=statuses.get(exc.status, exc.status),
    )
