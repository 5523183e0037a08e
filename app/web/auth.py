"""Log in and out. Staff: username + password. Annotators: a personal invitation link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core.accounts import annotator_by_token, authenticate
from app.web.deps import CSRFChecked, SessionDep, csrf_token, templates

router = APIRouter(tags=["auth"])


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


@router.post("/login", response_class=HTMLResponse, response_model=None, dependencies=[CSRFChecked])
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str | None, Form()] = None,
) -> HTMLResponse | RedirectResponse:
    user = authenticate(session, username.strip(), password)
    if user is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {
                "next": _safe_next(next),
                "csrf": csrf_token(request),
                "error": "Wrong username or password.",
                "username": username,
            },
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    request.session.clear()  # a fresh session on login (no fixation)
    request.session["user_id"] = user.id
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout", dependencies=[CSRFChecked])
def logout(request: Request) -> RedirectResponse:
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
    return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
