"""Bearer-token authentication and the role table of the spec."""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable

from flask import current_app, g, request
from flask_smorest import abort
from sqlmodel import Session

from coordination.api.common import Caller, engine
from coordination.tokens import ROLE_GRANTS, find_active

# Authentication failures per client address within the window before answers turn to 429
# (app config AUTH_MAX_FAILURES overrides the count).
MAX_FAILURES = 20
FAILURE_WINDOW_SECONDS = 60.0
_failures: dict[str, deque[float]] = {}


def requires(role: str) -> Callable:
    """Allow callers whose role grants ``role`` ("visitor" means visitor+ in the spec)."""
    allowed = ROLE_GRANTS[role]

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            who = authenticate()
            if who.role not in allowed:
                abort(403, message=f"the role {who.role!r} may not use this endpoint")
            return view(*args, **kwargs)

        return wrapper

    return decorate


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
    with Session(engine()) as session:
        found = find_active(session, token.strip())
        if found is None:
            _fail(address)
            abort(401, message="the token is unknown, expired or revoked")
        g.caller = Caller(found.id, found.organisation, found.role)
    return g.caller


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
