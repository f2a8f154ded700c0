"""API: the councils' reports (council+) and the review of unclassified needs (coordinator+).

Reports carry no personal data and suppress figures derived from fewer than 3 companies. Every
report answer, JSON or download, is recorded in the audit log.
"""

from __future__ import annotations

import datetime as dt

from flask import Response
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from connectors.base import NEED_TYPES
from coordination.api.approaches import documented_errors
from coordination.api.auth import requires
from coordination.api.common import PageArgs, audit, caller, config, page_schema, unit_of_work
from coordination.needs.codelists import load_codelists
from coordination.needs.review import MappingError, add_mapping, list_unclassified
from coordination.reports import Period, ReportRequestError, area_ids
from coordination.reports.competence_needs import (
    GROUP_BY,
    OCCUPATION_LEVELS,
    CompetenceNeedsRequest,
    competence_needs_report,
)
from coordination.reports.coordination_report import CoordinationRequest, coordination_report
from coordination.reports.export import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    flatten_competence_needs,
    to_csv,
    to_xlsx,
)

blp = Blueprint("reports", __name__, url_prefix="/api/v1", description="reports")

FORMATS = ("json", "csv", "xlsx")
_DOWNLOADS = {
    "csv": (CSV_MEDIA_TYPE + "; charset=utf-8", to_csv),
    "xlsx": (XLSX_MEDIA_TYPE, to_xlsx),
}
# flask-smorest merges the three 200 answers into one; they share the description.
_REPORT_FORMATS = (
    "format=json (default): the report. format=csv: UTF-8 with BOM, ';'-separated; "
    "format=xlsx: a workbook. Both downloads have a header row and one row per need and group, "
    "then the totals; suppressed figures are empty cells."
)
_DATE = {"format": "date"}
AREA_PATTERN = r"^(?:[a-z][a-z-]{0,98}[a-z]|[0-9]{3})$"


# --- arguments ----------------------------------------------------------------------------------


class ReportArgs(Schema):
    area = fields.String(
        required=True,
        metadata={
            "description": "A council area id (rar-oestjylland, rar-vestjylland, "
            "region-midtjylland) or the 3-digit code of a municipality of the region",
            # The form of an area id; which ones exist comes from the code lists.
            "pattern": AREA_PATTERN,
        },
    )
    from_ = fields.Date(
        required=True, data_key="from", metadata={"description": "First day (YYYY-MM-DD)"}
    )
    to = fields.Date(required=True, metadata={"description": "Last day, included (YYYY-MM-DD)"})

    @validates_schema
    def _area_and_period(self, data, **kwargs):
        if data["area"] not in area_ids(load_codelists()):
            raise ValidationError(f"unknown area {data['area']!r}", "area")
        try:
            Period.requested(data["from_"], data["to"])
        except ReportRequestError as exc:
            raise ValidationError(str(exc), exc.field) from exc


class CompetenceNeedsArgs(ReportArgs):
    group_by = fields.String(load_default="sector", validate=validate.OneOf(GROUP_BY))
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))
    top = fields.Integer(
        load_default=5,
        validate=validate.Range(min=1, max=50),
        metadata={"description": "How many needs to list per group in top_needs"},
    )
    occupation_level = fields.String(
        load_default="unit",
        validate=validate.OneOf(OCCUPATION_LEVELS),
        metadata={"description": "Count occupations by DISCO unit, sub-major or major group"},
    )


class UnclassifiedArgs(PageArgs):
    source = fields.String(validate=validate.Length(min=1, max=100))
    need_type = fields.String(validate=validate.OneOf(NEED_TYPES))


class NeedMappingArgs(Schema):
    source_name = fields.String(
        load_default="",
        allow_none=True,
        validate=validate.Length(max=100),
        metadata={"description": "Only needs from this source (default: every source)"},
    )
    code = fields.String(load_default="", allow_none=True, validate=validate.Length(max=100))
    label = fields.String(load_default="", allow_none=True, validate=validate.Length(max=500))
    need_type = fields.String(
        load_default="", allow_none=True, validate=validate.OneOf(("", *NEED_TYPES))
    )
    taxonomy_code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "komp:<competence code> or disco:<4-digit DISCO-08 code>"},
    )


# --- answers ------------------------------------------------------------------------------------


class AreaSchema(Schema):
    id = fields.String()
    name = fields.String()
    municipalities = fields.List(fields.String())


class PeriodSchema(Schema):
    from_ = fields.String(attribute="from", data_key="from", metadata=_DATE)
    to = fields.String(metadata=_DATE)


class SuppressionSchema(Schema):
    min_companies = fields.Integer()
    rule = fields.String()


