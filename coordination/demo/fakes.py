"""Fake source systems on 127.0.0.1, for the tests and for ``coordination demo``.

:class:`FakeODataCrm` plays the væksthus CRM (OAuth2 token endpoint plus OData appointments) and
:class:`FakeVeuApi` the VEU-center contact API, each serving a mutable list of records
(``.records``) with the paging, filtering and errors the real systems have (``sources.md``).

Fault injection, for tests:

- ``faults``: a queue of scripted answers for the next data requests, consumed one per request:
  ``("429", 2)`` answers 429 with ``Retry-After: 2``; ``("503", None)`` or ``("500", None)``
  answer that status without the header (any 4xx/5xx code works); ``("sleep", 1.5)`` waits
  1.5 s and then answers normally (for client timeouts); ``("garbage", None)`` answers 200 with
  a body that is not JSON.
- ``FakeODataCrm(token_uses=N)``: each token answers N data requests, then 401 (an expired
  token); ``token_faults`` is the same queue as ``faults`` for the token endpoint.
- Credentials (``client_id``/``client_secret``, ``api_key``) are checked; wrong ones get 401.
- ``requests`` logs every request seen (:class:`SeenRequest`), ``request_count`` counts them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

Fault = tuple[str, float | None]
HOST = "127.0.0.1"  # fakes hold personal-looking data and no auth worth the name: never expose
FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (tests and the demo make hundreds); errors still log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeServer:
    """A WSGI app served from a daemon thread; use ``with`` or ``start()``/``stop()``."""

    def __init__(self, records: Iterable[Mapping[str, Any]] = (), *, port: int = 0) -> None:
        self.records: list[Any] = list(records)
        self.faults: list[Fault] = []
        self.requests: list[SeenRequest] = []
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Self:
        """A fake serving the records of a sample file (a JSON array)."""
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), **kwargs)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        self._stopping.clear()
        self._server = make_server(
            HOST, self._port, self, threaded=True, request_handler=_QuietHandler
        )
        # A short poll interval: stop() waits for the serving loop to notice, up to this long.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping for a "sleep" fault
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{HOST}:{self._server.server_port}"

    @property
    def request_count(self) -> int:
        return len(self.requests)

    # --- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self._lock:
            self.requests.append(
                SeenRequest(
                    request.method,
                    request.path,
                    dict(request.args),
                    dict(request.headers),
                    dict(request.form),
                )
            )
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def apply_fault(self, queue: list[Fault]) -> Response | None:
        """Take the next scripted fault; an error answer, or None to answer normally."""
        with self._lock:
            if not queue:
                return None
            kind, arg = queue.pop(0)
        if kind == "sleep":
            self._stopping.wait(arg or 0)
            return None
        if kind == "garbage":
            return Response("<html>gateway says hello</html>", 200, content_type="text/html")
        headers = {"Retry-After": f"{arg:g}"} if arg is not None else {}
        return json_response({"error": f"scripted fault {kind}"}, int(kind), headers)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.records)


class FakeODataCrm(FakeServer):
    """A Dynamics-365-style CRM: ``token_url`` issues tokens, ``base_url/appointments`` pages."""

    API_PATH = "/api/data/v9.2"
    TOKEN_PATH = "/oauth2/v2.0/token"  # noqa: S105 (a URL path, not a password)

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] = (),
        *,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",  # noqa: S107 (a fake's well-known demo secret)
        token_uses: int | None = None,
        expires_in: int = 3599,
        max_page_size: int = 5000,
        port: int = 0,
    ) -> None:
        super().__init__(records, port=port)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_uses = token_uses
        self.expires_in = expires_in
        self.max_page_size = max_page_size
        self.token_faults: list[Fault] = []
        self.tokens_issued = 0
        self._uses_left: dict[str, int | None] = {}

    @property
    def base_url(self) -> str:
        return self.url + self.API_PATH

    @property
    def token_url(self) -> str:
        return self.url + self.TOKEN_PATH

    def dispatch(self, request: Request) -> Response:
        if request.path == self.TOKEN_PATH and request.method == "POST":
            return self.apply_fault(self.token_faults) or self._token(request)
        if request.path == f"{self.API_PATH}/appointments" and request.method == "GET":
            return self.apply_fault(self.faults) or self._authorised(request) or self._page(request)
        return json_response({"error": {"code": "0x80060888", "message": "Not found"}}, 404)

    def _token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return json_response({"error": "invalid_client"}, 401)
        with self._lock:
            self.tokens_issued += 1
            token = f"token-{self.tokens_issued}"
            self._uses_left[token] = self.token_uses
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return json_response(body)

    def _authorised(self, request: Request) -> Response | None:
        """None when the bearer token is valid (and counts one use of it), else a 401."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            left = self._uses_left.get(token, 0)
            if left is None or left > 0:
                self._uses_left[token] = None if left is None else left - 1
                return None
        error = {"error": {"code": "0x80040220", "message": "token expired or invalid"}}
        return json_response(error, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _page(self, request: Request) -> Response:
        query = request.args
        since = None
        if "$filter" in query:
            match = re.fullmatch(r"modifiedon gt (\S+)", query["$filter"].strip())
            if not match or _parse_time(match[1]) is None:
                return json_response({"error": {"message": "unsupported $filter"}}, 400)
            since = _parse_time(match[1])
        if query.get("$orderby", "modifiedon asc") != "modifiedon asc":
            return json_response({"error": {"message": "unsupported $orderby"}}, 400)
        rows = [r for r in self.snapshot() if since is None or _modified_after(r, since)]
        rows.sort(key=lambda r: _parse_time(_get(r, "modifiedon")) or FAR_FUTURE)
        size = self._page_size(request)
        skiptoken = query.get("$skiptoken", "0")
        if not skiptoken.isdigit():
            return json_response({"error": {"message": "invalid $skiptoken"}}, 400)
        offset = int(skiptoken)
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#appointments",
            "value": rows[offset : offset + size],
        }
        if offset + size < len(rows):
            next_query = {k: v for k, v in query.items() if k != "$skiptoken"}
            next_query["$skiptoken"] = str(offset + size)
            body["@odata.nextLink"] = f"{self.base_url}/appointments?" + _urlencode(next_query)
        return json_response(body, headers={"Preference-Applied": f"odata.maxpagesize={size}"})

    def _page_size(self, request: Request) -> int:
        match = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("Prefer", ""))
        wanted = int(match[1]) if match else self.max_page_size
        return max(1, min(wanted, self.max_page_size))


