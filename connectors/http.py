"""One HTTP client for the HTTP connectors: timeouts, bounded retries, typed errors, paginators.

Every request gets a (connect, read) timeout. Connection errors, timeouts and 5xx answers are
retried with exponential back-off; ``429`` and ``503`` wait for ``Retry-After`` (capped). When the
retries are used up the fault is a :class:`RetriableError` (the next scheduled run may succeed); a
``4xx`` is a :class:`FatalError`, because asking again will not change the answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
from marshmallow import Schema, ValidationError, fields, validate

from connectors.base import Connector, FatalError, RetriableError, SourceSettings

DEFAULT_TIMEOUT = (5.0, 30.0)
BODY_EXCERPT_CHARS = 300
# Statuses whose Retry-After header names the wait; other 5xx use the back-off schedule.
RETRY_AFTER_STATUSES = (429, 503)


class Unauthorized(FatalError):
    """A ``401``: fatal unless the caller can fix its credentials (e.g. fetch a new token)."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4  # repeats after the first attempt
    backoff_seconds: float = 1.0  # first back-off; doubles on each retry
    max_wait_seconds: float = 60.0  # cap for back-off and for Retry-After

    def backoff(self, retry: int) -> float:
        return min(self.backoff_seconds * (2**retry), self.max_wait_seconds)

    def retry_after(self, header: str | None, retry: int) -> float:
        """The wait a ``Retry-After`` header asks for (seconds or HTTP date), capped."""
        seconds = _parse_retry_after(header)
        if seconds is None:
            return self.backoff(retry)
        return min(max(seconds, 0.0), self.max_wait_seconds)


