"""Match-gennemgang (coordinator+): proposed company matches side by side, accept or reject;
merge any two companies; undo a decision."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from coordination.api.approaches import MAX_ID
from coordination.api.common import audit, config, unit_of_work
from coordination.identity_review import (
    PROPOSAL_STATUSES,
    IdentityReviewError,
    NotFound,
    Reviewer,
    accept_proposal,
    list_decisions,
    list_proposals,
    merge_companies,
    public_details,
    reject_proposal,
    undo_decision,
)
from coordination.web.access import current_caller, page_for
from coordination.web.blueprint import bp
from coordination.web.forms import MergeForm, ReviewDecisionForm
from coordination.web.pagination import Pagination, page_number

PROPOSALS_PER_PAGE = 20
RECENT_DECISIONS = 15
PROPOSAL_ACTIONS = {"accept": accept_proposal, "reject": reject_proposal}


@bp.get("/match")
@page_for("coordinator")
def match_review():
    status = request.args.get("status", "proposed")
    if status not in PROPOSAL_STATUSES:
        status = "proposed"
    page = page_number(request.args.get("side"))
    with unit_of_work() as session:
        proposals = list_proposals(session, status, page, PROPOSALS_PER_PAGE)
        decisions = list_decisions(session, 1, RECENT_DECISIONS)
        decision_rows = [{"decision": d, "details": public_details(d)} for d in decisions.items]
    return render_template(
        "matches.html",
        proposals=proposals.items,
        status=status,
        statuses=PROPOSAL_STATUSES,
        pagination=Pagination(page, PROPOSALS_PER_PAGE, proposals.total),
        decisions=decision_rows,
        form=ReviewDecisionForm(),
        merge_form=MergeForm(formdata=None),
    )


@bp.post("/match/forslag/<int:proposal_id>/<action>")
@page_for("coordinator")
def decide_proposal(proposal_id: int, action: str):
    form = ReviewDecisionForm()
    if action not in PROPOSAL_ACTIONS:
        abort(404)
    if not form.validate_on_submit():
        return _refused(form, f"#forslag-{proposal_id}")
    decide = PROPOSAL_ACTIONS[action]
    done = _decide(
        lambda session, reviewer, reason: decide(
            session, _bounded(proposal_id), reviewer, reason, config().rules
        ),
        f"identity.{action}",
        f"proposal:{proposal_id}",
        form.reason.data,
    )
    if done:
        messages = {
            "accept": gettext("Forslaget er accepteret: virksomhederne er lagt sammen."),
            "reject": gettext("Forslaget er afvist: virksomhederne holdes adskilt."),
        }
        flash(messages[action], "success")
    return redirect(url_for("web.match_review"))


@bp.post("/match/saml")
@page_for("coordinator")
def merge():
    form = MergeForm()
    if not form.validate_on_submit():
        return _refused(form, "#saml")
    merged, into = _company_id(form.company_id.data), _company_id(form.into_company_id.data)
    if merged is None or into is None:
        flash(gettext("Et virksomheds-id er et helt tal."), "error")
        return redirect(url_for("web.match_review") + "#saml")
    done = _decide(
        lambda session, reviewer, reason: merge_companies(
            session, merged, into, reviewer, reason, config().rules
        ),
        "identity.merge",
        f"company:{merged}",
        form.reason.data,
    )
    if done:
        flash(gettext("Virksomhed %(a)s er lagt sammen med %(b)s.", a=merged, b=into), "success")
    return redirect(url_for("web.match_review"))


@bp.post("/match/beslutning/<int:decision_id>/fortryd")
@page_for("coordinator")
def undo(decision_id: int):
    form = ReviewDecisionForm()
    if not form.validate_on_submit():
        return _refused(form, "#beslutninger")
    done = _decide(
        lambda session, reviewer, reason: undo_decision(
            session, _bounded(decision_id), reviewer, reason, config().rules
        ),
        "identity.undo",
        f"identity-decision:{decision_id}",
        form.reason.data,
    )
    if done:
        flash(gettext("Beslutning %(id)s er fortrudt.", id=decision_id), "success")
    return redirect(url_for("web.match_review"))


def _refused(form, anchor: str):
    """Back to the review page, saying what the form lacked."""
    for errors in form.errors.values():
        for error in errors:
            flash(str(error), "error")
    return redirect(url_for("web.match_review") + anchor)


def _decide(operation, action: str, target: str, reason: str | None) -> bool:
    """Run one identity decision in its own transaction; a refusal becomes a message."""
    who = current_caller()
    reviewer = Reviewer(who.actor, who.organisation)
    try:
        with unit_of_work() as session:
            decision = operation(session, reviewer, (reason or "").strip())
            audit(session, action, target, decision_id=decision.id, via="web")
    except NotFound:
        abort(404)
    except IdentityReviewError as exc:  # Conflict or InvalidRequest: the state says no
        flash(gettext("Beslutningen blev ikke gennemført: %(why)s", why=str(exc)), "error")
        return False
    return True


def _bounded(identifier: int) -> int:
    if identifier > MAX_ID:
        abort(404)
    return identifier


def _company_id(text: str | None) -> int | None:
    try:
        value = int((text or "").strip())
    except ValueError:
        return None
    return value if 1 <= value <= MAX_ID else None
