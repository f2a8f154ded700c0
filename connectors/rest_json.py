"""The VEU-center contact API: JSON pages behind an API key (spec ``sources.md`` section 3)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

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
    advance,
    client_from_options,
    field_names_option,
    follow_cursor,
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

STATE_KEY = "updated_at"
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A deleted item may come without its date; the record then only needs some date to be valid.
DELETED_PLACEHOLDER_DATE = dt.date(1970, 1, 1)

# The spec's field names; ``field_names`` in the configuration may rename any of them. Fields of
# nested objects are written ``parent.child`` because ``name`` occurs in three of them.
DEFAULT_FIELD_NAMES = {
    name: name.rsplit(".", 1)[-1]
    for name in (
        "id",
        "updated_at",
        "deleted",
        "date",
        "channel",
        "purpose",
        "company",
        "company.cvr",
        "company.p_number",
        "company.name",
        "company.address",
        "company.postcode",
        "company.city",
        "contact_person",
        "contact_person.name",
        "contact_person.email",
        "contact_person.phone",
        "consultant",
        "consultant.name",
        "consultant.email",
        "needs",
        "needs.type",
        "needs.code",
        "needs.label",
        "joint_with",
        "notes",
    )
}


class RestJsonOptions(HttpSourceOptions):
    api_key_env = fields.String(required=True, validate=validate.Length(min=1))
    field_names = field_names_option(DEFAULT_FIELD_NAMES)


class RestJsonConnector(HttpConnector):
    kind = "rest-json"
    options_schema = RestJsonOptions
    default_field_names = DEFAULT_FIELD_NAMES
    secret_options = {"api_key_env": "api_key"}

    def read(self, state: Mapping[str, Any] | None) -> Iterator[Batch]:
        """Yield one batch per page.

        Items are not guaranteed to come in ``updated_at`` order, so after a page we cannot know
        that later pages hold nothing older than what we saw. Saving that page's maximum and then
        failing on a later page would make the next run skip the older items of the unread
        pages. So every batch but the last carries the previous state unchanged, and only the
        last one, stored once everything before it is, moves the cursor.
        """
        run_started = now_utc()
        previous = saved_cursor(state, STATE_KEY)
        unchanged = dict(state or {})
        cursor = previous
        with self._client() as client:
            url = f"{self.config['base_url'].rstrip('/')}/api/v1/contacts"
            params = {
                "updated_since": format_utc(
                    read_from(previous, self.config["cursor_overlap_seconds"])
                ),
                "limit": str(self.config["page_size"]),
            }
            for page in follow_cursor(_fetcher(client), url, params):
                records, rejected = self._map_page(page.items)
                for item in page.items:
                    cursor = advance(cursor, self._updated(item), run_started)
                new_state = unchanged
                if page.is_last and cursor is not None:
                    new_state = {STATE_KEY: format_utc(cursor)}
                yield Batch(records, rejected, new_state, fetched=len(page.items))

    def _client(self) -> HttpClient:
        api_key = self.secrets.get("api_key")
        if not api_key:
            raise FatalError(
                f"source {self.settings.name!r}: no API key (set the environment variable named "
                f"by api_key_env={self.config['api_key_env']!r})"
            )
        headers = {"Accept": "application/json", "X-Api-Key": api_key}
        return client_from_options(self.config, sleep=self.sleep, headers=headers)

    def _map_page(self, items: list[Any]) -> tuple[list[SourceRecordData], list[Rejected]]:
        records: list[SourceRecordData] = []
        rejected: list[Rejected] = []
        for item in items:
            outcome = self.map_item(item)
            (records if isinstance(outcome, SourceRecordData) else rejected).append(outcome)
        return records, rejected

    def _updated(self, item: Any) -> dt.datetime | None:
        try:
            return timestamp(item, self.names["updated_at"]) if isinstance(item, dict) else None
        except MappingProblem:
            return None

    # --- mapping ------------------------------------------------------------------------------

    def map_item(self, item: Any) -> SourceRecordData | Rejected:
        """One contact item as a canonical record, or as a rejection with the reason."""
        if not isinstance(item, dict):
            return Rejected({"item": item}, f"contact item is {json_type(item)}, not an object")
        source_id = item.get(self.names["id"])
        source_id = source_id if isinstance(source_id, str) and source_id else None
        try:
            record = self._deleted(item) if self._is_deleted(item) else self._record(item)
        except MappingProblem as exc:
            return Rejected(item, str(exc), source_id)
        except (TypeError, ValueError, OverflowError) as exc:
            # A value of a shape no check foresaw (fuzzing finds them): quarantine, never crash.
            return Rejected(item, f"unreadable item: {type(exc).__name__}: {exc}", source_id)
        problem = record_problems(record)
        if problem:
            return Rejected(item, problem, source_id)
        return record

    def _is_deleted(self, item: dict[str, Any]) -> bool:
        key = self.names["deleted"]
        value = item.get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise MappingProblem(f"{key}: expected true or false, got {json_type(value)}")
        return value

    def _deleted(self, item: dict[str, Any]) -> SourceRecordData:
        """A deletion needs only its id; everything else may be gone from the source."""
        try:
            approach_date = self._date(item)
        except MappingProblem:
            approach_date = DELETED_PLACEHOLDER_DATE
        return SourceRecordData(
            source_id=required_text(item, self.names["id"]),
            approach_date=approach_date,
            status="deleted",
            company=CompanyRef(name=None),
            modified_at=timestamp(item, self.names["updated_at"]),
            raw=item,
        )

    def _record(self, item: dict[str, Any]) -> SourceRecordData:
        n = self.names
        return SourceRecordData(
            source_id=required_text(item, n["id"]),
            approach_date=self._date(item),
            status="completed",
            company=self._company(item),
            channel=text(item, n["channel"]),  # checked against CHANNELS by record_problems
            purpose=text(item, n["purpose"]),
            contact_person=self._person(item, "contact_person", with_phone=True),
            consultant=self._person(item, "consultant", with_phone=False),
            needs=self._needs(item),
            joint_with=self._joint_with(item),
            notes=text(item, n["notes"]),
            modified_at=timestamp(item, n["updated_at"]),
            raw=item,
        )

    def _date(self, item: dict[str, Any]) -> dt.date:
        key = self.names["date"]
        value = required_text(item, key)
        try:
            if not ISO_DATE.match(value):
                raise ValueError("not in YYYY-MM-DD form")
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise MappingProblem(f"{key}: not a valid date: {value!r} ({exc})") from exc

    def _company(self, item: dict[str, Any]) -> CompanyRef:
        n = self.names
        company = nested(item, n["company"])
        if company is None:
            raise MappingProblem(f"{n['company']} is missing: the contact names no company")
        return CompanyRef(
            name=text(company, n["company.name"]),
            cvr=text(company, n["company.cvr"]),
            p_number=text(company, n["company.p_number"]),
            address=text(company, n["company.address"]),
            postcode=text(company, n["company.postcode"]),
            city=text(company, n["company.city"]),
        )

    def _person(self, item: dict[str, Any], prefix: str, *, with_phone: bool) -> PersonRef | None:
        n = self.names
        person = nested(item, n[prefix])
        if person is None:
            return None
        ref = PersonRef(
            name=text(person, n[f"{prefix}.name"]),
            email=text(person, n[f"{prefix}.email"]),
            phone=text(person, n[f"{prefix}.phone"]) if with_phone else None,
        )
        return ref if any((ref.name, ref.email, ref.phone)) else None

    def _needs(self, item: dict[str, Any]) -> tuple[NeedRef, ...]:
        n = self.names
        needs = _list(item, n["needs"])
        refs = []
        for index, need in enumerate(needs):
            where = f"{n['needs']}[{index}]"
            if not isinstance(need, dict):
                raise MappingProblem(f"{where}: expected an object, got {json_type(need)}")
            try:
                need_type = required_text(need, n["needs.type"])
                code = text(need, n["needs.code"])
                label = text(need, n["needs.label"]) or code
            except MappingProblem as exc:
                raise MappingProblem(f"{where}.{exc}") from exc
            if label is None:
                raise MappingProblem(f"{where}: neither label nor code")
            refs.append(NeedRef(type=need_type, label=label, code=code))
        return tuple(refs)

    def _joint_with(self, item: dict[str, Any]) -> tuple[str, ...]:
        key = self.names["joint_with"]
        names = []
        for index, name in enumerate(_list(item, key)):
            if not isinstance(name, str):
                raise MappingProblem(f"{key}[{index}]: expected a string, got {json_type(name)}")
            if name.strip():
                names.append(name.strip())
        return tuple(dict.fromkeys(names))


def _list(item: Mapping[str, Any], key: str) -> list[Any]:
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingProblem(f"{key}: expected an array, got {json_type(value)}")
    return value


def _fetcher(client: HttpClient) -> Callable[[str, Mapping[str, str] | None], Any]:
    def fetch(url: str, params: Mapping[str, str] | None) -> Any:
        return client.get_json(url, params=params)

    return fetch
