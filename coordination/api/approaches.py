"""API: approaches (coordinator+), and the approach and request-edge pieces the companies and
flags blueprints share."""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from coordination.api.auth import requires
from coordination.api.common import PageArgs, audit, caller, page_schema, unit_of_work
from coordination.approach_queries import ApproachFilter, list_approaches
from coordination.identity.normalise import valid_cvr

blp = Blueprint("approaches", __name__, url_prefix="/api/v1", description="approaches")

# Ids are 32-bit integer columns; a larger id names nothing (and must not reach the database).
MAX_ID = 2**31 - 1
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="must not contain NUL characters")
CHANNELS = ("visit", "phone", "meeting", "email", "online")


def documented_errors(*codes: int) -> Callable:
    """Document error answers (the spec's error body) for these status codes."""

    def decorate(view: Callable) -> Callable:
        for code in codes:
            view = blp.alt_response(code, response=HTTPStatus(code).name)(view)
        return view

    return decorate


# The forms of a CVR number the API accepts: 8 ASCII digits, optionally after "DK" and with
# spaces, dots or hyphens between them ("DK-25 31 37 63"). Documented in the OpenAPI document,
# so a client (and schemathesis) knows that anything else is refused.
CVR_PATTERN = r"^ *(?:[Dd][Kk])?[ .-]*(?:[0-9][ .-]*){8}$"
_CVR_FORM = re.compile(CVR_PATTERN)


def api_cvr(text: str) -> str | None:
    """The 8 digits of a CVR number given to the API in one of the documented forms, when its
    modulus-11 check digit is right; else None."""
    return valid_cvr(text) if len(text) <= 40 and _CVR_FORM.fullmatch(text) else None


class CvrField(fields.String):
    """A CVR number: 8 digits passing the modulus-11 check (spaces, dots, ``DK`` and ``-``
    allowed, see :data:`CVR_PATTERN`); deserialises to the 8 digits."""

    def __init__(self, **kwargs) -> None:
        metadata = {
            "description": "CVR number: 8 digits with a valid modulus-11 check digit",
            "example": "25313763",
            "pattern": CVR_PATTERN,
            "maxLength": 40,
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        cvr = api_cvr(super()._deserialize(value, attr, data, **kwargs))
        if cvr is None:
            raise ValidationError("not a valid CVR number (8 digits, modulus-11 check digit)")
        return cvr


# --- the approach object ----------------------------------------------------------------------


class ApproachCompanySchema(Schema):
    id = fields.Integer(required=True)
    cvr = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)


class ApproachNeedSchema(Schema):
    type = fields.String(required=True, metadata={"description": "recruitment, upskilling, ..."})
    code = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "taxonomy code when classified, else the delivered code"},
    )
    label = fields.String(
        required=True,
        metadata={"description": "taxonomy label when classified, else the delivered label"},
    )
    classified = fields.Boolean(required=True)


class ApproachSourceSchema(Schema):
    source = fields.String(required=True, metadata={"description": "configured source name"})
    source_id = fields.String(required=True, metadata={"description": "the source's record id"})


class ApproachNoteSchema(Schema):
    source = fields.String(required=True)
    source_id = fields.String(required=True)
    text = fields.String(required=True)


class ApproachViewSchema(Schema):
    id = fields.Integer(required=True)
    company = fields.Nested(ApproachCompanySchema, required=True)
    date = fields.Date(required=True)
    channel = fields.String(allow_none=True, required=True, metadata={"enum": list(CHANNELS)})
    organisations = fields.List(fields.String(), required=True)
    purpose = fields.String(allow_none=True, required=True)
    consultants = fields.List(fields.String(), required=True)
    needs = fields.List(fields.Nested(ApproachNeedSchema), required=True)
    sources = fields.List(fields.Nested(ApproachSourceSchema), required=True)
    coordinated = fields.Boolean(
        required=True, metadata={"description": "false for an uncoordinated approach"}
    )
    joint = fields.Boolean(required=True)
    planned = fields.Boolean(required=True)
    notes = fields.List(
        fields.Nested(ApproachNoteSchema),
        required=True,
        metadata={"description": "only the notes written by the caller's organisation"},
    )


ApproachPage = page_schema(ApproachViewSchema, "ApproachPage")


class ApproachListArgsSchema(PageArgs):
    cvr = CvrField()
    company_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    organisation = fields.String(
        validate=[validate.Length(min=1, max=300), NO_NUL],
        metadata={"description": "an organisation involved (name; case and æøå do not matter)"},
    )
    date_from = fields.Date(data_key="from", metadata={"description": "first date, inclusive"})
    date_to = fields.Date(data_key="to", metadata={"description": "last date, inclusive"})

    @validates_schema
    def _period(self, data, **kwargs):
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise ValidationError("must not be before 'from'", "to")


@blp.route("/approaches")
class Approaches(MethodView):
    @requires("coordinator")
    @blp.arguments(ApproachListArgsSchema, location="query")
    @blp.response(200, ApproachPage)
    @documented_errors(401, 403)
    def get(self, args):
        """Approaches, newest first, with whether each was coordinated.

        Filters combine; notes are shown only to the organisation that wrote them."""
        criteria = ApproachFilter(
            cvr=args.get("cvr"),
            company_id=args.get("company_id"),
            organisation=args.get("organisation"),
            date_from=args.get("date_from"),
            date_to=args.get("date_to"),
        )
        with unit_of_work() as session:
            items, total = list_approaches(
                session, criteria, caller().organisation, args["page"], args["page_size"]
            )
            audit(session, "approaches.list", filters=_audited(args), total=total)
        return {
            "items": items,
            "page": args["page"],
            "page_size": args["page_size"],
            "total": total,
        }


def _audited(args: dict) -> dict:
    return {key: str(value) for key, value in args.items() if value is not None}
