"""The annotator's doors: the campaign share link and the JSON API of the rating loop.

The API is the same function as the rating page: ``next`` leases an item, ``submit`` stores an
answer and returns the next item in the same response (one round trip per rating), ``skip``
hands an item back. Any front end (the benchmark, a custom one) can drive it with a cookie
from the share link.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.annotation.access import admit, finish_state
from app.annotation.assign import (
    SESSION_EPOCH,
    AssignmentError,
    count_rating,
    next_item,
    skip_item,
    submit_rating,
)
from app.annotation.crowd import is_mturk_preview, platform_ids, record_visit
from app.core import throttle
from app.core.accounts import annotator_by_token, find_worker, recognize_worker
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.models import Campaign, CampaignItem, CampaignState, Triple, User
from app.corpus.relations import sentence_lead
from app.web.answers import NextItemOut, SubmittedOut
from app.web.deps import (
    CampaignId,
    NoNulStr,
    RaterEpoch,
    RaterId,
    RaterNonce,
    RowId,
    SessionRoute,
    client_address,
    templates,
)
from app.web.markdown import render_markdown
from app.web.sessions import FRAMED_KEY, opened_in_a_frame

router = APIRouter(tags=["annotate"], route_class=SessionRoute)


@router.get("/c/{share_token}")
def enter_campaign(
    share_token: str,
    request: Request,
    PROLIFIC_PID: str | None = None,  # noqa: N803 - the platforms' own parameter names
    workerId: str | None = None,  # noqa: N803
    token: str | None = None,
    STUDY_ID: str | None = None,  # noqa: N803
    SESSION_ID: str | None = None,  # noqa: N803
    assignmentId: str | None = None,  # noqa: N803
    hitId: str | None = None,  # noqa: N803
    turkSubmitTo: str | None = None,  # noqa: N803
) -> Response:
    """A crowdworker arrives: recognize them by platform id (or invitation token), no password.

    Entering admits them to this campaign (and only this one). A platform id seen for the
    first time creates an account, at most ``SKD_CROWD_ACCOUNTS_PER_ADDRESS`` per address and
    window. A different person than the one signed in gets a fresh browser session, with a new
    nonce: earlier answers given elsewhere under the same worker id stay out of reach.
    """
    with session_scope(write=True) as session:
        campaign = session.scalar(select(Campaign).where(Campaign.share_token == share_token))
        if campaign is None or campaign.state == CampaignState.closed:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "this study link is not open")
        if is_mturk_preview(assignmentId):
            # MTurk shows the HIT before the worker accepts it: look, don't touch.
            return _mturk_preview(request, session, campaign)
        user: User | None = None
        platform_id = None
        if PROLIFIC_PID and PROLIFIC_PID.strip():
            platform_id = ("prolific", PROLIFIC_PID.strip()[:200])
        elif workerId and workerId.strip():
            platform_id = ("mturk", workerId.strip()[:200])
        if platform_id is not None:
            user = find_worker(session, *platform_id)
            if user is None:
                wait = _crowd_account_wait(session, client_address(request))
                if wait:
                    return _too_many_accounts(request, wait)
                user = recognize_worker(session, *platform_id)
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
        if not user.is_active:  # deactivated by an admin (app.core.people): no more rating
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "this account is deactivated; contact the researchers of the study",
            )
        if request.session.get("user_id") != user.id:
            request.session.clear()  # another person in this browser: a fresh session
            request.session["user_id"] = user.id
            request.session["epoch"] = user.session_epoch
            request.session["rater_nonce"] = secrets.token_hex(16)
        if opened_in_a_frame(request.headers.get("sec-fetch-dest"), turkSubmitTo):
            # Inside MTurk's page: the cookie must work as a third-party one (app.web.sessions).
            request.session[FRAMED_KEY] = True
        admit(session, campaign.id, user.id, "link")
        if platform_id is not None:
            ids = platform_ids(STUDY_ID, SESSION_ID, assignmentId, hitId, turkSubmitTo)
            record_visit(session, campaign.id, user.id, platform_id[0], ids)
        campaign_id = campaign.id
    return RedirectResponse(f"/annotate/{campaign_id}", status_code=status.HTTP_303_SEE_OTHER)


def _mturk_preview(request: Request, session: Session, campaign: Campaign) -> HTMLResponse:
    """The guidelines and one example item, read-only (no account, no lease)."""
    example = session.execute(
        select(Triple.head, Triple.relation, Triple.tail)
        .join(CampaignItem, CampaignItem.triple_id == Triple.id)
        .where(CampaignItem.campaign_id == campaign.id, CampaignItem.is_gold.is_(False))
        .order_by(CampaignItem.sort_key, CampaignItem.id)
        .limit(1)
    ).first()
    item = None
    if example is not None:
        item = {"head": example.head, "lead": sentence_lead(example.relation), "tail": example.tail}
    return templates.TemplateResponse(
        request,
        "mturk_preview.html",
        {
            "user": None,
            "campaign": campaign,
            "item": item,
            "scale": campaign.answer_scale,
            "guidelines": render_markdown(campaign.guidelines),
        },
    )


def _crowd_account_wait(session: Session, address: str) -> int:
    """0 if this address may create one more crowd account now (and count it), else the wait."""
    settings = get_settings()
    limit, window = settings.crowd_accounts_per_address, settings.crowd_account_window_seconds
    if limit <= 0:
        return 0
    wait = throttle.seconds_to_wait(session, throttle.CROWD_ACCOUNT, address, limit, window)
    if not wait:
        throttle.record(session, throttle.CROWD_ACCOUNT, address, window)
    return wait


def _too_many_accounts(request: Request, wait: int) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        "too_many_accounts.html",
        {"wait": throttle.describe_wait(wait), "user": None},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
    )
    response.headers["Retry-After"] = str(wait)
    return response


class Submission(BaseModel):
    item_id: RowId
    answer: int = Field(ge=-100, le=100)
    submission_id: NoNulStr = Field(min_length=1, max_length=100)
    seconds: float | None = Field(default=None, ge=0, le=86_400)
    # false: only store the answer (for a client that asks for the next item separately)
    next: bool = True


class Skip(BaseModel):
    item_id: RowId


def _following(session: Session, campaign_id: int, user_id: int) -> dict[str, Any]:
    """The next item after an answer or a skip. A refusal here (the campaign was paused a
    moment ago) must not undo the answer, so it becomes part of the reply instead."""
    try:
        return _next_payload(session, campaign_id, user_id)
    except AssignmentError as exc:
        return {"done": False, "item": None, "message": exc.message}


FINISH_MESSAGES = {
    "waiting": "every item you have not rated is being rated by someone else right now; "
    "try again in a few minutes",
    "full": "this study is full: every item already has all the ratings it needs",
}


def _next_payload(session: Session, campaign_id: int, user_id: int) -> dict[str, Any]:
    item = next_item(session, campaign_id, user_id)
    if item is not None:
        return {"done": False, "item": item.as_dict()}
    state = finish_state(session, campaign_id, user_id)
    if state != "done":  # no completion code without the work done
        return {"done": False, "item": None, state: True, "message": FINISH_MESSAGES[state]}
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    return {
        "done": True,
        "item": None,
        "completion_code": campaign.completion_code,
        "redirect_url": campaign.redirect_url,
    }


def _run(user_id: int, work, epoch: int | None = None):  # type: ignore[no-untyped-def]
    """One write transaction; rule violations become their HTTP status (after committing
    what the rules say to keep, such as a released lease). Whether ``user_id`` is still an
    active user, signed in under the account's current session ``epoch``, is checked by the
    first query of the work (``app.annotation.assign.campaign_rules``)."""
    failure: AssignmentError | None = None
    try:
        with session_scope(write=True) as session:
            session.info[SESSION_EPOCH] = epoch
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


@router.get(
    "/api/annotate/{campaign_id}/next",
    summary="Lease the next item",
    response_model=NextItemOut,
    response_model_exclude_unset=True,
)
def api_next(campaign_id: CampaignId, user_id: RaterId, epoch: RaterEpoch) -> dict[str, Any]:
    return _run(user_id, lambda session: _next_payload(session, campaign_id, user_id), epoch)


@router.post(
    "/api/annotate/{campaign_id}/submit",
    summary="Submit a rating",
    response_model=SubmittedOut,
    response_model_exclude_unset=True,
)
def api_submit(
    campaign_id: CampaignId,
    body: Submission,
    user_id: RaterId,
    nonce: RaterNonce,
    epoch: RaterEpoch,
) -> dict[str, Any]:
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
            session_nonce=nonce,
        )
        saved = {
            "rating_id": result.rating_id,
            "changed": result.changed,
            "repeated": result.repeated,
        }
        following = _following(session, campaign_id, user_id) if body.next else {}
        count_rating(session, result.pending)
        return {"saved": saved, **following}

    return _run(user_id, work, epoch)


@router.post(
    "/api/annotate/{campaign_id}/skip",
    summary="Skip an item",
    response_model=NextItemOut,
    response_model_exclude_unset=True,
)
def api_skip(
    campaign_id: CampaignId, body: Skip, user_id: RaterId, epoch: RaterEpoch
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        skip_item(session, campaign_id, user_id, body.item_id)
        return _following(session, campaign_id, user_id)

    return _run(user_id, work, epoch)
