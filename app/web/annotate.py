"""The annotator's doors: the campaign share link and the JSON API of the rating loop.

The API is the same function as the rating page: ``next`` leases an item, ``submit`` stores an
answer and returns the next item in the same response (one round trip per rating), ``skip``
hands an item back. Any front end (the benchmark, a custom one) can drive it with a cookie
from the share link.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.annotation.assign import AssignmentError, count_rating, next_item, skip_item, submit_rating
from app.core.accounts import annotator_by_token, recognize_worker
from app.core.db import session_scope
from app.core.models import Campaign, CampaignState, User
from app.web.deps import RaterId

router = APIRouter(tags=["annotate"])


@router.get("/c/{share_token}")
def enter_campaign(
    share_token: str,
    request: Request,
    PROLIFIC_PID: str | None = None,  # noqa: N803 - the platforms' own parameter names
    workerId: str | None = None,  # noqa: N803
    token: str | None = None,
) -> RedirectResponse:
    """A crowdworker arrives: recognize them by platform id (or invitation token), no password."""
    with session_scope(write=True) as session:
        campaign = session.scalar(select(Campaign).where(Campaign.share_token == share_token))
        if campaign is None or campaign.state == CampaignState.closed:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "this study link is not open")
        user: User | None = None
        if PROLIFIC_PID:
            user = recognize_worker(session, "prolific", PROLIFIC_PID.strip()[:200])
        elif workerId:
            user = recognize_worker(session, "mturk", workerId.strip()[:200])
        elif token:
            user = annotator_by_token(session, token)
        else:
            current = request.session.get("user_id")
            user = session.get(User, current) if current else None
        if user is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "open this link from your study platform (it adds your worker id)",
            )
        request.session["user_id"] = user.id
        campaign_id = campaign.id
    return RedirectResponse(f"/annotate/{campaign_id}", status_code=status.HTTP_303_SEE_OTHER)


class Submission(BaseModel):
    item_id: int
    answer: int
    submission_id: str = Field(min_length=1, max_length=100)
    seconds: float | None = Field(default=None, ge=0, le=86_400)
    # false: only store the answer (for a client that asks for the next item separately)
    next: bool = True


class Skip(BaseModel):
    item_id: int


def _following(session: Session, campaign_id: int, user_id: int) -> dict[str, Any]:
    """The next item after an answer or a skip. A refusal here (the campaign was paused a
    moment ago) must not undo the answer, so it becomes part of the reply instead."""
    try:
        return _next_payload(session, campaign_id, user_id)
    except AssignmentError as exc:
        return {"done": False, "item": None, "message": exc.message}


def _next_payload(session: Session, campaign_id: int, user_id: int) -> dict[str, Any]:
    item = next_item(session, campaign_id, user_id)
    if item is not None:
        return {"done": False, "item": item.as_dict()}
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    return {
        "done": True,
        "item": None,
        "completion_code": campaign.completion_code,
        "redirect_url": campaign.redirect_url,
    }


def _run(user_id: int, work):  # type: ignore[no-untyped-def]
    """One write transaction; rule violations become their HTTP status (after committing
    what the rules say to keep, such as a released lease). Whether ``user_id`` is still an
    active user is checked by the first query of the work
    (``app.annotation.assign.campaign_rules``)."""
    failure: AssignmentError | None = None
    try:
        with session_scope(write=True) as session:
            try:
                return work(session)
            except AssignmentError as exc:
                if not exc.keep_changes:
                    raise
                failure = exc
    except AssignmentError as exc:
        failure = exc
    except IntegrityError:
        # A concurrent twin of this request won (e.g. one submission id sent for two items).
        raise HTTPException(status.HTTP_409_CONFLICT, "conflicting submission; ask again") from None
    assert failure is not None
    raise HTTPException(failure.status, failure.message)


@router.get("/api/annotate/{campaign_id}/next")
def api_next(campaign_id: int, user_id: RaterId) -> dict[str, Any]:
    return _run(user_id, lambda session: _next_payload(session, campaign_id, user_id))


@router.post("/api/annotate/{campaign_id}/submit")
def api_submit(campaign_id: int, body: Submission, user_id: RaterId) -> dict[str, Any]:
    """Store the answer and (unless ``next`` is false) lease the next item, in one short
    transaction whose last statement is the rated item's counter, so that shared row is
    locked only for the moment before the commit."""

    def work(session: Session) -> dict[str, Any]:
        result = submit_rating(
            session,
            campaign_id,
            user_id,
            body.item_id,
            body.answer,
            body.submission_id,
            body.seconds,
            defer_count=True,
        )
        saved = {
            "rating_id": result.rating_id,
            "changed": result.changed,
            "repeated": result.repeated,
        }
        following = _following(session, campaign_id, user_id) if body.next else {}
        count_rating(session, result.pending)
        return {"saved": saved, **following}

    return _run(user_id, work)


@router.post("/api/annotate/{campaign_id}/skip")
def api_skip(campaign_id: int, body: Skip, user_id: RaterId) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        skip_item(session, campaign_id, user_id, body.item_id)
        return _following(session, campaign_id, user_id)

    return _run(user_id, work)
