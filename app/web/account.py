"""Your account (``/account``): your own password, and API tokens for your scripts.

Thin over ``app.core.api_tokens`` and ``app.core.accounts``. Every staff member has this page;
an admin manages other people on ``/admin/users``. A new token is shown once, in the answer to
the form that made it (never in a redirect: the cookie session is signed, not secret); the
same form posted again is refused by name instead of making a second key.

The JSON side (``/api/account``) lets a script check whose token it holds and manage the
caller's tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.core import api_tokens, throttle
from app.core.accounts import set_password
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.models import ApiToken, User
from app.web.auth import check_password
from app.web.bearer import token_use
from app.web.deps import (
    CSRFChecked,
    RowId,
    SessionDep,
    SessionRoute,
    StaffUser,
    csrf_token,
    templates,
)

router = APIRouter(tags=["account"], route_class=SessionRoute)

PAGE = "/account"
NOTICE_KEY = "account_notice"
Text = Annotated[str, Form(max_length=1000)]


def _page(
    request: Request,
    session: Session,
    user: User,
    *,
    error: str | None = None,
    section: str | None = None,
    created: tuple[ApiToken, str] | None = None,
    form: dict[str, str] | None = None,
    code: int = 200,
) -> HTMLResponse:
    tokens = api_tokens.list_tokens(session, user.id)
    context: dict[str, Any] = {
        "user": user,
        "csrf": csrf_token(request),
        "tokens": [(token, api_tokens.token_state(token)) for token in tokens],
        "expiring": [token for token in tokens if api_tokens.expires_soon(token)],
        "created": created,
        "notice": request.session.pop(NOTICE_KEY, None),
        "error": error,
        "section": section,
        "form": form or {},
        "expiry_choices": api_tokens.EXPIRY_CHOICES,
        "default_expiry": api_tokens.DEFAULT_EXPIRY_DAYS,
        "public_url": get_settings().public_url,
    }
    response = templates.TemplateResponse(request, "account.html", context, status_code=code)
    if created is not None:
        response.headers["Cache-Control"] = "no-store"  # the token must not sit in a cache
    return response


def _done(request: Request, section: str, text: str) -> RedirectResponse:
    request.session[NOTICE_KEY] = {"text": text, "section": section}
    return RedirectResponse(f"{PAGE}#{section}", status_code=status.HTTP_303_SEE_OTHER)


@router.get(PAGE, response_class=HTMLResponse)
def account_page(request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    return _page(request, session, user)


def _expiry_days(value: str) -> int | None:
    """The form's expiry choice: a number of days, or "never"."""
    if value.strip().lower() == "never":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError("expires: choose a number of days or never") from None


