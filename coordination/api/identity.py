"""API: identity review (coordinator+): match proposals, merges, splits, decisions and undo.

- ``GET /api/v1/identity/proposals?status=proposed&page=&page_size=``: proposals, both
  companies side by side;
- ``POST /api/v1/identity/proposals/{id}/accept`` and ``.../reject`` with ``{"reason"}``;
- ``POST /api/v1/identity/merges`` with ``{"company_id", "into_company_id", "reason"}``;
- ``POST /api/v1/identity/splits`` with ``{"source", "source_id", "into_company_id"?, "reason"}``;
- ``GET /api/v1/identity/decisions?company_id=&action=&page=&page_size=``, newest first;
- ``POST /api/v1/identity/decisions/{id}/undo`` with ``{"reason"}``.

Every decision answers the decision object and is written to the audit log. 404: no such
proposal, company, record or decision; 409: the state forbids it (two different CVRs, already
decided or undone, a later decision depends on it); 422: a malformed request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from http import HTTPStatus

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from coordination.api.auth import requires
from coordination.api.common import PageArgs, audit, caller, config, page_schema, unit_of_work
from coordination.identity_review import (
    ACTIONS,
    PROPOSAL_STATUSES,
    Conflict,
    InvalidRequest,
    NotFound,
    Reviewer,
    accept_proposal,
    list_decisions,
    list_proposals,
    merge_companies,
    public_details,
    reject_proposal,
    split_record,
    undo_decision,
)
from coordination.models import IdentityDecision

blp = Blueprint("identity", __name__, url_prefix="/api/v1", description="identity")

# Ids are 32-bit integer columns; a larger id names nothing and must not reach the database.
MAX_ID = 2**31 - 1
NO_NUL = validate.Regexp(r"\A[^\x00]*\Z", error="must not contain NUL characters")
ID = validate.Range(min=1, max=MAX_ID)


def documented_errors(*codes: int) -> Callable:
    """Document error answers (the spec's error body) for these status codes."""

    def decorate(view: Callable) -> Callable:
        for code in codes:
            view = blp.alt_response(code, response=HTTPStatus(code).name)(view)
        return view

    return decorate


# --- schemas -----------------------------------------------------------------------------------


class CompanySideSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    cvr = fields.String(required=True, allow_none=True)
    address = fields.String(required=True, allow_none=True)
    postcode = fields.String(required=True, allow_none=True)
    city = fields.String(required=True, allow_none=True)
    records = fields.Integer(required=True, metadata={"description": "linked source records"})
    organisations = fields.List(
        fields.String(), required=True, metadata={"description": "who recorded them"}
    )
    merged_into_id = fields.Integer(required=True, allow_none=True)


class ProposalSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(PROPOSAL_STATUSES)})
    score = fields.Float(required=True, metadata={"description": "fuzzy name score, 0-100"})
    reason = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)
    company = fields.Nested(
        CompanySideSchema,
        required=True,
        metadata={"description": "the unresolved company the sync created"},
    )
    candidate = fields.Nested(
        CompanySideSchema, required=True, metadata={"description": "the company it may be"}
    )


class DecisionSchema(Schema):
    id = fields.Integer(required=True)
    action = fields.String(required=True, metadata={"enum": list(ACTIONS)})
    company_id = fields.Integer(
        required=True,
        metadata={"description": "merge/accept: the merged company; split: the record's new "
                  "company; reject: the proposal's company"},
    )  # fmt: skip
    other_company_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "merge/accept: the surviving company; split: the company the "
                  "record left; reject: the rejected candidate"},
    )  # fmt: skip
    record_key = fields.String(required=True, allow_none=True)
    decided_by = fields.String(required=True)
    organisation = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True)
    decided_at = fields.AwareDateTime(required=True)
    undone_by_id = fields.Integer(required=True, allow_none=True)
    details = fields.Dict(required=True)


ProposalPage = page_schema(ProposalSchema, "IdentityProposalPage")
DecisionPage = page_schema(DecisionSchema, "IdentityDecisionPage")


class ProposalArgs(PageArgs):
    status = fields.String(
        load_default="proposed",
        validate=validate.OneOf(PROPOSAL_STATUSES),
        metadata={"description": "proposed (default), accepted or rejected"},
    )


class DecisionArgs(PageArgs):
    company_id = fields.Integer(validate=ID, metadata={"description": "on either side"})
    action = fields.String(validate=validate.OneOf(ACTIONS))


def _reason_field() -> fields.String:
    return fields.String(
        required=True,
        validate=[validate.Length(min=1, max=4000), NO_NUL],
        metadata={"description": "why; kept with the decision"},
    )


class ReasonSchema(Schema):
    reason = _reason_field()


class MergeSchema(Schema):
    company_id = fields.Integer(
        required=True, validate=ID, metadata={"description": "the company to merge away"}
    )
    into_company_id = fields.Integer(
        required=True, validate=ID, metadata={"description": "the company that stays"}
    )
    reason = _reason_field()


class SplitSchema(Schema):
    source = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=100), NO_NUL],
        metadata={"description": "source name, e.g. jobcenter-aarhus"},
    )
    source_id = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=200), NO_NUL],
        metadata={"description": "the source's id of the record"},
    )
    into_company_id = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=ID,
        metadata={"description": "an existing company; omitted: a new unresolved company"},
    )
    reason = _reason_field()