class FigureSchema(Schema):
    """Counts in the period and the previous one; null where suppressed."""

    companies = fields.Integer(allow_none=True)
    approaches = fields.Integer(allow_none=True)
    previous_companies = fields.Integer(allow_none=True)
    previous_approaches = fields.Integer(allow_none=True)
    change_companies = fields.Integer(allow_none=True)
    change_approaches = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    previous_suppressed = fields.Boolean()


class GroupFigureSchema(FigureSchema):
    group = fields.String()
    group_label = fields.String()


class NeedIdentitySchema(Schema):
    need_type = fields.String()
    need_type_label = fields.String()
    code = fields.String(metadata={"description": "taxonomy code, or 'unclassified'"})
    label = fields.String()


class NeedRowSchema(NeedIdentitySchema, FigureSchema):
    cells = fields.List(
        fields.Nested(GroupFigureSchema),
        metadata={"description": "per group; a group not listed counts 0"},
    )


class TopNeedSchema(NeedIdentitySchema):
    companies = fields.Integer()
    approaches = fields.Integer()


class TopNeedsSchema(Schema):
    group = fields.String()
    group_label = fields.String()
    needs = fields.List(fields.Nested(TopNeedSchema))


class CompetenceNeedsReportSchema(Schema):
    area = fields.Nested(AreaSchema)
    period = fields.Nested(PeriodSchema)
    previous_period = fields.Nested(PeriodSchema)
    group_by = fields.String()
    occupation_level = fields.String()
    suppression = fields.Nested(SuppressionSchema)
    total = fields.Nested(FigureSchema)
    groups = fields.List(fields.Nested(GroupFigureSchema))
    needs = fields.List(fields.Nested(NeedRowSchema))
    top_needs_overall = fields.List(fields.Nested(TopNeedSchema))
    top_needs = fields.List(fields.Nested(TopNeedsSchema))


class RulesSchema(Schema):
    window_days = fields.Integer()
    lookup_valid_days = fields.Integer()
    flag_threshold = fields.Integer()


class BucketSchema(Schema):
    bucket = fields.String()
    companies = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()


class UncoordinatedSchema(Schema):
    approaches = fields.Integer(allow_none=True)
    companies = fields.Integer(allow_none=True)
    share = fields.Float(allow_none=True)
    suppressed = fields.Boolean()


class PriorContactChecksSchema(UncoordinatedSchema):
    median_lead_days = fields.Float(allow_none=True)


class FlagsByTypeSchema(Schema):
    organisation_type = fields.String()
    label = fields.String()
    flags = fields.Integer(allow_none=True)
    companies = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()


class FlagsSchema(Schema):
    flags = fields.Integer(allow_none=True)
    companies = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    by_organisation_type = fields.List(fields.Nested(FlagsByTypeSchema))


class MunicipalityFiguresSchema(Schema):
    municipality_code = fields.String()
    name = fields.String()
    companies = fields.Integer(allow_none=True)
    approaches = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    uncoordinated_approaches = fields.Integer(allow_none=True)
    share_uncoordinated = fields.Float(allow_none=True)
    uncoordinated_suppressed = fields.Boolean()
    flags = fields.Integer(allow_none=True)
    flags_suppressed = fields.Boolean()


class CoordinationReportSchema(Schema):
    area = fields.Nested(AreaSchema)
    period = fields.Nested(PeriodSchema)
    rules = fields.Nested(RulesSchema)
    suppression = fields.Nested(SuppressionSchema)
    companies = fields.Integer(allow_none=True)
    approaches = fields.Integer(allow_none=True)
    suppressed = fields.Boolean()
    approaches_per_company = fields.List(fields.Nested(BucketSchema))
    organisations_per_company = fields.List(fields.Nested(BucketSchema))
    uncoordinated = fields.Nested(UncoordinatedSchema)
    prior_contact_checks = fields.Nested(PriorContactChecksSchema)
    flags = fields.Nested(FlagsSchema)
    by_municipality = fields.List(fields.Nested(MunicipalityFiguresSchema))


class UnclassifiedNeedSchema(Schema):
    source = fields.String()
    need_type = fields.String()
    code = fields.String(allow_none=True)
    label = fields.String()
    needs = fields.Integer(metadata={"description": "stored needs with this label"})
    companies = fields.Integer(metadata={"description": "distinct companies they concern"})


UnclassifiedNeedPage = page_schema(UnclassifiedNeedSchema, "UnclassifiedNeedPage")


class NeedMappingSchema(Schema):
    id = fields.Integer()
    source_name = fields.String()
    code = fields.String()
    label_key = fields.String(metadata={"description": "the label folded for matching"})
    need_type = fields.String()
    taxonomy_code = fields.String()
    taxonomy_label = fields.String()
    created_by = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    applied_to = fields.Integer(metadata={"description": "stored needs it classifies now"})


# --- endpoints ----------------------------------------------------------------------------------


