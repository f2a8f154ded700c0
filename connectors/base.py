"""The connector contract: what every source kind yields, its errors, and the registry.

A connector reads one source system and yields :class:`Batch` objects. Each batch carries the
canonical records it could understand, the records it could not (:class:`Rejected`, to be
quarantined with a reason), and the connector state to persist *once the batch is stored*.
Connectors never touch the database; the sync engine stores a batch and its state together.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import operator
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate

ENTRY_POINT_GROUP = "coordination.connectors"

CHANNELS = ("visit", "phone", "meeting", "email", "online")
STATUSES = ("completed", "planned", "cancelled", "deleted")
NEED_TYPES = ("upskilling", "recruitment", "retention", "apprentices")


# --- canonical record -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CompanyRef:
    name: str | None
    cvr: str | None = None  # as delivered (may be invalid or formatted); validated downstream
    p_number: str | None = None
    address: str | None = None
    postcode: str | None = None
    city: str | None = None
    external_id: str | None = None  # the source system's own company id, if any


@dataclasses.dataclass(frozen=True, slots=True)
class PersonRef:
    name: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NeedRef:
    type: str  # one of NEED_TYPES
    label: str
    code: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SourceRecordData:
    """One record as the source delivered it, in canonical shape."""

    source_id: str
    approach_date: dt.date
    status: str  # one of STATUSES; "deleted" records carry no other meaningful data
    company: CompanyRef
    channel: str | None = None  # one of CHANNELS
    purpose: str | None = None
    contact_person: PersonRef | None = None
    consultant: PersonRef | None = None
    needs: tuple[NeedRef, ...] = ()
    joint_with: tuple[str, ...] = ()
    notes: str | None = None
    modified_at: dt.datetime | None = None  # the source's own change time (UTC), if it has one
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """A delivered record the connector could not understand; it is quarantined, never dropped."""

    raw: Mapping[str, Any]
    reason: str
    source_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """A unit of work: store ``records`` and ``rejected``, then persist ``state`` in the same
    transaction. ``state`` is JSON-serialisable and opaque to the engine."""

    records: list[SourceRecordData]
    rejected: list[Rejected]
    state: dict[str, Any]
    fetched: int = 0  # raw items read from the source for this batch


# --- validation of connector output (the connector edge) --------------------------------------


class _CompanySchema(Schema):
    name = fields.String(allow_none=True, validate=validate.Length(max=500))
    cvr = fields.String(allow_none=True, validate=validate.Length(max=40))
    p_number = fields.String(allow_none=True, validate=validate.Length(max=40))
    address = fields.String(allow_none=True, validate=validate.Length(max=500))
    postcode = fields.String(allow_none=True, validate=validate.Length(max=20))
    city = fields.String(allow_none=True, validate=validate.Length(max=200))
    external_id = fields.String(allow_none=True, validate=validate.Length(max=200))


class _PersonSchema(Schema):
    name = fields.String(allow_none=True, validate=validate.Length(max=300))
    email = fields.String(allow_none=True, validate=validate.Length(max=300))
    phone = fields.String(allow_none=True, validate=validate.Length(max=60))


class _NeedSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(NEED_TYPES))
    label = fields.String(required=True, validate=validate.Length(min=1, max=500))
    code = fields.String(allow_none=True, validate=validate.Length(max=100))


class SourceRecordSchema(Schema):
    """Checks a canonical record before it is stored; a failure quarantines the record."""

    source_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    approach_date = fields.Date(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    company = fields.Nested(_CompanySchema, required=True)
    channel = fields.String(allow_none=True, validate=validate.OneOf(CHANNELS))
    purpose = fields.String(allow_none=True, validate=validate.Length(max=2000))
    contact_person = fields.Nested(_PersonSchema, allow_none=True)
    consultant = fields.Nested(_PersonSchema, allow_none=True)
    needs = fields.List(fields.Nested(_NeedSchema))
    joint_with = fields.List(fields.String(validate=validate.Length(max=300)))
    notes = fields.String(allow_none=True, validate=validate.Length(max=20000))
    modified_at = fields.AwareDateTime(allow_none=True)


_RECORD_SCHEMA = SourceRecordSchema()


def record_problems(record: SourceRecordData) -> str | None:
    """Return a readable reason why ``record`` cannot be stored, or None when it is fine."""
    if not _plainly_valid(record):
        problem = _schema_problems(record)
        if problem:
            return problem
    if record.status != "deleted":
        company = record.company
        has_name = bool(company.name and company.name.strip())
        if not has_name and not (company.cvr and company.cvr.strip()):
            return "no company identification: neither company name nor CVR number"
    return None


# The happy path is checked in plain Python (marshmallow costs about a fifth of a sync); any
# record that is not plainly valid goes through the schema, which decides and words the reason.
_COMPANY_LIMITS = {
    "name": 500,
    "cvr": 40,
    "p_number": 40,
    "address": 500,
    "postcode": 20,
    "city": 200,
    "external_id": 200,
}
_PERSON_LIMITS = {"name": 300, "email": 300, "phone": 60}


def _text(value: Any, limit: int, nullable: bool = True) -> bool:
    if value is None:
        return nullable
    return type(value) is str and len(value) <= limit


def _texts(values: tuple, limits: tuple[int, ...]) -> bool:
    """``_text`` of each value with its limit (None allowed), without a call per value."""
    for value, limit in zip(values, limits, strict=True):
        if value is not None and (type(value) is not str or len(value) > limit):
            return False
    return True


_company_texts = operator.attrgetter(*_COMPANY_LIMITS)
_COMPANY_LIMIT_VALUES = tuple(_COMPANY_LIMITS.values())
_person_texts = operator.attrgetter(*_PERSON_LIMITS)
_PERSON_LIMIT_VALUES = tuple(_PERSON_LIMITS.values())


def _person(person: Any) -> bool:
    if person is None:
        return True
    return type(person) is PersonRef and _texts(_person_texts(person), _PERSON_LIMIT_VALUES)


def _need(n: Any) -> bool:
    return (
        type(n) is NeedRef
        and n.type in NEED_TYPES
        and type(n.label) is str
        and 1 <= len(n.label) <= 500
        and _text(n.code, 100)
    )


def _joint(name: Any) -> bool:
    return type(name) is str and len(name) <= 300


def _plainly_valid(r: SourceRecordData) -> bool:
    return (
        type(r.source_id) is str
        and 1 <= len(r.source_id) <= 200
        and type(r.approach_date) is dt.date
        and r.status in STATUSES
        and type(r.company) is CompanyRef
        and _texts(_company_texts(r.company), _COMPANY_LIMIT_VALUES)
        and (r.channel is None or r.channel in CHANNELS)
        and _text(r.purpose, 2000)
        and _person(r.contact_person)
        and _person(r.consultant)
        and type(r.needs) is tuple
        and (not r.needs or all(map(_need, r.needs)))
        and type(r.joint_with) is tuple
        and (not r.joint_with or all(map(_joint, r.joint_with)))
        and _text(r.notes, 20000)
        and (
            r.modified_at is None
            or (type(r.modified_at) is dt.datetime and r.modified_at.utcoffset() is not None)
        )
    )


def _schema_problems(record: SourceRecordData) -> str | None:
    # Built field by field: asdict() would deep-copy ``raw``, which can be large.
    data = {
        f.name: plain(getattr(record, f.name))
        for f in dataclasses.fields(record)
        if f.name != "raw"
    }
    data["approach_date"] = record.approach_date.isoformat()
    if record.modified_at is not None:
        data["modified_at"] = record.modified_at.isoformat()
    try:
        _RECORD_SCHEMA.load(data)
    except ValidationError as exc:
        return _flatten(exc.messages)
    return None


def plain(value: Any) -> Any:
    """``value`` as JSON-like data: dataclasses to dicts, tuples to lists."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def _flatten(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        return "; ".join(_flatten(v, f"{prefix}{k}.") for k, v in messages.items())
    if isinstance(messages, list):
        return ", ".join(_flatten(m, prefix) for m in messages)
    return f"{prefix.rstrip('.')}: {messages}"