# --- endpoints ---------------------------------------------------------------------------------


@blp.route("/identity/proposals")
class Proposals(MethodView):
    @requires("coordinator")
    @blp.arguments(ProposalArgs, location="query")
    @blp.response(200, ProposalPage)
    @documented_errors(401, 403)
    def get(self, args):
        """Match proposals the sync made, best score first, both companies side by side."""
        with unit_of_work() as session:
            found = list_proposals(session, args["status"], args["page"], args["page_size"])
        return _page(found.items, found.total, args)


@blp.route("/identity/proposals/<int:proposal_id>/accept")
class AcceptProposal(MethodView):
    @requires("coordinator")
    @blp.arguments(ReasonSchema)
    @blp.response(200, DecisionSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args, proposal_id):
        """Accept: merge the proposal's company into its candidate (409 if already decided or
        the two hold different CVRs)."""
        _known_id(proposal_id, "proposal")
        return _decide(
            "accept",
            f"proposal:{proposal_id}",
            lambda s, who: accept_proposal(s, proposal_id, who, args["reason"], config().rules),
        )


@blp.route("/identity/proposals/<int:proposal_id>/reject")
class RejectProposal(MethodView):
    @requires("coordinator")
    @blp.arguments(ReasonSchema)
    @blp.response(200, DecisionSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args, proposal_id):
        """Reject: the two are different companies; no sync links or proposes them again."""
        _known_id(proposal_id, "proposal")
        return _decide(
            "reject",
            f"proposal:{proposal_id}",
            lambda s, who: reject_proposal(s, proposal_id, who, args["reason"], config().rules),
        )


@blp.route("/identity/merges")
class Merges(MethodView):
    @requires("coordinator")
    @blp.arguments(MergeSchema)
    @blp.response(201, DecisionSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args):
        """Merge ``company_id`` into ``into_company_id`` (409 when they hold different CVRs or
        one was merged already; 422 for a company into itself)."""
        return _decide(
            "merge",
            f"company:{args['company_id']}",
            lambda s, who: merge_companies(
                s,
                args["company_id"],
                args["into_company_id"],
                who,
                args["reason"],
                config().rules,
            ),
        )


@blp.route("/identity/splits")
class Splits(MethodView):
    @requires("coordinator")
    @blp.arguments(SplitSchema)
    @blp.response(201, DecisionSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args):
        """Move one source record out of its company: into a new unresolved company, or into
        ``into_company_id``. The record stays there through every sync."""
        return _decide(
            "split",
            f"record:{args['source']}/{args['source_id']}",
            lambda s, who: split_record(
                s,
                args["source"],
                args["source_id"],
                who,
                args["reason"],
                config().rules,
                into_company_id=args["into_company_id"],
            ),
        )


@blp.route("/identity/decisions")
class Decisions(MethodView):
    @requires("coordinator")
    @blp.arguments(DecisionArgs, location="query")
    @blp.response(200, DecisionPage)
    @documented_errors(401, 403)
    def get(self, args):
        """Identity decisions, newest first: who, organisation, when, what and why."""
        with unit_of_work() as session:
            found = list_decisions(
                session,
                args["page"],
                args["page_size"],
                company_id=args.get("company_id"),
                action=args.get("action"),
            )
            items = [_decision(d) for d in found.items]
        return _page(items, found.total, args)


@blp.route("/identity/decisions/<int:decision_id>/undo")
class UndoDecision(MethodView):
    @requires("coordinator")
    @blp.arguments(ReasonSchema)
    @blp.response(200, DecisionSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args, decision_id):
        """Undo a decision. A merge is undone exactly and the next sync keeps the companies
        apart (409 for an undo, an undone decision, or one a later decision depends on)."""
        _known_id(decision_id, "decision")
        return _decide(
            "undo",
            f"identity-decision:{decision_id}",
            lambda s, who: undo_decision(s, decision_id, who, args["reason"], config().rules),
        )


# --- translation -------------------------------------------------------------------------------


def _decide(action: str, target: str, operation: Callable) -> dict:
    """Run one decision in the request's transaction, audit it, map refusals to 4xx."""
    who = caller()
    try:
        with unit_of_work() as session:
            decision = operation(session, Reviewer(who.actor, who.organisation))
            audit(session, f"identity.{action}", target, decision_id=decision.id)
            return _decision(decision)
    except NotFound as exc:
        abort(404, message=str(exc))
    except Conflict as exc:
        abort(409, message=str(exc))
    except InvalidRequest as exc:
        abort(422, message=str(exc))


def _decision(decision: IdentityDecision) -> dict:
    values = decision.model_dump(exclude={"details"})
    if values["decided_at"].tzinfo is None:  # SQLite hands back naive UTC
        values["decided_at"] = values["decided_at"].replace(tzinfo=dt.UTC)
    return {**values, "details": public_details(decision)}


def _known_id(value: int, what: str) -> None:
    if value > MAX_ID:
        abort(404, message=f"no {what} {value}")


def _page(items: list, total: int, args) -> dict:
    return {"items": items, "page": args["page"], "page_size": args["page_size"], "total": total}
