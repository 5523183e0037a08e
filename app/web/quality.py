"""Downloads of ratings and aggregated labels, and the admin's door to exclude an annotator.

Downloads stream: rows are read with ``yield_per`` inside the response body, in a session of
their own (the request's session may be closed before a long body is sent), and encoded by
``app.annotation.downloads`` — the same code as ``skd ratings export`` / ``skd labels export``.
Excluding is admin-only and changes no rating: it only takes a person out of the aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from app.annotation.annotators import set_excluded, user_label
from app.annotation.downloads import MEDIA_TYPES, encode
from app.annotation.quality import LABEL_FIELDS, iter_item_labels
from app.annotation.rating_rows import RATING_FIELDS, iter_campaign_ratings
from app.core.db import session_scope
from app.core.models import Campaign, User
from app.web.deps import (
    AdminUser,
    CSRFChecked,
    RowId,
    SessionDep,
    SessionRoute,
    StaffUser,
    templates,
)

router = APIRouter(tags=["labels"], route_class=SessionRoute)

Fmt = Literal["csv", "jsonl"]


def _download(
    rows: Callable[[Session], Iterable[dict[str, Any]]],
    fields: list[str],
    fmt: str,
    filename: str,
) -> StreamingResponse:
    def body() -> Iterator[str]:
        with session_scope() as session:
            yield from encode(fmt, fields, rows(session))

    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _require_campaign(session: Session, campaign_id: int) -> None:
    # Checked before streaming starts: once the body has begun, a 404 can no longer be sent.
    if session.get(Campaign, campaign_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id}")


@router.get("/api/campaigns/{campaign_id}/ratings.{fmt}", summary="Download a campaign's ratings")
@router.get("/campaigns/{campaign_id}/ratings.{fmt}")
def download_ratings(
    campaign_id: RowId, fmt: Fmt, session: SessionDep, user: StaffUser
) -> StreamingResponse:
    """Every rating of the campaign, gold and excluded annotators included (and flagged)."""
    _require_campaign(session, campaign_id)
    return _download(
        lambda s: iter_campaign_ratings(s, campaign_id),
        RATING_FIELDS,
        fmt,
        f"campaign-{campaign_id}-ratings.{fmt}",
    )


def _label_rows(session: Session, campaign_id: int | None) -> Iterator[dict[str, Any]]:
    for label in iter_item_labels(session, campaign_id):
        yield label.as_dict()


@router.get(
    "/api/campaigns/{campaign_id}/labels.{fmt}", summary="Download a campaign's aggregated labels"
)
@router.get("/campaigns/{campaign_id}/labels.{fmt}")
def download_campaign_labels(
    campaign_id: RowId, fmt: Fmt, session: SessionDep, user: StaffUser
) -> StreamingResponse:
    """The aggregated label of each non-gold item of the campaign."""
    _require_campaign(session, campaign_id)
    return _download(
        lambda s: _label_rows(s, campaign_id),
        LABEL_FIELDS,
        fmt,
        f"campaign-{campaign_id}-labels.{fmt}",
    )


@router.get("/api/labels.{fmt}", summary="Download every aggregated label")
@router.get("/labels.{fmt}")
def download_all_labels(fmt: Fmt, user: StaffUser) -> StreamingResponse:
    """The aggregated label of every triple with a human rating: what the critic trains on."""
    return _download(lambda s: _label_rows(s, None), LABEL_FIELDS, fmt, f"labels.{fmt}")


def _set(request: Request, user_id: int, excluded: bool) -> JSONResponse | HTMLResponse:
    # A write transaction of its own: on SQLite it takes the writer lock up front.
    with session_scope(write=True) as session:
        try:
            set_excluded(session, user_id, excluded)
        except LookupError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}") from None
        person = session.get(User, user_id)
        assert person is not None
        label = user_label(
            person.id, person.username, person.display_name, person.platform, person.external_id
        )
    if request.headers.get("hx-request"):
        response = templates.TemplateResponse(
            request,
            "_exclude_button.html",
            {"user_id": user_id, "excluded": excluded, "label": label},
        )
        # The campaign page re-reads its annotator table and agreement on this event, so the
        # flags and alpha change with the button, not at the next reload.
        response.headers["HX-Trigger"] = "annotators-changed"
        return response
    return JSONResponse({"user_id": user_id, "excluded": excluded})


@router.post("/admin/annotators/{user_id}/exclude", dependencies=[CSRFChecked], response_model=None)
def exclude_annotator(
    user_id: RowId, request: Request, admin: AdminUser
) -> JSONResponse | HTMLResponse:
    """Leave this person's ratings out of labels, agreement and leave-one-out majorities."""
    return _set(request, user_id, True)


@router.post("/admin/annotators/{user_id}/include", dependencies=[CSRFChecked], response_model=None)
def include_annotator(
    user_id: RowId, request: Request, admin: AdminUser
) -> JSONResponse | HTMLResponse:
    """Count this person's ratings again."""
    return _set(request, user_id, False)