class FakeVeuApi(FakeServer):
    """The VEU-center API: ``GET base_url/api/v1/contacts`` with an API key and cursor paging.

    Items come in list order, not sorted by ``updated_at``: the real API promises no order.
    """

    CONTACTS_PATH = "/api/v1/contacts"

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] = (),
        *,
        api_key: str = "demo-key",
        default_limit: int = 100,
        max_limit: int = 1000,
        port: int = 0,
    ) -> None:
        super().__init__(records, port=port)
        self.api_key = api_key
        self.default_limit = default_limit
        self.max_limit = max_limit

    @property
    def base_url(self) -> str:
        return self.url

    def dispatch(self, request: Request) -> Response:
        if request.path != self.CONTACTS_PATH or request.method != "GET":
            return json_response({"error": "not found"}, 404)
        fault = self.apply_fault(self.faults)
        if fault is not None:
            return fault
        if request.headers.get("X-Api-Key") != self.api_key:
            return json_response({"error": "invalid or missing API key"}, 401)
        return self._page(request)

    def _page(self, request: Request) -> Response:
        query = request.args
        since = _parse_time(query["updated_since"]) if "updated_since" in query else None
        if "updated_since" in query and since is None:
            return json_response({"error": "updated_since is not an ISO-8601 timestamp"}, 400)
        try:
            limit = int(query.get("limit", self.default_limit))
            offset = _decode_cursor(query.get("cursor"))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        if not 1 <= limit <= self.max_limit:
            return json_response({"error": f"limit must be 1..{self.max_limit}"}, 400)
        rows = [r for r in self.snapshot() if since is None or _updated_since(r, since)]
        more = offset + limit < len(rows)
        body = {
            "items": rows[offset : offset + limit],
            "next_cursor": _encode_cursor(offset + limit) if more else None,
        }
        return json_response(body)


# --- helpers ----------------------------------------------------------------------------------


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    # ensure_ascii=False: æ, ø and å travel as UTF-8, as real servers send them.
    text = json.dumps(body, ensure_ascii=False)
    response = Response(text, status, content_type="application/json; charset=utf-8")
    response.headers.update(headers or {})
    return response


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else None


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _modified_after(record: Any, since: dt.datetime) -> bool:
    # A record whose time cannot be read is served anyway, as a careless real system would;
    # the connector must quarantine it.
    modified = _parse_time(_get(record, "modifiedon"))
    return modified is None or modified > since


def _updated_since(record: Any, since: dt.datetime) -> bool:
    updated = _parse_time(_get(record, "updated_at"))
    return updated is None or updated >= since


def _urlencode(query: Mapping[str, str]) -> str:
    return urlencode(query, quote_via=quote, safe="$:,'()")


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    prefix, _, number = decoded.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise ValueError("invalid cursor")
    return int(number)
