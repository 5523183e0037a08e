"""Managing people: staff accounts, deactivation, and annotator invitations.

What admins do from the people page (``/admin/users``) and ``skd users``, as plain functions.
Refusals are ``PeopleError`` with a message that says what and why: an admin cannot deactivate
or demote themself, and the last active admin cannot be deactivated or demoted (someone must be
able to manage people).

Deactivating keeps the account and everything it made (ratings, campaigns, jobs): it only stops
it signing in and rating. It can be undone.

**Invitation links.** An invitation is an annotator account with a personal sign-in link
``/i/TOKEN``. Only the token's SHA-256 is stored (``users.token_hash``), as before; the token
itself is an HMAC of the server's secret key over the account id and a random per-link salt
(``users.invite_salt``). So the server can show the link again (a "copy link" button) while a
copy of the database alone still opens nothing. A new link (new salt) replaces the old one,
which stops working; revoking clears the hash, so no link works, and deactivates the account.
Links made before this existed (no salt) cannot be shown again: issue a new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.accounts import (
    STAFF_ROLES,
    create_staff,
    hash_token,
    revoke_sessions,
    set_password,
)
from app.core.config import get_settings
from app.core.models import Role, User, utcnow

INVITE_PLATFORM = "invite"


class PeopleError(ValueError):
    """A refused change to an account; the message says why."""


@dataclass(frozen=True)
class Invitation:
    user_id: int
    name: str | None
    state: str  # pending (never used), used, revoked, deactivated
    created_at: str
    last_seen_at: str | None
    link: str | None  # None when it cannot be shown again (revoked, or made before salts)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


# --- finding people -------------------------------------------------------------------------


def describe(user: User) -> str:
    """How a person is named in messages: username, name, or platform:worker id."""
    if user.username:
        return user.username
    if user.display_name:
        return user.display_name
    return f"{user.platform}:{user.external_id}"


def find_user(session: Session, name_or_id: str) -> User:
    """The account a person typed: an id, a username, ``platform:worker_id``, or an invitation's
    name (when only one invitation has it)."""
    text = name_or_id.strip()
    if text.isdigit():
        user = session.get(User, int(text))
        if user is not None:
            return user
    user = session.scalar(select(User).where(User.username == text))
    if user is not None:
        return user
    if ":" in text:
        platform, external_id = text.split(":", 1)
        user = session.scalar(
            select(User).where(User.platform == platform, User.external_id == external_id)
        )
        if user is not None:
            return user
    named = list(session.scalars(select(User).where(User.display_name == text).limit(2)))
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise PeopleError(f"{text!r}: several people have that name; use the id")
    raise LookupError(f"no account {text!r} (give an id, a username or platform:worker_id)")


def _get(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"no user {user_id}")
    return user


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).where(User.role == Role.admin, User.is_active.is_(True))
        )
        or 0
    )


# --- staff ----------------------------------------------------------------------------------


def add_staff(session: Session, username: str, password: str, role: str) -> User:
    """A staff account, with the form's own checks said plainly."""
    username = username.strip()
    if not username:
        raise PeopleError("username: give one")
    if len(username) > 150:
        raise PeopleError("username: at most 150 characters")
    if role not in {r.value for r in STAFF_ROLES}:
        raise PeopleError(f"role: use researcher or admin, not {role!r}")
    try:
        return create_staff(session, username, password, Role(role))
    except ValueError as exc:
        raise PeopleError(str(exc)) from None


def reset_password(session: Session, user_id: int, password: str) -> User:
    user = _get(session, user_id)
    if user.role not in STAFF_ROLES:
        raise PeopleError(f"{describe(user)} is an annotator: annotators have no password")
    if len(password) < 8:
        raise PeopleError("password: use at least 8 characters")
    set_password(session, user, password)  # and every session signed in before ends
    return user


def set_role(session: Session, user_id: int, role: str, *, by: User | None = None) -> User:
    """Researcher <-> admin. Annotators stay annotators (they have no password)."""
    user = _get(session, user_id)
    if role not in {r.value for r in STAFF_ROLES}:
        raise PeopleError(f"role: use researcher or admin, not {role!r}")
    if user.role not in STAFF_ROLES:
        raise PeopleError(f"{describe(user)} is an annotator; create a staff account instead")
    if user.role == Role(role):
        return user
    if user.role == Role.admin:
        if by is not None and by.id == user.id:
            raise PeopleError("you cannot take away your own admin role; ask another admin")
        if user.is_active and _active_admins(session) <= 1:
            raise PeopleError(f"{describe(user)} is the last active admin")
    user.role = Role(role)
    return user


