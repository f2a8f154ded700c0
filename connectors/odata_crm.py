"""The væksthus CRM: a Dynamics-365-style OData v4 Web API (spec ``sources.md`` section 1).

Appointments are read in ``modifiedon`` order, one :class:`Batch` per page. Because the order is
ascending, every batch can carry the largest ``modifiedon`` stored so far as its state: a run that
fails half-way resumes after the last stored page, never after records it did not store.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from marshmallow import fields, validate

from connectors.base import (
    Batch,
    CompanyRef,
    FatalError,
    NeedRef,
    PersonRef,
    Rejected,
    SourceRecordData,
    record_problems,
)
from connectors.http import (
    HttpClient,
    HttpConnector,
    HttpSourceOptions,
    MappingProblem,
    Unauthorized,
    advance,
    client_from_options,
    field_names_option,
    follow_next_link,
    format_utc,
    json_type,
    nested,
    now_utc,
    read_from,
    required_text,
    saved_cursor,
    text,
    timestamp,
)

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
STATE_KEY = "modifiedon"
STATUS_BY_STATECODE = {0: "planned", 1: "completed", 2: "cancelled"}
CHANNEL_BY_CONTACT_TYPE = {
    "besoeg": "visit",
    "telefon": "phone",
    "moede": "meeting",
    "email": "email",
    "virtuelt": "online",
}
# Renew a token this long before the lifetime it announced runs out, so that a request is not
# sent with a token about to expire (a 401 would still be handled, at the cost of a round trip).
TOKEN_EXPIRY_MARGIN_SECONDS = 60

# The spec's field names; ``field_names`` in the configuration may rename any of them. Fields of
# nested objects are written ``parent.child`` because ``fullname`` occurs in two of them.
DEFAULT_FIELD_NAMES = {
    name: name.rsplit(".", 1)[-1]
    for name in (
        "activityid",
        "subject",
        "scheduledstart",
        "modifiedon",
        "statecode",
        "cr_contacttype",
        "regardingobjectid_account",
        "regardingobjectid_account.accountid",
        "regardingobjectid_account.name",
        "regardingobjectid_account.cr_cvr",
        "regardingobjectid_account.cr_pnumber",
        "regardingobjectid_account.address1_line1",
        "regardingobjectid_account.address1_postalcode",
        "regardingobjectid_account.address1_city",
        "cr_contact",
        "cr_contact.fullname",
        "cr_contact.emailaddress1",
        "cr_contact.telephone1",
        "owninguser",
        "owninguser.fullname",
        "owninguser.internalemailaddress",
        "cr_competenceneeds",
        "cr_jointwith",
        "description",
    )
}


class ODataCrmOptions(HttpSourceOptions):
    token_url = fields.Url(required=True, require_tld=False)
    client_id = fields.String(required=True, validate=validate.Length(min=1))
    client_secret_env = fields.String(required=True, validate=validate.Length(min=1))
    scope = fields.String(load_default="")
    field_names = field_names_option(DEFAULT_FIELD_NAMES)


class ODataCrmConnector(HttpConnector):
    kind = "odata-crm"
    options_schema = ODataCrmOptions
    default_field_names = DEFAULT_FIELD_NAMES
    secret_options = {"client_secret_env": "client_secret"}

    def read(self, state: Mapping[str, Any] | None) -> Iterator[Batch]:
        run_started = now_utc()
        cursor = saved_cursor(state, STATE_KEY)
        form = self._token_form()
        with self._client() as client:
            token = BearerToken(client, self.config["token_url"], form, self._odata_headers())
            for page in follow_next_link(token.get_json, self._first_page_url(cursor), None):
                batch, cursor = self._batch(page.items, cursor, state, run_started)
                yield batch

    def _client(self) -> HttpClient:
        return client_from_options(self.config, sleep=self.sleep, headers={})

    def _odata_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "OData-Version": "4.0",
            "OData-MaxVersion": "4.0",
            "Prefer": f"odata.maxpagesize={self.config['page_size']}",
        }

    def _token_form(self) -> dict[str, str]:
        secret = self.secrets.get("client_secret")
        if not secret:
            raise FatalError(
                f"source {self.settings.name!r}: no client secret (set the environment variable "
                f"named by client_secret_env={self.config['client_secret_env']!r})"
            )
        return {
            "grant_type": "client_credentials",
            "client_id": self.config["client_id"],
            "client_secret": secret,
            "scope": self.config["scope"],
        }

    def _first_page_url(self, cursor: dt.datetime | None) -> str:
        since = read_from(cursor, self.config["cursor_overlap_seconds"])
        modifiedon = self.names["modifiedon"]
        query = {
            "$filter": f"{modifiedon} gt {format_utc(since)}",
            "$orderby": f"{modifiedon} asc",
        }
        # Spaces as %20 rather than '+': OData servers are not all forgiving about '+'.
        encoded = urlencode(query, quote_via=quote, safe="$:,'()")
        return f"{self.config['base_url'].rstrip('/')}/appointments?{encoded}"

    def _batch(
        self,
        items: list[Any],
        cursor: dt.datetime | None,
        state: Mapping[str, Any] | None,
        run_started: dt.datetime,
    ) -> tuple[Batch, dt.datetime | None]:
        records: list[SourceRecordData] = []
        rejected: list[Rejected] = []
        for item in items:
            outcome = self.map_item(item)
            (records if isinstance(outcome, SourceRecordData) else rejected).append(outcome)
            # Rejected items are stored too (quarantined), so they may move the cursor; a
            # corrected delivery comes with a newer modifiedon and is read then.
            cursor = advance(cursor, self._modified(item), run_started)
        new_state = {STATE_KEY: format_utc(cursor)} if cursor else dict(state or {})
        return Batch(records, rejected, new_state, fetched=len(items)), cursor

    def _modified(self, item: Any) -> dt.datetime | None:
        try:
            return timestamp(item, self.names["modifiedon"]) if isinstance(item, dict) else None
        except MappingProblem:
            return None

    # --- mapping ------------------------------------------------------------------------------

    def map_item(self, item: Any) -> SourceRecordData | Rejected:
        """One appointment as a canonical record, or as a rejection with the reason."""
        if not isinstance(item, dict):
            return Rejected({"item": item}, f"appointment is {json_type(item)}, not an object")
        source_id = item.get(self.names["activityid"])
        source_id = source_id if isinstance(source_id, str) and source_id else None
        try:
            record = self._record(item)
        except MappingProblem as exc:
            return Rejected(item, str(exc), source_id)
        except (TypeError, ValueError, OverflowError) as exc:
            # A value of a shape no check foresaw (fuzzing finds them): quarantine, never crash.
            return Rejected(item, f"unreadable item: {type(exc).__name__}: {exc}", source_id)
        problem = record_problems(record)
        if problem:
            return Rejected(item, problem, source_id)
        return record

    def _record(self, item: dict[str, Any]) -> SourceRecordData:
        n = self.names
        return SourceRecordData(
            source_id=required_text(item, n["activityid"]),
            approach_date=self._approach_date(item),
            status=self._status(item),
            company=self._company(item),
            channel=self._channel(item),
            purpose=text(item, n["subject"]),
            contact_person=self._person(
                item, "cr_contact", "fullname", "emailaddress1", "telephone1"
            ),
            consultant=self._person(item, "owninguser", "fullname", "internalemailaddress"),
            needs=tuple(
                NeedRef(type="upskilling", label=code, code=code)
                for code in _split(text(item, n["cr_competenceneeds"]))
            ),
            joint_with=tuple(_split(text(item, n["cr_jointwith"]))),
            notes=text(item, n["description"]),
            modified_at=timestamp(item, n["modifiedon"]),
            raw=item,
        )

    def _approach_date(self, item: dict[str, Any]) -> dt.date:
        key = self.names["scheduledstart"]
        value = required_text(item, key)
        try:
            start = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise MappingProblem(f"{key}: not an ISO-8601 datetime: {value!r}") from exc
        if start.tzinfo is None:
            # Without an offset the Copenhagen date is a guess that may be a day off.
            raise MappingProblem(f"{key}: datetime without a UTC offset: {value!r}")
        try:
            return start.astimezone(COPENHAGEN).date()
        except OverflowError as exc:
            raise MappingProblem(f"{key}: datetime out of range: {value!r}") from exc

    def _status(self, item: dict[str, Any]) -> str:
        key = self.names["statecode"]
        value = item.get(key)
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value not in STATUS_BY_STATECODE
        ):
            raise MappingProblem(f"{key}: unknown state {value!r} (expected 0, 1 or 2)")
        return STATUS_BY_STATECODE[value]

    def _channel(self, item: dict[str, Any]) -> str | None:
        key = self.names["cr_contacttype"]
        value = text(item, key)
        if value is None:
            return None
        channel = CHANNEL_BY_CONTACT_TYPE.get(value.strip().lower())
        if channel is None:
            raise MappingProblem(f"{key}: unknown contact type {value!r}")
        return channel

    def _company(self, item: dict[str, Any]) -> CompanyRef:
        n = self.names
        prefix = "regardingobjectid_account"
        account = nested(item, n[prefix])
        if account is None:
            raise MappingProblem(f"{n[prefix]} is missing: the appointment names no company")
        return CompanyRef(
            name=text(account, n[f"{prefix}.name"]),
            cvr=text(account, n[f"{prefix}.cr_cvr"]),
            p_number=text(account, n[f"{prefix}.cr_pnumber"]),
            address=text(account, n[f"{prefix}.address1_line1"]),
            postcode=text(account, n[f"{prefix}.address1_postalcode"]),
            city=text(account, n[f"{prefix}.address1_city"]),
            external_id=text(account, n[f"{prefix}.accountid"]),
        )

    def _person(
        self, item: dict[str, Any], prefix: str, name: str, email: str, phone: str | None = None
    ) -> PersonRef | None:
        n = self.names
        person = nested(item, n[prefix])
        if person is None:
            return None
        ref = PersonRef(
            name=text(person, n[f"{prefix}.{name}"]),
            email=text(person, n[f"{prefix}.{email}"]),
            phone=text(person, n[f"{prefix}.{phone}"]) if phone else None,
        )
        return ref if any((ref.name, ref.email, ref.phone)) else None


class BearerToken:
    """OAuth2 client credentials: fetches a token when needed and, on a ``401``, exactly one
    fresh token before repeating the request (spec: a 401 means the token expired)."""

    def __init__(
        self,
        client: HttpClient,
        token_url: str,
        form: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.token_url = token_url
        self.form = dict(form)
        self.headers = dict(headers or {})
        self.token: str | None = None
        self.renew_at = 0.0

    def get_json(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        if self.token is None or time.monotonic() >= self.renew_at:
            self.fetch()
        try:
            return self.client.get_json(url, params=params, headers=self._header())
        except Unauthorized:
            self.fetch()
            return self.client.get_json(url, params=params, headers=self._header())

    def fetch(self) -> None:
        try:
            answer = self.client.post_json(self.token_url, data=self.form)
        except FatalError as exc:
            raise FatalError(
                f"could not get an access token (check token_url, client_id and the client "
                f"secret): {exc}"
            ) from exc
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise FatalError(
                f"the token endpoint answered without an access_token: {str(answer)[:200]}"
            )
        lifetime = answer.get("expires_in")
        lifetime = lifetime if isinstance(lifetime, int | float) else 3600
        self.token = token
        self.renew_at = time.monotonic() + max(0.0, lifetime - TOKEN_EXPIRY_MARGIN_SECONDS)

    def _header(self) -> dict[str, str]:
        return {**self.headers, "Authorization": f"Bearer {self.token}"}


def _split(value: str | None) -> list[str]:
    """Semicolon-separated values, stripped, without empties or repeats, in delivered order."""
    if value is None:
        return []
    return list(dict.fromkeys(part.strip() for part in value.split(";") if part.strip()))
