"""The rating page: one triple as a sentence, one button per answer, keyboard first.

Submitting swaps in the next item (htmx) without a page load; without JavaScript the same form
posts and the server redirects back to the page. Every answer goes through
``app.annotation.assign``, the
same functions as the JSON API.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.annotation.access import finish_state, is_admitted
from app.annotation.assign import (
    SESSION_EPOCH,
    AssignmentError,
    lease_started,
    next_item,
    previous_rating,
    skip_item,
    submit_rating,
)
from app.annotation.crowd import mturk_hand_back
from app.core.db import session_scope
from app.core.models import Campaign, CampaignItem, User
from app.corpus.relations import sentence_lead
from app.web.deps import (
    MAX_ROW_ID,
    CampaignId,
    CSRFChecked,
    NoNulStr,
    OptionalUser,
    RaterEpoch,
    RaterId,
    RaterNonce,
    RowId,
    SessionRoute,
    csrf_token,
    templates,
)
from app.web.markdown import render_markdown

router = APIRouter(tags=["rating page"], route_class=SessionRoute)


def _annotator(user: User | None) -> User:
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "open your study link first")
    return user


def _campaign(session: Session, campaign_id: int, annotator_id: int) -> Campaign:
    """The campaign, if this annotator entered it by its link or was invited; else 404 (the
    same answer as for an id that does not exist)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not is_admitted(session, campaign_id, annotator_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such study")
    return campaign


def _study_size(session: Session, campaign: Campaign) -> int:
    if campaign.quota_per_annotator is not None:
        return campaign.quota_per_annotator
    return (
        session.scalar(
            select(func.count())
            .select_from(CampaignItem)
            .where(CampaignItem.campaign_id == campaign.id, CampaignItem.is_gold.is_(False))
        )
        or 0
    )


def rater_context(
    session: Session,
    campaign: Campaign,
    annotator_id: int,
    *,
    notice: str | None = None,
    back_before: int | None = None,
    session_nonce: str | None = None,
) -> dict[str, Any]:
    """What the rating fragment shows: the held item, an earlier one to change, or the end.

    Earlier answers are those given in this browser session (``session_nonce``) only.
    """
    context: dict[str, Any] = {
        "campaign": campaign,
        "scale": campaign.answer_scale,
        "notice": notice,
        "submission_id": uuid.uuid4().hex,
        "total": _study_size(session, campaign),
        "state": "item",
    }
    if back_before is not None:
        earlier = previous_rating(
            session, campaign.id, annotator_id, back_before or None, session_nonce=session_nonce
        )
        if earlier is not None:
            context.update(
                state="back",
                item={
                    "item_id": earlier.item_id,
                    "head": earlier.head,
                    "lead": sentence_lead(earlier.relation),
                    "tail": earlier.tail,
                },
                current_answer=earlier.answer,
                rating_id=earlier.rating_id,
                can_go_back=previous_rating(
                    session,
                    campaign.id,
                    annotator_id,
                    earlier.rating_id,
                    session_nonce=session_nonce,
                )
                is not None,
            )
            return context
    try:
        served = next_item(session, campaign.id, annotator_id)
    except AssignmentError as exc:
        context.update(state="closed", message=exc.message)
        return context
    if served is None:
        state = finish_state(session, campaign.id, annotator_id)
        if state == "waiting":
            context.update(
                state="closed",
                message="Every item you have not rated is being rated by someone else right now",
            )
        else:
            context.update(state=state)  # "done" shows the completion code, "full" does not
            if state == "done":
                context["mturk"] = mturk_hand_back(session, campaign.id, annotator_id)
        return context
    context.update(
        item={
            "item_id": served.item_id,
            "head": served.head,
            "lead": sentence_lead(served.relation),
            "tail": served.tail,
        },
        position=served.position,
        can_go_back=previous_rating(session, campaign.id, annotator_id, session_nonce=session_nonce)
        is not None,
    )
    return context


def _retrying(work):  # type: ignore[no-untyped-def]
    """Run ``work`` once more when a concurrent request of the same annotator (a second tab)
    took their one live lease at the same moment: the retry gets that lease back."""
    try:
        return work()
    except IntegrityError:
        return work()


@router.get("/annotate/{campaign_id}", response_class=HTMLResponse)
def rating_page(
    campaign_id: CampaignId, request: Request, user: OptionalUser, nonce: RaterNonce
) -> Response:
    rater = _annotator(user)

    def work() -> Response:
        with session_scope(write=True) as session:
            campaign = _campaign(session, campaign_id, rater.id)
            context = rater_context(session, campaign, rater.id, session_nonce=nonce)
            context.update(
                user=rater,
                csrf=csrf_token(request),
                guidelines=render_markdown(campaign.guidelines),
            )
            return templates.TemplateResponse(request, "rate.html", context)

    return _retrying(work)


@router.get("/annotate/{campaign_id}/back", response_class=HTMLResponse)
def go_back(
    campaign_id: CampaignId,
    request: Request,
    user: OptionalUser,
    nonce: RaterNonce,
    before: Annotated[int, Ge(0), Le(MAX_ROW_ID)] | None = None,
) -> Response:
    """Show an earlier answer so it can be changed (``before``: step further back); only
    answers given in this browser session are shown."""
    rater = _annotator(user)
    with session_scope(write=True) as session:
        campaign = _campaign(session, campaign_id, rater.id)
        context = rater_context(
            session, campaign, rater.id, back_before=before or 0, session_nonce=nonce
        )
        context["csrf"] = csrf_token(request)
        name = "_rate_item.html" if request.headers.get("hx-request") else "rate.html"
        if name == "rate.html":
            context.update(user=rater, guidelines=render_markdown(campaign.guidelines))
        return templates.TemplateResponse(request, name, context)


@router.post("/annotate/{campaign_id}/answer", dependencies=[CSRFChecked], response_model=None)
def answer(
    campaign_id: CampaignId,
    request: Request,
    annotator_id: RaterId,
    nonce: RaterNonce,
    epoch: RaterEpoch,
    item_id: Annotated[RowId, Form()],
    submission_id: Annotated[NoNulStr, Form(min_length=1, max_length=100)],
    answer: Annotated[int | None, Form(ge=-100, le=100)] = None,
    skip: Annotated[str | None, Form(max_length=10)] = None,
    seconds: Annotated[float | None, Form(ge=0, le=86_400)] = None,
) -> Response:
    """Store an answer (or a skip) and show the next item.

    The answer is committed in its own short transaction before the next item is chosen, as
    in the JSON API: the rated item's row lock is held as briefly as possible.
    """
    notice = None
    try:
        with session_scope(write=True) as session:
            session.info[SESSION_EPOCH] = epoch
            _campaign(session, campaign_id, annotator_id)
            try:
                if skip:
                    skip_item(session, campaign_id, annotator_id, item_id)
                elif answer is None:
                    raise AssignmentError(422, "choose an answer")
                else:
                    if seconds is None:
                        seconds = lease_started(session, item_id, annotator_id)
                    submit_rating(
                        session,
                        campaign_id,
                        annotator_id,
                        item_id,
                        answer,
                        submission_id,
                        seconds,
                        session_nonce=nonce,
                    )
            except AssignmentError as exc:
                if not exc.keep_changes:
                    raise
                notice = exc.message
    except AssignmentError as exc:
        if exc.status == 422:
            raise HTTPException(exc.status, exc.message) from None
        notice = exc.message  # e.g. the item filled up meanwhile: move on to the next one
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/annotate/{campaign_id}", status_code=303)

    def work() -> Response:
        with session_scope(write=True) as session:
            campaign = _campaign(session, campaign_id, annotator_id)
            context = rater_context(
                session, campaign, annotator_id, notice=notice, session_nonce=nonce
            )
            context["csrf"] = csrf_token(request)
            return templates.TemplateResponse(request, "_rate_item.html", context)

    return _retrying(work)
