"""API tokens: how a researcher's script talks to the JSON API without a browser.

A session cookie needs the login form (and its CSRF token scraped from the page) and dies with
the session; a token is made once, named for the script that uses it, and sent as
``Authorization: Bearer skd_…`` on every request. It acts as its owner with the owner's
*current* role and state: demote or deactivate the person and their tokens follow. A browser
never attaches this header by itself, so a request that carries a valid token needs no CSRF
token.

Only the SHA-256 digest is stored (the token is 256 random bits, so a fast digest is enough;
a leaked database opens nothing), with its first characters for telling tokens apart. A
``read`` token may only read (GET, HEAD); a token can expire and can be revoked at any time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.core.accounts import STAFF_ROLES, hash_token
from app.core.db import session_scope
from app.core.models import ApiToken, User, utcnow

TOKEN_PREFIX = "skd_"
SCOPES = ("read", "write")
READ_METHODS = frozenset({"GET", "HEAD"})
EXPIRY_CHOICES = (30, 90, 365)  # days offered on the page; None is "never"
DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 3650
NAME_LENGTH = 100
# Writing "last used" on every request would make each API call a write (SQLite has one
# writer); a minute's precision is what a person reading the list needs.
LAST_USED_PRECISION = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenUse:
    """Who a valid token speaks for, as the web door needs it."""

    token_id: int
    user_id: int
    name: str
    scope: str
    expires_at: datetime | None = None

    def allows(self, method: str) -> bool:
        return self.scope == "write" or method.upper() in READ_METHODS


EXPIRES_SOON = timedelta(days=7)


def expires_soon(token: ApiToken, now: datetime | None = None) -> bool:
    """A live token with a week or less to go: the page says so, so nobody's nightly job
    stops without warning."""
    now = now or utcnow()
    return (
        token_state(token, now) == "active"
        and token.expires_at is not None
        and token.expires_at - now <= EXPIRES_SOON
    )


def token_state(token: ApiToken, now: datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def _live(now: datetime) -> ColumnElement[bool]:
    """Not revoked and not (yet) expired at ``now``."""
    return and_(
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    )


def create_token(
    session: Session,
    user: User,
    name: str,
    *,
    scope: str = "write",
    expires_in_days: int | None = DEFAULT_EXPIRY_DAYS,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token, which is never shown again.

    Names are unique among a person's live tokens, so the list says which script holds which
    key (and a form posted twice says so instead of making a second key)."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("name: say what the token is for (e.g. the script that uses it)")
    if len(name) > NAME_LENGTH:
        raise ValueError(f"name: at most {NAME_LENGTH} characters")
    if scope not in SCOPES:
        raise ValueError(f"scope: use read or write, not {scope!r}")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"expires_in_days: between 1 and {MAX_EXPIRY_DAYS}, or none for never")
    if user.role not in STAFF_ROLES or not user.is_active:
        raise ValueError("only active staff (researchers and admins) can hold API tokens")
    now = utcnow()
    taken = session.scalar(
        select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.name == name, _live(now))
    )
    if taken is not None:
        raise ValueError(f"name: you already have a live token named {name!r}; revoke it first")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(plain),
        prefix=plain[: len(TOKEN_PREFIX) + 6],
        scope=scope,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(token)
    session.flush()
    return token, plain


def authenticate_token(plain: str) -> TokenUse | None:
    """The use a presented token grants, else None: unknown, revoked, expired, or its owner
    deactivated or no longer staff (one answer for all, as for a wrong password).

    A short read; "last used" is written at most once a minute per token, in its own short
    write transaction, so scripts polling a job do not turn every GET into a write."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    now = utcnow()
    with session_scope() as session:
        row = session.execute(
            select(
                ApiToken.id,
                ApiToken.user_id,
                ApiToken.name,
                ApiToken.scope,
                ApiToken.expires_at,
                ApiToken.last_used_at,
                User.is_active,
                User.role,
            )
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(plain), _live(now))
        ).first()
    if row is None or not row.is_active or row.role not in STAFF_ROLES:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        with session_scope(write=True) as session:
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return TokenUse(row.id, row.user_id, row.name, row.scope, row.expires_at)


def list_tokens(session: Session, user_id: int | None = None) -> list[ApiToken]:
    """A person's tokens (everyone's with ``user_id=None``), newest first, revoked ones too:
    the list is also the record of which keys existed."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int, user_id: int | None = None) -> ApiToken:
    """Revoke a token (only one of ``user_id``'s when given); the next request with it gets
    401. Revoking a revoked token changes nothing. LookupError: no such token (of theirs)."""
    token = session.get(ApiToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        raise LookupError(f"no API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def live_token_counts(session: Session) -> dict[int, int]:
    """Live (not revoked, not expired) tokens per user id, for the admins' people page."""
    rows = session.execute(
        select(ApiToken.user_id, func.count()).where(_live(utcnow())).group_by(ApiToken.user_id)
    )
    return {user_id: count for user_id, count in rows}


def revoke_all(session: Session, user_id: int) -> int:
    """Revoke every live token of a person (an admin's answer to a leaked key or a laptop left
    on a train); returns how many."""
    now = utcnow()
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, _live(now))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