@blp.route("/reports/competence-needs")
@requires("council")
@blp.arguments(CompetenceNeedsArgs, location="query")
@blp.response(200, CompetenceNeedsReportSchema, description=_REPORT_FORMATS)
@blp.alt_response(
    200,
    schema={"type": "string"},
    content_type=CSV_MEDIA_TYPE,
    description=_REPORT_FORMATS,
)
@blp.alt_response(
    200,
    schema={"type": "string", "format": "binary"},
    content_type=XLSX_MEDIA_TYPE,
    description=_REPORT_FORMATS,
)
@documented_errors(401, 403)
def competence_needs(args):
    """Competence needs by area, period and group, with the change against the previous
    period of equal length and the top needs per group; JSON, CSV or XLSX."""
    request = CompetenceNeedsRequest(
        area=args["area"],
        period=Period.requested(args["from_"], args["to"]),
        group_by=args["group_by"],
        top=args["top"],
        occupation_level=args["occupation_level"],
    )
    with unit_of_work() as session:
        report = _or_422(lambda: competence_needs_report(session, request))
        audit(
            session,
            "report.download",
            target="competence-needs",
            area=request.area,
            period=request.period.as_dict(),
            group_by=request.group_by,
            format=args["format"],
        )
    if args["format"] == "json":
        return report
    return _download(report, args["format"], request)


@blp.route("/reports/coordination")
@requires("council")
@blp.arguments(ReportArgs, location="query")
@blp.response(200, CoordinationReportSchema)
@documented_errors(401, 403)
def coordination(args):
    """Approaches per company, organisations per company, the share of uncoordinated
    approaches and of approaches preceded by a prior-contact check, and flags per organisation
    type, for an area and period."""
    request = CoordinationRequest(args["area"], Period.requested(args["from_"], args["to"]))
    with unit_of_work() as session:
        report = _or_422(lambda: coordination_report(session, request, config().rules))
        audit(
            session,
            "report.download",
            target="coordination",
            area=request.area,
            period=request.period.as_dict(),
            format="json",
        )
    return report


@blp.route("/needs/unclassified")
@requires("coordinator")
@blp.arguments(UnclassifiedArgs, location="query")
@blp.response(200, UnclassifiedNeedPage)
@documented_errors(401, 403)
def unclassified_needs(args):
    """Needs that map to no taxonomy code, grouped by source, type, code and label, the most
    frequent first."""
    page, size = args["page"], args["page_size"]
    with unit_of_work() as session:
        items, total = list_unclassified(
            session,
            source=args.get("source"),
            need_type=args.get("need_type"),
            offset=(page - 1) * size,
            limit=size,
        )
    return {"items": items, "page": page, "page_size": size, "total": total}


@blp.route("/needs/mappings", methods=["POST"])
@requires("coordinator")
@blp.arguments(NeedMappingArgs)
@blp.response(201, NeedMappingSchema)
@blp.alt_response(200, schema=NeedMappingSchema, description="An existing mapping was changed")
@documented_errors(401, 403)
def add_need_mapping(args):
    """Map a delivered code and/or label (optionally of one source and need type) to a
    taxonomy code. Applies at once to the stored needs and to every later sync."""
    codelists = load_codelists()
    with unit_of_work() as session:
        try:
            added = add_mapping(
                session,
                args["taxonomy_code"],
                source_name=args["source_name"] or "",
                code=args["code"] or "",
                label=args["label"] or "",
                need_type=args["need_type"] or "",
                created_by=caller().actor,
                codelists=codelists,
            )
        except MappingError as exc:
            abort(422, message=str(exc), errors={"json": {exc.field: [str(exc)]}})
        mapping = added.mapping
        audit(
            session,
            "need-mapping.add",
            target=mapping.taxonomy_code,
            mapping_id=mapping.id,
            applied_to=added.applied_to,
        )
        answer = {
            **mapping.model_dump(),
            "created_at": _aware(mapping.created_at),
            "taxonomy_label": codelists.taxonomy_label(mapping.taxonomy_code),
            "applied_to": added.applied_to,
        }
    return answer, 201 if added.created else 200


# --- helpers ------------------------------------------------------------------------------------


def _or_422(build):
    """Run a report builder; an area or period the code lists reject becomes a 422."""
    try:
        return build()
    except ReportRequestError as exc:
        abort(422, message=str(exc), errors={"query": {exc.field: [str(exc)]}})


def _download(report: dict, fmt: str, request: CompetenceNeedsRequest) -> Response:
    media_type, write = _DOWNLOADS[fmt]
    period = request.period
    filename = f"kompetencebehov-{request.area}-{period.start}-{period.end}.{fmt}"
    return Response(
        write(flatten_competence_needs(report)),
        content_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
