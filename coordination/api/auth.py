"""Bearer-token authentication and the role table of the spec."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections import deque
from collections.abc import Callable

from flask import current_app, g, request
from flask_smorest import abort
from sqlmodel import Session

from coordination.api.common import Caller, engine
from coordination.models import utcnow
from coordination.tokens import ROLE_GRANTS, find_active, hash_token

# Authentication failures per client address within the window before answers turn to 429
# (app config AUTH_MAX_FAILURES overrides the count).
MAX_FAILURES = 20
FAILURE_WINDOW_SECONDS = 60.0
_failures: dict[str, deque[float]] = {}
# A token found active is trusted for this many seconds (app config TOKEN_CACHE_SECONDS
# overrides; 0 turns the cache off): revoking a token therefore takes effect in every worker
# within this time, while an unknown or revoked token is never cached and always looked up.
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 10_000


def requires(role: str) -> Callable:
    """Allow callers whose role grants ``role`` ("visitor" means visitor+ in the spec)."""
    allowed = ROLE_GRANTS[role]

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            ensure_role(allowed)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def ensure_role(allowed: set[str] | frozenset[str]) -> Caller:
    """The caller, when its role is one of ``allowed`` (a value of ``ROLE_GRANTS``); else 403."""
    who = authenticate()
    if who.role not in allowed:
        abort(403, message=f"the role {who.role!r} may not use this endpoint")
    return who


def authenticate() -> Caller:
    if g.get("caller") is not None:
        return g.caller
    address = request.remote_addr or "?"
    if _too_many_failures(address):
        abort(429, message="too many failed authentication attempts; try again later")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        _fail(address)
        abort(401, message="an API token is required: Authorization: Bearer <token>")
    who = _cached_caller(token.strip())
    if who is None:
        _fail(address)
        abort(401, message="the token is unknown, expired or revoked")
    g.caller = who
    return g.caller


def _cached_caller(plain: str) -> Caller | None:
    """The caller of an active token, from the per-app cache while its entry is young (see
    :data:`TOKEN_CACHE_SECONDS`), else from the database."""
    seconds = current_app.config.get("TOKEN_CACHE_SECONDS", TOKEN_CACHE_SECONDS)
    cache = current_app.extensions["coordination"].setdefault("token_cache", {})
    key = hash_token(plain)
    now = time.monotonic()
    entry = cache.get(key)
    if entry is not None:
        cached_at, who, expires_at = entry
        if now - cached_at < seconds and (expires_at is None or expires_at > utcnow()):
            return who
        cache.pop(key, None)
    with Session(engine()) as session:
        found = find_active(session, plain, now=utcnow())
        if found is None:
            return None
        who = Caller(found.id, found.organisation, found.role)
        expires_at = found.expires_at
    if seconds > 0:
        if len(cache) >= TOKEN_CACHE_SIZE:
            cache.clear()
        if expires_at is not None and expires_at.tzinfo is None:  # SQLite hands back naive UTC
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        cache[key] = (now, who, expires_at)
    return who


def _too_many_failures(address: str) -> bool:
    window = _failures.get(address)
    if not window:
        return False
    cutoff = time.monotonic() - FAILURE_WINDOW_SECONDS
    while window and window[0] < cutoff:
        window.popleft()
    return len(window) >= current_app.config.get("AUTH_MAX_FAILURES", MAX_FAILURES)


def _fail(address: str) -> None:
    _failures.setdefault(address, deque()).append(time.monotonic())


def reset_failures() -> None:
    """For tests: forget recorded failures."""
    _failures.clear()