@router.post(PAGE + "/tokens", dependencies=[CSRFChecked], response_model=None)
def create_token_form(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    name: Text = "",
    scope: Text = "write",
    expires: Text = str(api_tokens.DEFAULT_EXPIRY_DAYS),
) -> Response:
    form = {"name": name, "scope": scope, "expires": expires}
    try:
        with session_scope(write=True) as write:
            owner = write.get(User, user.id)
            assert owner is not None
            token, plain = api_tokens.create_token(
                write, owner, name, scope=scope, expires_in_days=_expiry_days(expires)
            )
            write.expunge(token)
    except ValueError as exc:
        return _page(
            request,
            session,
            user,
            error=str(exc),
            section="tokens",
            form=form,
            code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    return _page(request, session, user, created=(token, plain), section="tokens")


@router.post(PAGE + "/tokens/{token_id}/revoke", dependencies=[CSRFChecked], response_model=None)
def revoke_token_form(
    token_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> Response:
    try:
        with session_scope(write=True) as write:
            token = api_tokens.revoke_token(write, token_id, user.id)
            name = token.name
    except LookupError as exc:
        return _page(
            request, session, user, error=str(exc), section="tokens", code=status.HTTP_404_NOT_FOUND
        )
    return _done(request, "tokens", f"Revoked the token {name!r}: requests with it now get 401.")


def _change_password(user_id: int, new_password: str) -> int:
    """Set the new password; returns the account's new session epoch."""
    with session_scope(write=True) as write:
        owner = write.get(User, user_id)
        assert owner is not None
        set_password(write, owner, new_password)
        write.flush()
        return owner.session_epoch


@router.post(PAGE + "/password", dependencies=[CSRFChecked], response_model=None)
async def change_password_form(
    request: Request,
    user: StaffUser,
    current_password: Text = "",
    new_password: Text = "",
    repeat_password: Text = "",
) -> Response:
    """Change your own password. The current one is checked like a login (the same throttle,
    in the password lane): a borrowed, still signed-in browser cannot set a new one without
    it. Every other session of the account ends; this one stays signed in."""

    async def refuse(text: str, code: int) -> Response:
        def render() -> Response:
            with session_scope() as session:
                return _page(request, session, user, error=text, section="password", code=code)

        return await anyio.to_thread.run_sync(render)

    if new_password != repeat_password:
        return await refuse(
            "The new password and its repetition differ.", status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    if len(new_password) < 8:
        return await refuse(
            "password: use at least 8 characters", status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    wait, found = await check_password(request, user.username or "", current_password)
    if wait:
        response = await refuse(
            f"Too many wrong passwords for this account. Try again in "
            f"{throttle.describe_wait(wait)}.",
            status.HTTP_429_TOO_MANY_REQUESTS,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if found is None or found.user_id != user.id:
        return await refuse("The current password is wrong.", status.HTTP_422_UNPROCESSABLE_CONTENT)
    epoch = await anyio.to_thread.run_sync(_change_password, user.id, new_password)
    if token_use(request.scope) is None:
        request.session["epoch"] = epoch  # this browser stays signed in
    return _done(
        request,
        "password",
        "Password changed. Every other signed-in browser of this account is signed out; "
        "API tokens keep working.",
    )


# --- JSON ---------------------------------------------------------------------------------


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart.")
    scope: Literal["read", "write"]
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="Send as `Authorization: Bearer …`. Shown this once only.")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=api_tokens.NAME_LENGTH, description="What the token is for.")
    scope: Literal["read", "write"] = "write"
    expires_in_days: int | None = Field(
        default=api_tokens.DEFAULT_EXPIRY_DAYS,
        ge=1,
        le=api_tokens.MAX_EXPIRY_DAYS,
        description="null: never expires.",
    )


class AccountOut(BaseModel):
    id: int
    username: str | None
    role: str
    signed_in_with: Literal["token", "session"]
    token: TokenOut | None = Field(description="The token this request came with, if any.")


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        scope=token.scope,  # type: ignore[arg-type]
        state=api_tokens.token_state(token),  # type: ignore[arg-type]
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.get("/api/account", summary="Who this request acts as")
def whoami(request: Request, session: SessionDep, user: StaffUser) -> AccountOut:
    """Who this request acts as: a script's first call, to check the token it was given."""
    use = token_use(request.scope)
    token = session.get(ApiToken, use.token_id) if use is not None else None
    return AccountOut(
        id=user.id,
        username=user.username,
        role=user.role.value,
        signed_in_with="token" if use is not None else "session",
        token=_token_out(token) if token is not None else None,
    )


@router.get("/api/account/tokens", summary="List your API tokens")
def list_tokens(session: SessionDep, user: StaffUser) -> list[TokenOut]:
    return [_token_out(token) for token in api_tokens.list_tokens(session, user.id)]


@router.post(
    "/api/account/tokens",
    summary="Create an API token",
    dependencies=[CSRFChecked],
    status_code=status.HTTP_201_CREATED,
)
def create_token(body: TokenIn, session: SessionDep, user: StaffUser) -> TokenCreated:
    owner = session.get(User, user.id)
    assert owner is not None
    try:
        token, plain = api_tokens.create_token(
            session, owner, body.name, scope=body.scope, expires_in_days=body.expires_in_days
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return TokenCreated(**_token_out(token).model_dump(), token=plain)


@router.delete(
    "/api/account/tokens/{token_id}", summary="Revoke an API token", dependencies=[CSRFChecked]
)
def revoke_token(token_id: RowId, session: SessionDep, user: StaffUser) -> TokenOut:
    """Revoke one of your tokens (a token may revoke itself: a script's last call)."""
    try:
        token = api_tokens.revoke_token(session, token_id, user.id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    session.flush()
    return _token_out(token)
