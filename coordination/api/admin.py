"""Admin API: the audit log (read-only) and erasure of a contact person on request."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as SchemaError
from sqlalchemy import func, select

from coordination.api.approaches import documented_errors
from coordination.api.auth import requires
from coordination.api.common import PageArgs, audit, caller, page_schema, unit_of_work
from coordination.models import AuditEntry
from coordination.privacy import erase_contact_person

blp = Blueprint("admin", __name__, url_prefix="/api/v1", description="Audit log and erasure")


class AuditArgs(PageArgs):
    action = fields.String(validate=validate.Length(max=50))
    organisation = fields.String(validate=validate.Length(max=300))
    since = fields.AwareDateTime(data_key="from")
    until = fields.AwareDateTime(data_key="to")


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    at = fields.AwareDateTime(required=True)
    actor = fields.String(allow_none=True)
    organisation = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    action = fields.String(required=True)
    target = fields.String(allow_none=True)
    details = fields.Dict(required=True)


AuditPage = page_schema(AuditEntrySchema, "AuditPage")


class ErasureRequest(Schema):
    email = fields.Email(validate=validate.Length(max=300))
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 ()-]{8,20}$"))

    @validates_schema
    def one_of(self, data, **_):
        if not data.get("email") and not data.get("phone"):
            raise SchemaError("give the person's email or phone", "_schema")


class ErasureResultSchema(Schema):
    contact_persons = fields.Integer(required=True)
    source_records = fields.Integer(required=True)


@blp.route("/audit")
class AuditLog(MethodView):
    @requires("admin")
    @blp.arguments(AuditArgs, location="query")
    @blp.response(200, AuditPage)
    @documented_errors(401, 403)
    def get(self, args):
        """The audit log, newest first. It cannot be altered through the API."""
        query = select(AuditEntry)
        if args.get("action"):
            query = query.where(AuditEntry.action == args["action"])
        if args.get("organisation"):
            query = query.where(AuditEntry.organisation == args["organisation"])
        if args.get("since"):
            query = query.where(AuditEntry.at >= args["since"])
        if args.get("until"):
            query = query.where(AuditEntry.at <= args["until"])
        with unit_of_work() as session:
            total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = session.execute(
                query.order_by(AuditEntry.id.desc())
                .offset((args["page"] - 1) * args["page_size"])
                .limit(args["page_size"])
            ).scalars()
            items = [row.model_dump() for row in rows]
        return {
            "items": items,
            "page": args["page"],
            "page_size": args["page_size"],
            "total": total,
        }


@blp.route("/admin/erasures")
class Erasures(MethodView):
    @requires("admin")
    @blp.arguments(ErasureRequest)
    @blp.response(200, ErasureResultSchema)
    @blp.alt_response(422, description="Neither a valid e-mail nor a phone number was given")
    @documented_errors(401, 403)
    def post(self, body):
        """Erase one contact person (by e-mail or phone) from every source's stored data."""
        who = caller()
        with unit_of_work() as session:
            try:
                result = erase_contact_person(
                    session,
                    email=body.get("email"),
                    phone=body.get("phone"),
                    requested_by=who.actor,
                    organisation=who.organisation,
                )
            except ValueError as exc:
                abort(422, message=str(exc))
            audit(session, "erasure.request", None, **vars(result))
        return vars(result)