class HttpClient:
    """A ``requests.Session`` with timeouts and retries; use as a context manager to close it."""

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send a request, retrying passing faults; return a 2xx/3xx response or raise."""
        problem = ""
        for attempt in range(self.retry.max_retries + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                wait = self.retry.backoff(attempt)
            except requests.RequestException as exc:  # invalid URL and the like
                raise FatalError(f"{method} {_short(url)} failed: {exc}") from exc
            else:
                if response.status_code < 400:
                    return response
                _raise_if_final(method, url, response)
                problem = f"HTTP {response.status_code}"
                if response.status_code in RETRY_AFTER_STATUSES:
                    wait = self.retry.retry_after(response.headers.get("Retry-After"), attempt)
                else:
                    wait = self.retry.backoff(attempt)
                response.close()
            if attempt < self.retry.max_retries:
                self.sleep(wait)
        raise RetriableError(
            f"{method} {_short(url)} still failing after {self.retry.max_retries} retries: "
            f"{problem}"
        )

    def get_json(self, url: str, **kwargs: Any) -> Any:
        return parse_json(self.request("GET", url, **kwargs))

    def post_json(self, url: str, **kwargs: Any) -> Any:
        return parse_json(self.request("POST", url, **kwargs))


def parse_json(response: requests.Response) -> Any:
    """The body as JSON; an answer that is not JSON is malformed, so retrying will not help."""
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise FatalError(
            f"{response.request.method} {_short(response.url)} answered with a body that is "
            f"not JSON (or unusably deep): {_excerpt(response)}"
        ) from exc


def _raise_if_final(method: str, url: str, response: requests.Response) -> None:
    status = response.status_code
    if status >= 500 or status == 429:
        return
    message = f"{method} {_short(url)} answered HTTP {status}: {_excerpt(response)}"
    if status == 401:
        raise Unauthorized(message)
    raise FatalError(message)


def _parse_retry_after(header: str | None) -> float | None:
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


def _excerpt(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[:BODY_EXCERPT_CHARS] + "..."
    return text or "(empty body)"


def _short(url: str) -> str:
    """The URL without its query, which is long and adds nothing to an error message."""
    return url.split("?", 1)[0]


# --- paginators -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Any]
    is_last: bool


FetchJson = Callable[[str, Mapping[str, str] | None], Any]


def follow_next_link(
    fetch: FetchJson,
    url: str,
    params: Mapping[str, str] | None = None,
    *,
    items_key: str = "value",
    next_key: str = "@odata.nextLink",
) -> Iterator[Page]:
    """OData paging: the answer holds ``value`` and, while more remain, an absolute next link
    that already carries the query, so it is followed without ``params``."""
    next_url: str | None = url
    while next_url:
        body = fetch(next_url, params)
        items = _items(body, items_key, next_url)
        link = body.get(next_key) or None
        if link is not None and not isinstance(link, str):
            raise FatalError(f"{_short(url)}: {next_key} is not a string: {link!r}")
        if link == next_url:  # a server that links a page to itself would keep us forever
            raise FatalError(f"{_short(url)}: {next_key} points at the page just read")
        next_url, params = link, None
        yield Page(items, is_last=next_url is None)


def follow_cursor(
    fetch: FetchJson,
    url: str,
    params: Mapping[str, str],
    *,
    items_key: str = "items",
    cursor_key: str = "next_cursor",
    cursor_param: str = "cursor",
) -> Iterator[Page]:
    """Cursor paging: repeat the query with ``cursor=<next_cursor>`` until it is null."""
    query = dict(params)
    while True:
        body = fetch(url, query)
        items = _items(body, items_key, url)
        cursor = body.get(cursor_key)
        if cursor is not None and not isinstance(cursor, str):
            raise FatalError(f"{_short(url)}: {cursor_key} is not a string: {cursor!r}")
        if cursor and cursor == query.get(cursor_param):
            raise FatalError(f"{_short(url)}: {cursor_key} repeats the cursor just used")
        yield Page(items, is_last=not cursor)
        if not cursor:
            return
        query[cursor_param] = cursor


def _items(body: Any, items_key: str, url: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(items_key), list):
        raise FatalError(f"{_short(url)}: the answer has no {items_key!r} list")
    return body[items_key]


# --- options every HTTP source shares ---------------------------------------------------------


class HttpSourceOptions(Schema):
    """Options common to the HTTP connectors; each connector's schema extends this one."""

    base_url = fields.Url(required=True, require_tld=False)
    page_size = fields.Integer(load_default=500, validate=validate.Range(min=1, max=10_000))
    # Re-read this much before the saved cursor: records with the cursor's own timestamp that
    # landed after the last read, and small clock differences, are then not missed. Re-read
    # records are de-duplicated downstream by content hash.
    cursor_overlap_seconds = fields.Integer(load_default=300, validate=validate.Range(min=0))
    timeout_seconds = fields.Float(
        load_default=DEFAULT_TIMEOUT[1], validate=validate.Range(min=0, min_inclusive=False)
    )
    connect_timeout_seconds = fields.Float(
        load_default=DEFAULT_TIMEOUT[0], validate=validate.Range(min=0, min_inclusive=False)
    )
    max_retries = fields.Integer(load_default=4, validate=validate.Range(min=0, max=20))
    max_retry_wait_seconds = fields.Float(load_default=60.0, validate=validate.Range(min=0))


def field_names_option(defaults: Mapping[str, str]) -> fields.Dict:
    """An optional ``field_names`` table: spec name (``parent.child`` when nested) -> the name
    this installation uses. Unknown spec names are rejected so a typo cannot go unnoticed."""
    return fields.Dict(
        keys=fields.String(validate=validate.OneOf(sorted(defaults))),
        values=fields.String(validate=validate.Length(min=1)),
        load_default=dict,
    )


