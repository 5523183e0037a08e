"""Log in and out. Staff: username + password. Annotators: a personal invitation link.

Guessing is slowed down at the door: failed logins are counted per account and per client
address (``app.core.throttle``), and past the limit the login answers 429 with the wait,
before any password is hashed. Password hashing (argon2, deliberately slow) runs on its own
small capacity limiter, so a burst of logins queues there instead of taking every request
thread (``/healthz`` and the rating loop stay fast). Logging out ends every session of the
account, including copies of the cookie.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core import throttle
from app.core.accounts import (
    LoginCheck,
    annotator_by_token,
    check_login,
    record_login,
    revoke_sessions,
)
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.models import User
from app.web.deps import (
    CSRFChecked,
    SessionDep,
    SessionRoute,
    client_address,
    csrf_token,
    templates,
)

router = APIRouter(tags=["auth"], route_class=SessionRoute)


def _safe_next(next_url: str | None) -> str:
    # Only same-site paths: an open redirect would let phishing links borrow our domain.
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"next": _safe_next(next), "csrf": csrf_token(request), "error": None},
    )


def _password_lane(request: Request) -> anyio.CapacityLimiter:
    """The process's password-hashing slots (``SKD_PASSWORD_CHECK_CONCURRENCY``), made on first
    use inside the event loop that will use them."""
    limiter = getattr(request.app.state, "password_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(get_settings().password_check_concurrency)
        request.app.state.password_limiter = limiter
    return limiter


def login_wait(username: str, address: str) -> int:
    """Seconds before this account or address may try again (0: now)."""
    settings = get_settings()
    window = settings.login_window_seconds
    with session_scope() as session:
        return max(
            throttle.seconds_to_wait(
                session,
                throttle.LOGIN_ACCOUNT,
                username,
                settings.login_failures_per_account,
                window,
            ),
            throttle.seconds_to_wait(
                session,
                throttle.LOGIN_ADDRESS,
                address,
                settings.login_failures_per_address,
                window,
            ),
        )


def _count_login(username: str, address: str, check: LoginCheck | None, password: str) -> None:
    """What a login attempt writes, in one short write transaction after the hash."""
    window = get_settings().login_window_seconds
    with session_scope(write=True) as session:
        if check is not None:
            record_login(session, check, password)
            throttle.forget(session, throttle.LOGIN_ACCOUNT, username)
        else:
            throttle.record(session, throttle.LOGIN_ACCOUNT, username, window)
            throttle.record(session, throttle.LOGIN_ADDRESS, address, window)


async def check_password(
    request: Request, username: str, password: str
) -> tuple[int, LoginCheck | None]:
    """A password checked at the door: the seconds to wait first (the throttle; nothing is
    checked then), else 0 and whose credentials they are (None: wrong), with the attempt
    counted. Everything runs in the password lane (``SKD_PASSWORD_CHECK_CONCURRENCY``
    threads), never in the request threads: a burst of logins queues here, without a thread."""
    address = client_address(request)
    lane = _password_lane(request)
    wait = await anyio.to_thread.run_sync(login_wait, username, address, limiter=lane)
    if wait:
        return wait, None
    found = await anyio.to_thread.run_sync(check_login, username, password, limiter=lane)
    await anyio.to_thread.run_sync(_count_login, username, address, found, password, limiter=lane)
    return 0, found


def _login_page(
    request: Request, next_url: str | None, error: str, username: str, code: int
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "login.html",
        {
            "next": _safe_next(next_url),
            "csrf": csrf_token(request),
            "error": error,
            "username": username,
        },
        status_code=code,
    )


@router.post("/login", response_class=HTMLResponse, response_model=None, dependencies=[CSRFChecked])
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=150)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> HTMLResponse | RedirectResponse:
    username = username.strip()
    wait, found = await check_password(request, username, password)
    if wait:
        response = _login_page(
            request,
            next,
            f"Too many failed logins for this account or from this address. "
            f"Try again in {throttle.describe_wait(wait)}.",
            username,
            status.HTTP_429_TOO_MANY_REQUESTS,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if found is None:
        return _login_page(
            request, next, "Wrong username or password.", username, status.HTTP_401_UNAUTHORIZED
        )
    request.session.clear()  # a fresh session on login (no fixation)
    request.session["user_id"] = found.user_id
    request.session["epoch"] = found.session_epoch
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout", dependencies=[CSRFChecked])
def logout(request: Request, session: SessionDep) -> RedirectResponse:
    """End this session and every other session of the account (copied cookies too)."""
    user_id = request.session.get("user_id")
    user = session.get(User, user_id) if user_id is not None else None
    if user is not None and request.session.get("epoch", 0) == user.session_epoch:
        revoke_sessions(session, user)
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/i/{token}")
def invitation(token: str, request: Request, session: SessionDep) -> RedirectResponse:
    """A personal invitation link signs an annotator in, no password needed."""
    user = annotator_by_token(session, token)
    if user is None:
        return RedirectResponse("/login?invalid_invite=1", status_code=status.HTTP_303_SEE_OTHER)
    request.session.clear()
    request.session["user_id"] = user.id
    request.session["epoch"] = user.session_epoch
    request.session["rater_nonce"] = secrets.token_hex(16)
    return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
