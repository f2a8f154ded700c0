"""Who is looking at a page: the web login and the role each page needs.

The web pages use the same identities as the API: a person logs in with an API token (and may
give their name). The signed session cookie then holds the token's id, organisation and role, never
the token itself. Every request checks again that the token is still active, so revoking or
expiring a token ends its web sessions too.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, session, url_for
from sqlmodel import Session

from coordination.api.common import Caller, engine
from coordination.models import ApiToken, utcnow
from coordination.tokens import ROLE_GRANTS, find_active

# The keys of the signed session cookie that make up a login.
_LOGIN_KEYS = ("token_id", "organisation", "role", "name")


def log_in(plain_token: str, name: str | None) -> Caller | None:
    """Check ``plain_token``; on success start a fresh session for it and return the caller."""
    with Session(engine()) as db:
        token = find_active(db, plain_token.strip())
        if token is None:
            return None
        who = Caller(token.id, token.organisation, token.role, (name or "").strip() or None)
    language = session.get("lang")
    session.clear()  # a new login never inherits another login's session
    if language:
        session["lang"] = language
    session.update(
        token_id=who.token_id, organisation=who.organisation, role=who.role, name=who.name
    )
    session.permanent = True
    return who


def log_out() -> None:
    for key in _LOGIN_KEYS:
        session.pop(key, None)


def load_caller() -> Caller | None:
    """The caller of this request from the session, or None (also when the token was revoked,
    expired or changed since the login: then the login is forgotten)."""
    token_id = session.get("token_id")
    if not isinstance(token_id, int):
        return None
    with Session(engine()) as db:
        token = db.get(ApiToken, token_id)
        valid = token is not None and _still_active(token) and _same_identity(token)
    if not valid:
        log_out()
        return None
    return Caller(token_id, session["organisation"], session["role"], session.get("name"))


def current_caller() -> Caller | None:
    return g.get("caller")


def may_see(role: str, who: Caller | None = None) -> bool:
    """Whether the caller's role grants ``role`` ("coordinator" means coordinator+)."""
    who = who or current_caller()
    return who is not None and who.role in ROLE_GRANTS[role]


def page_for(role: str) -> Callable:
    """A page for callers whose role grants ``role``: others are sent to the login page (when
    not logged in) or get 403 (when logged in with a role that may not see it)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if current_caller() is None:
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            if not may_see(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (never another host: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _still_active(token: ApiToken) -> bool:
    if token.revoked_at is not None:
        return False
    if token.expires_at is None:
        return True
    expires = token.expires_at
    if expires.tzinfo is None:  # SQLite hands back naive UTC
        expires = expires.replace(tzinfo=dt.UTC)
    return expires > utcnow()


def _same_identity(token: ApiToken) -> bool:
    return token.organisation == session.get("organisation") and token.role == session.get("role")