class HttpConnector(Connector):
    """What the HTTP connectors share: validated options, field names with the spec's names as
    defaults, and an injectable ``sleep`` (tests pass a no-op so retries do not wait)."""

    default_field_names: Mapping[str, str] = {}

    def __init__(
        self, settings: SourceSettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        super().__init__(settings)
        self.config = load_options(self.options_schema, settings)
        self.names = {**self.default_field_names, **self.config["field_names"]}
        self.sleep = sleep


def load_options(schema: type[Schema], settings: SourceSettings) -> dict[str, Any]:
    """Validate ``settings.options`` (again: loading is idempotent, and connectors built by hand
    in tests or tools get the same defaults and checks as those built from the configuration)."""
    try:
        return schema().load(dict(settings.options))
    except ValidationError as exc:
        raise FatalError(f"source {settings.name!r}: invalid options: {exc.messages}") from exc


def client_from_options(
    options: Mapping[str, Any], *, sleep: Callable[[float], None], headers: Mapping[str, str]
) -> HttpClient:
    retry = RetryPolicy(
        max_retries=options["max_retries"],
        backoff_seconds=min(1.0, options["max_retry_wait_seconds"]),
        max_wait_seconds=options["max_retry_wait_seconds"],
    )
    timeout = (options["connect_timeout_seconds"], options["timeout_seconds"])
    return HttpClient(timeout=timeout, retry=retry, sleep=sleep, headers=headers)


# --- cursors ----------------------------------------------------------------------------------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def saved_cursor(state: Mapping[str, Any] | None, key: str) -> dt.datetime | None:
    """The cursor stored under ``key`` by an earlier run, or None on a first run."""
    if not state or state.get(key) is None:
        return None
    try:
        return parse_utc(state[key])
    except ValueError as exc:
        raise FatalError(f"saved connector state is unreadable: {key}={state[key]!r}") from exc


def read_from(cursor: dt.datetime | None, overlap_seconds: int) -> dt.datetime:
    """Where a run starts reading: the cursor minus the overlap, or the epoch on a first run."""
    if cursor is None:
        return EPOCH
    return max(EPOCH, cursor - dt.timedelta(seconds=overlap_seconds))


def advance(
    cursor: dt.datetime | None, seen: dt.datetime | None, run_started: dt.datetime
) -> dt.datetime | None:
    """The larger of the old cursor and a change time seen, but never past the run's start: a
    source clock ahead of ours must not make the next run skip records changed meanwhile."""
    candidates = [c for c in (cursor, seen) if c is not None]
    if not candidates:
        return None
    return min(max(candidates), run_started)


def parse_utc(value: Any) -> dt.datetime:
    """An ISO-8601 timestamp as an aware UTC datetime; a missing offset is read as UTC, the
    only zone these APIs speak for change times."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 timestamp, got {json_type(value)}")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
        raise ValueError(f"timestamp out of range: {value!r}") from exc


# --- mapping JSON items onto canonical records ------------------------------------------------


class MappingProblem(Exception):
    """A delivered item cannot be mapped; the message is the quarantine reason."""


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"a number ({value!r})"
    return names.get(type(value), type(value).__name__)


def text(item: Mapping[str, Any], key: str) -> str | None:
    """A text field; an empty or blank string is None, any other type is a mapping problem."""
    value = item.get(key)
    if type(value) is str:  # the common case first; blank is empty or all whitespace
        return None if not value or value.isspace() else value
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingProblem(f"{key}: expected a string, got {json_type(value)}")
    return value if value.strip() else None


def required_text(item: Mapping[str, Any], key: str) -> str:
    value = text(item, key)
    if value is None:
        raise MappingProblem(f"{key} is missing")
    return value


def nested(item: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """An object field (or None when absent or null)."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MappingProblem(f"{key}: expected an object, got {json_type(value)}")
    return value


def timestamp(item: Mapping[str, Any], key: str) -> dt.datetime:
    """A required change time as aware UTC."""
    value = item.get(key)
    if value is None:
        raise MappingProblem(f"{key} is missing")
    try:
        return parse_utc(value)
    except ValueError as exc:
        raise MappingProblem(f"{key}: not an ISO-8601 timestamp: {value!r} ({exc})") from exc
