"""People: staff with argon2 passwords, crowdworkers recognized by platform id or invite token.

Tokens are random, shown once, and stored only as a SHA-256 digest (a leaked database does not
leak working links). Passwords use argon2id with the library's current parameters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.core.models import Role, User, utcnow

_hasher = PasswordHasher()

STAFF_ROLES = frozenset({Role.researcher, Role.admin})


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_staff(session: Session, username: str, password: str, role: Role) -> User:
    if role not in STAFF_ROLES:
        raise ValueError(f"staff role must be researcher or admin, not {role}")
    if len(password) < 8:
        raise ValueError("password: use at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"username {username!r} is taken")
    user = User(role=role, username=username, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active staff user with these credentials, else None (same answer for every failure)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        _hasher.hash(password)  # spend the same time as a real check: no username probing
        return None
    if not user.is_active or user.role not in STAFF_ROLES:
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash or ""):
        user.password_hash = hash_password(password)
    user.last_seen_at = utcnow()
    return user


@dataclass(frozen=True)
class LoginCheck:
    """Right credentials: whose, the session epoch to sign, whether the hash needs renewing."""

    user_id: int
    session_epoch: int
    rehash: bool


def check_login(username: str, password: str) -> LoginCheck | None:
    """The active staff account with these credentials, else None (one answer for every
    failure). The account is read in a short transaction that ends before the deliberately
    slow argon2 check, so no transaction (nor SQLite's lock) is held while hashing; what a
    login writes goes through ``record_login`` in a write transaction of its own."""
    with session_scope() as session:
        row = session.execute(
            select(
                User.id, User.session_epoch, User.password_hash, User.is_active, User.role
            ).where(User.username == username)
        ).first()
    if row is None:
        _hasher.hash(password)  # spend the same time as a real check: no username probing
        return None
    if not row.is_active or row.role not in STAFF_ROLES:
        return None
    if not verify_password(row.password_hash, password):
        return None
    return LoginCheck(row.id, row.session_epoch, _hasher.check_needs_rehash(row.password_hash))


def record_login(session: Session, check: LoginCheck, password: str) -> None:
    user = session.get(User, check.user_id)
    if user is None:
        return
    user.last_seen_at = utcnow()
    if check.rehash:
        user.password_hash = hash_password(password)


def set_password(session: Session, user: User, password: str) -> None:
    """A new password; every session issued before stops working (the epoch moves on)."""
    if len(password) < 8:
        raise ValueError("password: use at least 8 characters")
    user.password_hash = hash_password(password)
    revoke_sessions(session, user)


def revoke_sessions(session: Session, user: User) -> None:
    """End every session of this user, copies of the cookie included (see ``session_epoch``)."""
    user.session_epoch = (user.session_epoch or 0) + 1


def find_worker(session: Session, platform: str, external_id: str) -> User | None:
    """The crowd account with this platform id, if it exists already (nothing is created)."""
    return session.scalar(
        select(User).where(User.platform == platform, User.external_id == external_id)
    )


def create_invited_annotator(session: Session, name: str | None = None) -> tuple[User, str]:
    """An annotator with a personal access token; returns the token. Only its hash is stored;
    admins can show the link again (see ``app.core.people``, which makes it)."""
    from app.core.people import create_invitation

    return create_invitation(session, name)


def annotator_by_token(session: Session, token: str) -> User | None:
    user = session.scalar(select(User).where(User.token_hash == hash_token(token)))
    if user is None or not user.is_active or user.role != Role.annotator:
        return None
    user.last_seen_at = utcnow()
    return user


def recognize_worker(session: Session, platform: str, external_id: str) -> User:
    """The annotator with this platform id, created on first sight (no password: the platform
    vouches for them). Safe when two first requests race: the unique key decides."""
    from sqlalchemy.exc import IntegrityError

    query = select(User).where(User.platform == platform, User.external_id == external_id)
    user = session.scalar(query)
    if user is None:
        try:
            with session.begin_nested():
                user = User(role=Role.annotator, platform=platform, external_id=external_id)
                session.add(user)
        except IntegrityError:
            user = session.scalars(query).one()
    user.last_seen_at = utcnow()
    return user