# --- deactivation ---------------------------------------------------------------------------


def deactivate(session: Session, user_id: int, *, by: User | None = None) -> User:
    """No more signing in or rating; everything the account made stays."""
    user = _get(session, user_id)
    if by is not None and by.id == user.id:
        raise PeopleError("you cannot deactivate your own account")
    if not user.is_active:
        return user
    if user.role == Role.admin and _active_admins(session) <= 1:
        raise PeopleError(f"{describe(user)} is the last active admin")
    user.is_active = False
    user.deactivated_at = utcnow()
    revoke_sessions(session, user)
    return user


def reactivate(session: Session, user_id: int) -> User:
    """Undo a deactivation (a revoked invitation's link stays revoked: issue a new one)."""
    user = _get(session, user_id)
    user.is_active = True
    user.deactivated_at = None
    return user


# --- invitations ----------------------------------------------------------------------------


def _token(user_id: int, salt: str) -> str:
    key = get_settings().session_secret().encode("utf-8")
    digest = hmac.new(key, f"skd-invite:{user_id}:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode("ascii")


def invite_url(token: str, base_url: str | None = None) -> str:
    return f"{(base_url or get_settings().public_url).rstrip('/')}/i/{token}"


def invitation_link(user: User, base_url: str | None = None) -> str | None:
    """The working link of an invitation, or None (revoked, or made before links had salts,
    or the secret key changed since: the derived token no longer matches the stored hash)."""
    if user.invite_salt is None or user.token_hash is None:
        return None
    token = _token(user.id, user.invite_salt)
    if not hmac.compare_digest(hash_token(token), user.token_hash):
        return None
    return invite_url(token, base_url)


def _new_link(user: User) -> str:
    user.invite_salt = secrets.token_hex(16)
    token = _token(user.id, user.invite_salt)
    user.token_hash = hash_token(token)
    user.invite_revoked_at = None
    return token


def create_invitation(session: Session, name: str | None = None) -> tuple[User, str]:
    """An annotator with a personal sign-in link; returns the account and the token."""
    name = (name or "").strip() or None
    if name is not None and len(name) > 200:
        raise PeopleError("name: at most 200 characters")
    user = User(
        role=Role.annotator,
        platform=INVITE_PLATFORM,
        external_id=secrets.token_hex(8),
        display_name=name,
    )
    session.add(user)
    session.flush()  # the id goes into the token
    return user, _new_link(user)


def _invitation(session: Session, user_id: int) -> User:
    user = _get(session, user_id)
    if user.role != Role.annotator or user.platform != INVITE_PLATFORM:
        raise PeopleError(f"{describe(user)} (#{user_id}) is not an invitation")
    return user


def reissue_invitation(session: Session, user_id: int) -> str:
    """A fresh link for an invitation that is not revoked; the old link stops working."""
    user = _invitation(session, user_id)
    if user.invite_revoked_at is not None:
        raise PeopleError(f"invitation #{user_id} is revoked; create a new invitation")
    if not user.is_active:
        raise PeopleError(f"{describe(user)} is deactivated; reactivate them first")
    return _new_link(user)


def revoke_invitation(session: Session, user_id: int) -> User:
    """No link of this invitation works any more, and the account is deactivated (so a
    browser already signed in with it stops too). Ratings made with it stay."""
    user = _invitation(session, user_id)
    user.token_hash = None
    user.invite_salt = None
    if user.invite_revoked_at is None:
        user.invite_revoked_at = utcnow()
    if user.is_active:
        user.is_active = False
        user.deactivated_at = utcnow()
    revoke_sessions(session, user)
    return user


def invitation_state(user: User) -> str:
    if user.invite_revoked_at is not None:
        return "revoked"
    if not user.is_active:
        return "deactivated"
    return "used" if user.last_seen_at is not None else "pending"


def list_invitations(session: Session, base_url: str | None = None) -> list[Invitation]:
    users = session.scalars(
        select(User)
        .where(User.role == Role.annotator, User.platform == INVITE_PLATFORM)
        .order_by(User.id.desc())
    )
    return [
        Invitation(
            user_id=user.id,
            name=user.display_name,
            state=invitation_state(user),
            created_at=user.created_at.isoformat(),
            last_seen_at=user.last_seen_at.isoformat() if user.last_seen_at else None,
            link=invitation_link(user, base_url),
        )
        for user in users
    ]


def list_staff(session: Session) -> list[User]:
    return list(
        session.scalars(
            select(User).where(User.role.in_(list(STAFF_ROLES))).order_by(User.username)
        )
    )
