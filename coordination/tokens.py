"""API tokens: random, shown once, stored only as a SHA-256 hash, may expire or be revoked."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlmodel import Session

from coordination.models import ApiToken, utcnow

ROLES = ("visitor", "coordinator", "council", "admin")
# Which roles satisfy "visitor+", "coordinator+" etc. in the spec's API table.
ROLE_GRANTS = {
    "visitor": {"visitor", "coordinator", "admin"},
    "coordinator": {"coordinator", "admin"},
    "council": {"council", "coordinator", "admin"},
    "admin": {"admin"},
}
TOKEN_PREFIX = "cns_"  # noqa: S105 (a marker, not a secret)


class TokenError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    organisation: str,
    role: str,
    label: str | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; the plain token is returned once and never stored."""
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not organisation.strip():
        raise TokenError("organisation must not be empty")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        token_hash=hash_token(plain),
        organisation=organisation.strip(),
        role=role,
        label=label,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token, plain


def find_active(session: Session, plain: str, now: dt.datetime | None = None) -> ApiToken | None:
    now = now or utcnow()
    token = session.execute(
        select(ApiToken).where(ApiToken.token_hash == hash_token(plain))
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and _aware(token.expires_at) <= now:
        return None
    return token


def revoke(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise TokenError(f"no token with id {token_id}")
    token.revoked_at = token.revoked_at or utcnow()
    return token


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