# --- errors -----------------------------------------------------------------------------------


class ConnectorError(Exception):
    """A source could not be read; the run for this source fails, others go on."""


class RetriableError(ConnectorError):
    """A passing fault (timeout, 5xx, 429) that outlived the retries."""


class FatalError(ConnectorError):
    """A fault that retrying cannot fix (bad credentials, malformed answers, missing folder)."""


# --- the connector interface and registry -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceSettings:
    """What a connector gets from the configuration: its ``[[sources]]`` table (minus the
    service's own keys) and the secrets resolved from the environment."""

    name: str
    options: Mapping[str, Any]
    secrets: Mapping[str, str]


class Connector(abc.ABC):
    """One kind of source system.

    Subclasses set ``kind``, declare their options in ``options_schema`` (a marshmallow schema
    validated at start-up) and name the options that hold *environment variable names* of secrets
    in ``secret_options`` (e.g. ``{"client_secret_env": "client_secret"}``: the variable named by
    option ``client_secret_env`` is read into ``secrets["client_secret"]``).
    """

    kind: ClassVar[str]
    options_schema: ClassVar[type[Schema]]
    secret_options: ClassVar[Mapping[str, str]] = {}

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        self.options = settings.options
        self.secrets = settings.secrets

    @abc.abstractmethod
    def read(self, state: Mapping[str, Any] | None) -> Iterator[Batch]:
        """Yield batches of changes since ``state`` (None on the first run)."""


def load_registry() -> dict[str, type[Connector]]:
    """All connector classes registered under the entry-point group, keyed by kind."""
    registry: dict[str, type[Connector]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        registry[ep.name] = cls
    return registry
