"""Typed dependencies, so a route's signature says what it needs (a session, a staff user...)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.core.accounts import STAFF_ROLES
from app.core.db import session_scope
from app.core.models import Role, User
from app.core.paths import TEMPLATES_DIR

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def get_db() -> Iterator[Session]:
    """One session per request, committed when the route returns without error."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


class LoginRequired(Exception):
    """Raised for an anonymous request to a page: the app answers with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def current_user_or_none(request: Request, session: SessionDep) -> User | None:
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        request.session.clear()
        return None
    return user


OptionalUser = Annotated[User | None, Depends(current_user_or_none)]


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


def require_staff(request: Request, user: OptionalUser) -> User:
    if user is None:
        if _wants_html(request) and request.method == "GET":
            raise LoginRequired(str(request.url.path))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in as staff first")
    if user.role not in STAFF_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "staff only")
    return user


StaffUser = Annotated[User, Depends(require_staff)]


async def rater_id(request: Request) -> int:
    """The signed-in person's id from the signed session cookie. The hot path checks the row
    inside its own transaction instead of opening a second one just for this. (``async``
    because it does no I/O: FastAPI would otherwise hop to a worker thread just to run it.)"""
    user_id = request.session.get("user_id")
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "open your study link first")
    return int(user_id)


RaterId = Annotated[int, Depends(rater_id)]


def require_admin(user: StaffUser) -> User:
    """Staff checks first (anonymous: login or 401), then the role: researchers get 403."""
    if user.role != Role.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
    return user


AdminUser = Annotated[User, Depends(require_admin)]


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use); forms carry it in a hidden field."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def verify_csrf(request: Request) -> None:
    """State-changing requests must echo the session's token (form field or X-CSRF-Token)."""
    expected = request.session.get("csrf")
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token; reload the page"
        )


CSRFChecked = Depends(verify_csrf)
