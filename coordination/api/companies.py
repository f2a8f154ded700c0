"""API: companies (visitor+): search, detail, the prior-contact check and planned visits.

A company is addressed by its CVR number (``/companies/{cvr}``), or, since unresolved companies
have none, by its id (``/companies/id/{company_id}``); both forms offer the same operations.
A malformed CVR number is 422, an unknown one 404. Contact persons are shown to the visitor and
coordinator roles only. Every search, company view and check is audited.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, post_load, validate

from coordination.api.approaches import (
    CVR_PATTERN,
    MAX_ID,
    NO_NUL,
    ApproachViewSchema,
    CvrField,
    api_cvr,
    documented_errors,
)
from coordination.api.auth import ensure_role, requires
from coordination.api.common import (
    PageArgs,
    audit,
    audit_values,
    caller,
    config,
    connection_of_work,
    json_answer,
    page_schema,
    unit_of_work,
)
from coordination.api.flags import FlagSummarySchema
from coordination.companies import (
    CompanyNotFound,
    CompanyQuery,
    NotYourPlannedVisit,
    PlannedDateInPast,
    PlannedVisitNotFound,
    QuickCheck,
    UnknownMunicipality,
    add_planned_visit,
    answer_recorded_check,
    company_by_cvr,
    company_by_id,
    company_detail,
    delete_planned_visit,
    full_prior_contact_check,
    local_today,
    municipality_code_for,
    planned_for,
    quick_prior_contact_check,
    search_companies,
)
from coordination.models import Company
from coordination.tokens import ROLE_GRANTS

blp = Blueprint("companies", __name__, url_prefix="/api/v1", description="companies")

CONTACT_ROLES = frozenset({"visitor", "coordinator"})
_VISITOR_ROLES = ROLE_GRANTS["visitor"]

_CVR_PATH = {
    "in": "path",
    "name": "cvr",
    "description": "CVR number (8 digits, modulus-11 check digit); 422 when malformed",
    "schema": {"type": "string", "pattern": CVR_PATTERN, "maxLength": 40, "example": "25313763"},
}
_ID_PATH = {
    "in": "path",
    "name": "company_id",
    "description": "the company's id (for companies without a CVR number)",
}
_VISIT_PATH = {"in": "path", "name": "visit_id", "description": "the planned visit's id"}


# --- schemas ----------------------------------------------------------------------------------


class CompanySearchArgsSchema(PageArgs):
    q = fields.String(
        validate=[validate.Length(min=1, max=300), NO_NUL],
        metadata={"description": "a company name (fuzzy) or a CVR number"},
    )
    cvr = CvrField()
    postcode = fields.String(validate=validate.Regexp(r"^[0-9]{4}$"))
    municipality = fields.String(
        validate=[validate.Length(min=1, max=100), NO_NUL],
        metadata={"description": "a 3-digit municipality code, or a municipality's name"},
    )

    @post_load
    def _municipality_code(self, data, **kwargs):
        if "municipality" in data:
            try:
                data["municipality"] = municipality_code_for(data["municipality"])
            except UnknownMunicipality:
                raise ValidationError("not a municipality of the region", "municipality") from None
        return data


class CompanyHitSchema(Schema):
    id = fields.Integer(required=True)
    cvr = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)
    address = fields.String(allow_none=True, required=True)
    postcode = fields.String(allow_none=True, required=True)
    city = fields.String(allow_none=True, required=True)
    municipality_code = fields.String(allow_none=True, required=True)
    resolved = fields.Boolean(required=True, metadata={"description": "has a CVR number"})
    score = fields.Float(
        allow_none=True, required=True, metadata={"description": "name similarity, 0-100"}
    )


CompanyPage = page_schema(CompanyHitSchema, "CompanyPage")


class ProductionUnitSchema(Schema):
    p_number = fields.String(required=True)
    address = fields.String(allow_none=True, required=True)
    postcode = fields.String(allow_none=True, required=True)
    city = fields.String(allow_none=True, required=True)


class ContactPersonSchema(Schema):
    name = fields.String(allow_none=True, required=True)
    email = fields.String(allow_none=True, required=True)
    phone = fields.String(allow_none=True, required=True)
    last_seen_on = fields.Date(allow_none=True, required=True)


class CompanyDetailSchema(Schema):
    id = fields.Integer(required=True)
    cvr = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)
    address = fields.String(allow_none=True, required=True)
    postcode = fields.String(allow_none=True, required=True)
    city = fields.String(allow_none=True, required=True)
    municipality_code = fields.String(allow_none=True, required=True)
    resolved = fields.Boolean(required=True)
    industry_section = fields.String(allow_none=True, required=True)
    size_band = fields.String(allow_none=True, required=True)
    production_units = fields.List(fields.Nested(ProductionUnitSchema), required=True)
    contact_persons = fields.List(
        fields.Nested(ContactPersonSchema),
        metadata={"description": "for the visitor and coordinator roles only"},
    )


class PlannedVisitSchema(Schema):
    id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "registered visit's id"}
    )
    approach_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "planned approach from a source"}
    )
    date = fields.Date(required=True)
    organisations = fields.List(fields.String(), required=True)
    purpose = fields.String(allow_none=True, required=True)
    registered_by = fields.String(allow_none=True, required=True)


class PlannedVisitListSchema(Schema):
    items = fields.List(fields.Nested(PlannedVisitSchema), required=True)


class PlannedVisitArgsSchema(Schema):
    date = fields.Date(required=True, metadata={"description": "today or later"})
    purpose = fields.String(allow_none=True, validate=[validate.Length(max=2000), NO_NUL])


DEFAULT_DAYS, MAX_DAYS = 180, 3650


class PriorContactArgsSchema(Schema):
    days = fields.Integer(
        load_default=DEFAULT_DAYS,
        validate=validate.Range(min=1, max=MAX_DAYS),
        metadata={"description": "how many days of approaches to list"},
    )


class ContactSummarySchema(Schema):
    approaches_30d = fields.Integer(required=True)
    approaches_90d = fields.Integer(required=True)
    organisations_90d = fields.Integer(
        required=True, metadata={"description": "number of distinct organisations"}
    )
    last_approach = fields.Date(allow_none=True, required=True)


class SourceFreshnessSchema(Schema):
    source = fields.String(required=True)
    organisation = fields.String(required=True)
    last_success_at = fields.AwareDateTime(allow_none=True, required=True)
    last_status = fields.String(allow_none=True, required=True)
    stale = fields.Boolean(
        required=True,
        metadata={"description": "last run failed, or no successful sync for over 48 hours"},
    )


class RecordedCheckSchema(Schema):
    id = fields.Integer(required=True)
    organisation = fields.String(required=True)
    checked_at = fields.AwareDateTime(required=True)


class PriorContactSchema(Schema):
    company = fields.Nested(CompanyDetailSchema, required=True)
    days = fields.Integer(required=True)
    approaches = fields.List(fields.Nested(ApproachViewSchema), required=True)
    planned = fields.List(fields.Nested(PlannedVisitSchema), required=True)
    open_flags = fields.List(fields.Nested(FlagSummarySchema), required=True)
    summary = fields.Nested(ContactSummarySchema, required=True)
    sources = fields.List(fields.Nested(SourceFreshnessSchema), required=True)
    check = fields.Nested(RecordedCheckSchema, required=True)


# The check's answer, dumped as PriorContactSchema would, without marshmallow's per-field cost.
_ANSWER_PRIOR_CONTACT = json_answer(PriorContactSchema())
_PRIOR_CONTACT_ARGS = PriorContactArgsSchema()
# The query strings of a check that need no parsing: none, or ``days`` alone in plain digits.
_PLAIN_DAYS = re.compile(rb"(?:days=([0-9]{1,4}))?")


# --- search -----------------------------------------------------------------------------------


@blp.route("/companies")
class Companies(MethodView):
    @requires("visitor")
    @blp.arguments(CompanySearchArgsSchema, location="query")
    @blp.response(200, CompanyPage)
    @documented_errors(401, 403)
    def get(self, args):
        """Search companies: by CVR (exact), name (fuzzy, best first), postcode, municipality.

        Criteria combine; without any, every company is listed by name."""
        query = CompanyQuery(
            text=(args.get("q") or "").strip() or None,
            cvr=args.get("cvr"),
            postcode=args.get("postcode"),
            municipality_code=args.get("municipality"),
        )
        with unit_of_work() as session:
            items, total = search_companies(session, query, args["page"], args["page_size"])
            audit(session, "companies.search", **_criteria(query), total=total)
        return {
            "items": items,
            "page": args["page"],
            "page_size": args["page_size"],
            "total": total,
        }


def _criteria(query: CompanyQuery) -> dict:
    values = {
        "q": query.text,
        "cvr": query.cvr,
        "postcode": query.postcode,
        "municipality": query.municipality_code,
    }
    return {key: value for key, value in values.items() if value is not None}


# --- one company ------------------------------------------------------------------------------

# A company reference from the path: ("cvr", "12345678") or ("id", 17).
Reference = tuple[str, object]


def _by_cvr(raw: str) -> Reference:
    cvr = api_cvr(raw)
    if cvr is None:
        abort(
            422,
            message="not a valid CVR number (8 digits, modulus-11 check digit)",
            errors={"path": {"cvr": ["not a valid CVR number"]}},
        )
    return ("cvr", cvr)


def _by_id(company_id: int) -> Reference:
    return ("id", company_id)


def _target(reference: Reference) -> str:
    return f"{reference[0]}:{reference[1]}"


def _find(session, reference: Reference) -> Company | None:
    kind, value = reference
    try:
        if kind == "cvr":
            return company_by_cvr(session, value)
        return company_by_id(session, value) if value <= MAX_ID else None
    except CompanyNotFound:
        return None


def _not_found(reference: Reference):
    kind, value = reference
    label = "CVR number" if kind == "cvr" else "id"
    abort(404, message=f"no company with {label} {value}")


def _with_contacts() -> bool:
    return caller().role in CONTACT_ROLES


def _company(reference: Reference) -> dict:
    with unit_of_work() as session:
        company = _find(session, reference)
        audit(session, "companies.view", _target(reference), found=company is not None)
        detail = company_detail(session, company, _with_contacts()) if company else None
    if detail is None:
        _not_found(reference)
    return detail


def _prior_contact(reference: Reference, days: int) -> dict:
    """The check's fast path without a transaction (on PostgreSQL one statement reads and
    records), then, when the check changes the company's coordination, its re-evaluation in
    one; when the fast path records nothing, the full check in one."""
    who = caller()
    target = _target(reference)
    arguments = (config(), who.organisation, who.name, days, _with_contacts())
    entry = audit_values("companies.prior_contact", target, found=True, days=days)
    kind, value = reference
    if kind == "id" and value > MAX_ID:
        quick = QuickCheck(found=False)
    else:
        key = {"cvr": value} if kind == "cvr" else {"company_id": value}
        with connection_of_work(autocommit=True) as connection:
            quick = quick_prior_contact_check(connection, *arguments, entry, **key)
    if not quick.found:
        with unit_of_work() as session:
            audit(
                session, "companies.prior_contact", target, found=False, company_id=None, days=days
            )
        _not_found(reference)
    if quick.answer is not None:
        return quick.answer
    with unit_of_work() as session:
        company = _find(session, reference)
        if company is None:  # deleted in between
            _not_found(reference)
        if quick.recorded is not None:
            settings, organisation, _consultant, days, with_contacts = arguments
            return answer_recorded_check(
                session, company, quick.recorded, settings, organisation, days, with_contacts
            )
        # The fast path has declined: go straight to the full check, not through it again.
        return full_prior_contact_check(session, company, *arguments, audit=entry)


def plain_days(query: bytes) -> int | None:
    """The ``days`` of a check's raw query string when it is empty or ``days=`` with 1 to 4
    digits in the schema's range (what nearly every caller sends); None for any other query,
    which :class:`PriorContactArgsSchema` parses (and words the errors of)."""
    match = _PLAIN_DAYS.fullmatch(query)
    if match is None:
        return None
    if match[1] is None:
        return DEFAULT_DAYS
    days = int(match[1])
    return days if 1 <= days <= MAX_DAYS else None


def _prior_contact_response(reference: Reference, days: int):
    return _ANSWER_PRIOR_CONTACT(_prior_contact(reference, days))


def _planned(reference: Reference) -> dict:
    with unit_of_work() as session:
        company = _find(session, reference)
        today = local_today(config().schedule.timezone)
        items = planned_for(session, company.id, today) if company else None
    if items is None:
        _not_found(reference)
    return {"items": items}


def _plan(reference: Reference, args: dict) -> dict:
    who = caller()
    today = local_today(config().schedule.timezone)
    try:
        with unit_of_work() as session:
            company = _find(session, reference)
            if company is None:
                _not_found(reference)
            visit = add_planned_visit(
                session,
                company.id,
                who.organisation,
                args["date"],
                args.get("purpose"),
                who.actor,
                today,
            )
            audit(session, "companies.plan_visit", _target(reference), visit_id=visit["id"])
    except PlannedDateInPast:
        abort(
            422,
            message="a planned visit must be dated today or later",
            errors={"json": {"date": [f"must not be before {today.isoformat()}"]}},
        )
    return visit


def _unplan(reference: Reference, visit_id: int) -> None:
    who = caller()
    try:
        with unit_of_work() as session:
            company = _find(session, reference)
            if company is None:
                _not_found(reference)
            if visit_id > MAX_ID:
                raise PlannedVisitNotFound(visit_id)
            delete_planned_visit(session, company.id, visit_id, who.organisation)
            audit(session, "companies.unplan_visit", _target(reference), visit_id=visit_id)
    except PlannedVisitNotFound:
        abort(404, message=f"the company has no planned visit with id {visit_id}")
    except NotYourPlannedVisit:
        abort(403, message="only the organisation that registered a planned visit may delete it")


# --- routes: the same operations by CVR number and by id --------------------------------------


def _company_views(prefix: str, path_parameter: dict, reference: Callable) -> None:
    """Register the company, prior-contact and planned-visit views under ``prefix``."""
    name = "ByCvr" if reference is _by_cvr else "ById"
    # A malformed CVR number in the path is 422; an id path only ever matches integers.
    errors = (401, 403, 404, 422) if reference is _by_cvr else (401, 403, 404)

    class CompanyView(MethodView):
        @requires("visitor")
        @blp.response(200, CompanyDetailSchema)
        @documented_errors(*errors)
        def get(self, **path):
            """A company with its production units and (visitor, coordinator) contact persons."""
            return _company(reference(*path.values()))

    class PriorContactView(MethodView):
        init_every_request = False  # no state: one instance serves every check

        def dispatch_request(self, **path):
            """The check is the service's busiest call. With a plain query (see
            :func:`plain_days`) it skips webargs and flask-smorest's wrappers, which would add
            nothing (``get`` answers with a ready response); any other query, or method, takes
            the documented path, so validation errors stay theirs."""
            days = plain_days(request.query_string) if request.method == "GET" else None
            if days is None:
                return super().dispatch_request(**path)
            ensure_role(_VISITOR_ROLES)
            return _prior_contact_response(reference(*path.values()), days)

        @requires("visitor")
        # An instance, not the class: webargs would build a new schema for every check.
        @blp.arguments(_PRIOR_CONTACT_ARGS, location="query")
        @blp.response(200, PriorContactSchema)
        @documented_errors(*errors)
        def get(self, args, **path):
            """The prior-contact check: who approached the company, planned visits, open flags,
            a summary and how fresh each source is. Recorded as a check by the caller's
            organisation: that organisation's approaches from today until ``lookup_valid_days``
            (configuration; 14 by default) days later count as coordinated."""
            return _prior_contact_response(reference(*path.values()), args["days"])

    class PlannedView(MethodView):
        @requires("visitor")
        @blp.response(200, PlannedVisitListSchema)
        @documented_errors(*errors)
        def get(self, **path):
            """Upcoming planned visits to the company (registered here or planned in a CRM)."""
            return _planned(reference(*path.values()))

        @requires("visitor")
        @blp.arguments(PlannedVisitArgsSchema)
        @blp.response(201, PlannedVisitSchema)
        @documented_errors(*errors)
        def post(self, args, **path):
            """Register a planned visit by the caller's organisation (date today or later)."""
            return _plan(reference(*path.values()), args)

    class PlannedVisitView(MethodView):
        @requires("visitor")
        @blp.response(204)
        @documented_errors(*errors)
        def delete(self, visit_id, **path):
            """Delete a planned visit; only the organisation that registered it may."""
            _unplan(reference(*path.values()), visit_id)

    for view, suffix, extra in [
        (CompanyView, "", []),
        (PriorContactView, "/prior-contact", []),
        (PlannedView, "/planned", []),
        (PlannedVisitView, "/planned/<int:visit_id>", [_VISIT_PATH]),
    ]:
        view.__name__ = f"{view.__name__}{name}"
        blp.route(prefix + suffix, parameters=[path_parameter, *extra])(view)


_company_views("/companies/<cvr>", _CVR_PATH, _by_cvr)
_company_views("/companies/id/<int:company_id>", _ID_PATH, _by_id)
