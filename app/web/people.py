"""The people page for admins (``/admin/users``): staff, annotators and invitations.

Thin over ``app.core.people`` and ``app.annotation.people``. Every action is a plain form post
(CSRF token in a hidden field) that answers with a redirect back to the page and a one-line
notice; a refused action shows the page again with the reason (422, or 404 for an unknown
account). Researchers get 403 on all of it, anonymous visitors the login page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.access import admit
from app.annotation.people import annotator_rows
from app.core import api_tokens, people
from app.core.db import session_scope
from app.core.models import Campaign, CampaignState, User
from app.web.deps import (
    AdminUser,
    CSRFChecked,
    RowId,
    SessionDep,
    SessionRoute,
    csrf_token,
    templates,
)

router = APIRouter(tags=["people"], route_class=SessionRoute)

PAGE = "/admin/users"
NOTICE_KEY = "people_notice"  # session key: what the last action did, shown once
ANNOTATOR_LIMIT = 500


def _page(
    request: Request,
    session: Session,
    user: User,
    *,
    error: str | None = None,
    section: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    annotators, annotator_total = annotator_rows(session, ANNOTATOR_LIMIT)
    notice = request.session.pop(NOTICE_KEY, None)
    context: dict[str, Any] = {
        "user": user,
        "csrf": csrf_token(request),
        "staff": people.list_staff(session),
        "token_counts": api_tokens.live_token_counts(session),
        "annotators": annotators,
        "annotator_total": annotator_total,
        "invitations": people.list_invitations(session),
        "open_campaigns": session.execute(
            select(Campaign.id, Campaign.name)
            .where(Campaign.state != CampaignState.closed)
            .order_by(Campaign.id.desc())
        ).all(),
        "notice": notice,
        "error": error,
        "section": section,
    }
    return templates.TemplateResponse(request, "people.html", context, status_code=code)


@router.get(PAGE, response_class=HTMLResponse)
def people_page(request: Request, session: SessionDep, user: AdminUser) -> HTMLResponse:
    return _page(request, session, user)


def _act(
    request: Request,
    session: Session,
    admin: User,
    section: str,
    change: Any,
) -> Response:
    """Run ``change(write_session)`` -> notice text (or a dict with "text" and "invite");
    redirect back on success, the page with the reason on a refusal."""
    try:
        with session_scope(write=True) as write:
            notice = change(write)
    except LookupError as exc:
        return _page(
            request, session, admin, error=str(exc), section=section, code=status.HTTP_404_NOT_FOUND
        )
    except people.PeopleError as exc:
        return _page(
            request,
            session,
            admin,
            error=str(exc),
            section=section,
            code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    if isinstance(notice, str):
        notice = {"text": notice}
    request.session[NOTICE_KEY] = {**notice, "section": section}
    return RedirectResponse(f"{PAGE}#{section}", status_code=status.HTTP_303_SEE_OTHER)


Text = Annotated[str, Form(max_length=1000)]


@router.post(PAGE, dependencies=[CSRFChecked], response_model=None)
def create_staff_account(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    username: Text = "",
    password: Text = "",
    role: Text = "researcher",
) -> Response:
    def change(write: Session) -> str:
        created = people.add_staff(write, username, password, role)
        return f"Created {created.role.value} {created.username!r}."

    return _act(request, session, admin, "staff", change)


@router.post(PAGE + "/{user_id}/password", dependencies=[CSRFChecked], response_model=None)
def reset_password(
    user_id: RowId, request: Request, session: SessionDep, admin: AdminUser, password: Text = ""
) -> Response:
    def change(write: Session) -> str:
        person = people.reset_password(write, user_id, password)
        if person.id == admin.id:
            # Other sessions of this account end; this browser stays signed in.
            write.flush()
            request.session["epoch"] = person.session_epoch
        return f"New password set for {people.describe(person)}."

    return _act(request, session, admin, "staff", change)


@router.post(PAGE + "/{user_id}/role", dependencies=[CSRFChecked], response_model=None)
def change_role(
    user_id: RowId, request: Request, session: SessionDep, admin: AdminUser, role: Text = ""
) -> Response:
    def change(write: Session) -> str:
        person = people.set_role(write, user_id, role, by=admin)
        return f"{people.describe(person)} is now {person.role.value}."

    return _act(request, session, admin, "staff", change)


def _section_of(session: Session, user_id: int) -> str:
    person = session.get(User, user_id)
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    return "annotators" if person.role.value == "annotator" else "staff"


@router.post(PAGE + "/{user_id}/tokens/revoke", dependencies=[CSRFChecked], response_model=None)
def revoke_tokens(
    user_id: RowId, request: Request, session: SessionDep, admin: AdminUser
) -> Response:
    """Revoke every API token of a staff member (their scripts get 401 from now on)."""

    def change(write: Session) -> str:
        person = people.find_user(write, str(user_id))
        count = api_tokens.revoke_all(write, person.id)
        return f"Revoked {count} API token{'s' if count != 1 else ''} of {people.describe(person)}."

    return _act(request, session, admin, "staff", change)


@router.post(PAGE + "/{user_id}/deactivate", dependencies=[CSRFChecked], response_model=None)
def deactivate(user_id: RowId, request: Request, session: SessionDep, admin: AdminUser) -> Response:
    """No more signing in or rating; the ratings stay."""

    def change(write: Session) -> str:
        person = people.deactivate(write, user_id, by=admin)
        return f"{people.describe(person)} is deactivated; their ratings are kept."

    return _act(request, session, admin, _section_of(session, user_id), change)


@router.post(PAGE + "/{user_id}/activate", dependencies=[CSRFChecked], response_model=None)
def activate(user_id: RowId, request: Request, session: SessionDep, admin: AdminUser) -> Response:
    def change(write: Session) -> str:
        person = people.reactivate(write, user_id)
        return f"{people.describe(person)} is active again."

    return _act(request, session, admin, _section_of(session, user_id), change)


@router.post("/admin/invitations", dependencies=[CSRFChecked], response_model=None)
def create_invitation(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    name: Text = "",
    campaign: Annotated[list[int] | None, Form()] = None,
) -> Response:
    """An invitation, admitted to the campaigns ticked (it can rate only where admitted)."""

    def change(write: Session) -> dict[str, Any]:
        for campaign_id in campaign or []:
            if write.get(Campaign, campaign_id) is None:
                raise people.PeopleError(f"campaign: no campaign {campaign_id}")
        invited, _token = people.create_invitation(write, name)
        for campaign_id in campaign or []:
            admit(write, campaign_id, invited.id, "invite")
        who = invited.display_name or f"invitation #{invited.id}"
        return {"text": f"Invited {who}: copy the link below and send it.", "invite": invited.id}

    return _act(request, session, admin, "invitations", change)


@router.post("/admin/invitations/{user_id}/link", dependencies=[CSRFChecked], response_model=None)
def new_invitation_link(
    user_id: RowId, request: Request, session: SessionDep, admin: AdminUser
) -> Response:
    """A fresh link; the old one stops working (for a link that went to the wrong place)."""

    def change(write: Session) -> dict[str, Any]:
        people.reissue_invitation(write, user_id)
        return {
            "text": f"Invitation #{user_id} has a new link; the old one no longer works.",
            "invite": user_id,
        }

    return _act(request, session, admin, "invitations", change)


@router.post("/admin/invitations/{user_id}/revoke", dependencies=[CSRFChecked], response_model=None)
def revoke_invitation(
    user_id: RowId, request: Request, session: SessionDep, admin: AdminUser
) -> Response:
    def change(write: Session) -> str:
        person = people.revoke_invitation(write, user_id)
        return f"Revoked the invitation of {people.describe(person)}: its link no longer works."

    return _act(request, session, admin, "invitations", change)
