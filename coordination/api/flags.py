"""API: coordination flags (coordinator+): list them, acknowledge and resolve them."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from coordination.api.approaches import MAX_ID, NO_NUL, documented_errors
from coordination.api.auth import requires
from coordination.api.common import PageArgs, audit, caller, config, page_schema, unit_of_work
from coordination.companies import local_today
from coordination.flag_service import FlagNotFound, act_on_flag, list_flags
from coordination.rules import FLAG_STATUSES, FlagTransitionError

blp = Blueprint("flags", __name__, url_prefix="/api/v1", description="flags")


class FlagSummarySchema(Schema):
    id = fields.Integer(required=True)
    company_id = fields.Integer(required=True)
    cvr = fields.String(allow_none=True, required=True)
    company_name = fields.String(required=True)
    raised_on = fields.Date(required=True)
    status = fields.String(required=True, metadata={"enum": list(FLAG_STATUSES)})
    resolved_on = fields.Date(allow_none=True, required=True)
    organisations = fields.List(fields.String(), required=True)
    approach_ids = fields.List(fields.Integer(), required=True)


class FlagEventSchema(Schema):
    action = fields.String(
        required=True, metadata={"description": "raised, updated, acknowledge or resolve"}
    )
    comment = fields.String(allow_none=True, required=True)
    actor = fields.String(allow_none=True, required=True)
    organisation = fields.String(allow_none=True, required=True)
    at = fields.AwareDateTime(required=True)


class FlagViewSchema(FlagSummarySchema):
    events = fields.List(fields.Nested(FlagEventSchema), required=True)


FlagPage = page_schema(FlagViewSchema, "FlagPage")


class FlagListArgsSchema(PageArgs):
    status = fields.String(
        validate=validate.OneOf(FLAG_STATUSES), metadata={"description": "only flags with it"}
    )


class FlagActionSchema(Schema):
    comment = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=4000), NO_NUL],
        metadata={"description": "why; kept with who did it in the flag's events"},
    )


@blp.route("/flags")
class Flags(MethodView):
    @requires("coordinator")
    @blp.arguments(FlagListArgsSchema, location="query")
    @blp.response(200, FlagPage)
    @documented_errors(401, 403)
    def get(self, args):
        """Flags (all, or with ``status``), newest raised first, each with its events."""
        with unit_of_work() as session:
            items, total = list_flags(session, args.get("status"), args["page"], args["page_size"])
            audit(session, "flags.list", status=args.get("status"), total=total)
        return {
            "items": items,
            "page": args["page"],
            "page_size": args["page_size"],
            "total": total,
        }


@blp.route("/flags/<int:flag_id>/acknowledge")
class AcknowledgeFlag(MethodView):
    @requires("coordinator")
    @blp.arguments(FlagActionSchema)
    @blp.response(200, FlagViewSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args, flag_id):
        """Acknowledge an open flag (409 if it is not open)."""
        return _act(flag_id, "acknowledge", args["comment"])


@blp.route("/flags/<int:flag_id>/resolve")
class ResolveFlag(MethodView):
    @requires("coordinator")
    @blp.arguments(FlagActionSchema)
    @blp.response(200, FlagViewSchema)
    @documented_errors(401, 403, 404, 409)
    def post(self, args, flag_id):
        """Resolve an open or acknowledged flag (409 if it is already resolved)."""
        return _act(flag_id, "resolve", args["comment"])


def _act(flag_id: int, action: str, comment: str) -> dict:
    if flag_id > MAX_ID:
        abort(404, message=f"no flag with id {flag_id}")
    who = caller()
    today = local_today(config().schedule.timezone)
    try:
        with unit_of_work() as session:
            flag = act_on_flag(
                session, flag_id, action, comment, who.actor, who.organisation, today
            )
            audit(session, f"flags.{action}", target=f"flag:{flag_id}")
    except FlagNotFound:
        abort(404, message=f"no flag with id {flag_id}")
    except FlagTransitionError as exc:
        abort(409, message=str(exc))
    return flag
