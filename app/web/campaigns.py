"""Campaign management for researchers: list, create (page and JSON API), detail, pause/close.

Thin doors: the page, the JSON API and ``skd campaign create`` all build a ``CampaignSpec`` and
call ``app.annotation.campaigns.create_campaign``; state changes go through ``set_campaign_state``.
Forms post and redirect without JavaScript; htmx only makes the state buttons swap the header
in place and previews the guidelines while they are typed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.agreement import campaign_agreement
from app.annotation.annotators import annotator_quality
from app.annotation.campaign_plan import CampaignPlan, plan_campaign
from app.annotation.campaign_stats import CampaignProgress, campaign_progress
from app.annotation.campaigns import (
    DEFAULT_SCALE,
    CampaignSpec,
    CampaignSpecError,
    CampaignStateError,
    create_campaign,
    set_campaign_state,
    share_url,
    validate_spec,
)
from app.annotation.scale import ScaleError, parse_scale_lines
from app.annotation.source_balance import BALANCE_HELP
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.durations import duration_words
from app.core.models import Campaign, CampaignPurpose, CampaignState, Role, User
from app.corpus.stats import corpus_counts
from app.web.answers import CampaignOut, CampaignPlanOut
from app.web.campaign_form import (
    PURPOSE_HELP,
    blank_values,
    form_errors,
    parse_campaign_form,
)
from app.web.deps import (
    CSRFChecked,
    PostedForm,
    RowId,
    SessionDep,
    SessionRoute,
    StaffUser,
    csrf_token,
    templates,
)
from app.web.markdown import render_markdown

router = APIRouter(tags=["campaigns"], route_class=SessionRoute)

# The query strings the platforms add to a study link. Prolific fills {{%NAME%}} placeholders.
PROLIFIC_QUERY = (
    "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
)
MTURK_QUERY = "workerId=WORKER_ID&assignmentId=ASSIGNMENT_ID"


def _campaign_or_404(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id}")
    return campaign


def _base_url(request: Request) -> str:
    """SKD_BASE_URL when set (behind a proxy it is the truth), else the address in use."""
    return get_settings().base_url or str(request.base_url)


def campaign_as_dict(
    campaign: Campaign, progress: CampaignProgress, base_url: str | None = None
) -> dict[str, Any]:
    """The JSON form of a campaign (the API's answer for one campaign)."""
    return {
        "id": campaign.id,
        "name": campaign.name,
        "purpose": campaign.purpose.value,
        "state": campaign.state.value,
        "share_url": share_url(campaign, base_url),
        "page_url": f"/campaigns/{campaign.id}",
        "ratings_per_item": campaign.ratings_per_item,
        "lease_seconds": campaign.lease_seconds,
        "gold_rate": campaign.gold_rate,
        "quota_per_annotator": campaign.quota_per_annotator,
        "min_gold_accuracy": campaign.min_gold_accuracy,
        "speeder_seconds": campaign.speeder_seconds,
        "completion_code": campaign.completion_code,
        "redirect_url": campaign.redirect_url,
        "selection": campaign.selection,
        "answer_scale": campaign.answer_scale,
        "guidelines": campaign.guidelines,
        "created_at": campaign.created_at.isoformat(),
        "closed_at": campaign.closed_at.isoformat() if campaign.closed_at else None,
        "progress": progress.as_dict(),
    }


def _all_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.created_at.desc())))


# --- pages ----------------------------------------------------------------------------------


@router.get("/campaigns", response_class=HTMLResponse)
def campaign_list(request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    campaigns = _all_campaigns(session)
    progress = campaign_progress(session, [c.id for c in campaigns])
    return templates.TemplateResponse(
        request,
        "campaigns.html",
        {
            "user": user,
            "csrf": csrf_token(request),
            "rows": [(c, progress[c.id]) for c in campaigns],
        },
    )


def _render_form(
    request: Request,
    session: Session,
    user: User,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = status.HTTP_200_OK,
    plan: CampaignPlan | None = None,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "campaign_new.html",
        {
            "plan": plan_view(plan) if plan else None,
            "user": user,
            "csrf": csrf_token(request),
            "values": values,
            "errors": errors,
            "counts": corpus_counts(session),
            "purposes": PURPOSE_HELP,
            "balances": BALANCE_HELP,
            "guidelines_html": render_markdown(values.get("guidelines")),
        },
        status_code=status_code,
    )


@router.get("/campaigns/new", response_class=HTMLResponse)
def new_campaign_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    gold: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
) -> HTMLResponse:
    """The empty form; ``gold=ID ANSWER`` (from the browse pages' gold picks) fills the gold
    list."""
    values = blank_values()
    values["gold_items"] = "\n".join(line.strip() for line in gold if line.strip())
    return _render_form(request, session, user, values, {})


@router.post("/campaigns", dependencies=[CSRFChecked], response_model=None)
def create_campaign_from_form(
    request: Request, session: SessionDep, user: StaffUser, form: PostedForm
) -> HTMLResponse | RedirectResponse:
    """Create and go to the campaign's page; on a problem, the form again with every message."""
    parsed = parse_campaign_form(form)
    errors = dict(parsed.errors)
    campaign_id = None
    if errors:
        # Also the spec's own problems, so one round shows every mistake, not the first.
        for name, message in form_errors(validate_spec(session, parsed.spec)).items():
            errors.setdefault(name, message)
    else:
        try:
            with session_scope(write=True) as write:
                campaign_id = create_campaign(write, parsed.spec, user.id).id
        except CampaignSpecError as exc:
            errors = form_errors(exc.errors)
    if errors or campaign_id is None:
        return _render_form(
            request,
            session,
            user,
            parsed.values,
            errors,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/campaigns/plan", dependencies=[CSRFChecked], response_model=None)
def plan_from_form(
    request: Request, session: SessionDep, user: StaffUser, form: PostedForm
) -> HTMLResponse:
    """What the form's campaign would ask of people. htmx (on every change of the form): the
    panel above the create button; without JavaScript (the "Check the plan" button): the
    form again, as filled in, with the plan."""
    parsed = parse_campaign_form(form)
    errors = dict(parsed.errors)
    plan = None
    if not errors:
        try:
            plan = plan_campaign(session, parsed.spec)
        except CampaignSpecError as exc:
            errors = form_errors(exc.errors)
    if request.headers.get("hx-request"):
        context = {"plan": plan_view(plan) if plan else None, "plan_errors": errors}
        return templates.TemplateResponse(request, "_campaign_plan.html", context)
    return _render_form(
        request,
        session,
        user,
        parsed.values,
        errors,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT if errors else status.HTTP_200_OK,
        plan=plan,
    )


def plan_view(plan: CampaignPlan) -> dict[str, Any]:
    """The plan with its durations in words, as the page shows it."""
    minutes, hours = plan.minutes_per_annotator, plan.person_hours
    return {
        **plan.as_dict(),
        "per_annotator_words": duration_words(minutes * 60) if minutes is not None else None,
        "total_words": duration_words(hours * 3600) if hours is not None else None,
    }


@router.post(
    "/campaigns/guidelines-preview", dependencies=[CSRFChecked], response_class=HTMLResponse
)
def guidelines_preview(user: StaffUser, guidelines: Annotated[str, Form()] = "") -> HTMLResponse:
    """The guidelines as annotators will see them (the form asks while the researcher types)."""
    html = render_markdown(guidelines)
    return HTMLResponse(html if guidelines.strip() else '<p class="muted">Nothing yet.</p>')


def _change_state(campaign_id: int, state: str | CampaignState) -> tuple[Campaign, Any]:
    """One write transaction (on SQLite it takes the write lock first: pausing must not fail
    while annotators are writing); rule violations become their HTTP status."""
    try:
        with session_scope(write=True) as session:
            campaign = set_campaign_state(session, campaign_id, state)
            session.flush()
            return campaign, campaign_progress(session, [campaign_id])[campaign_id]
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except CampaignStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def _head_context(
    request: Request, user: User, campaign: Campaign, progress: CampaignProgress
) -> dict[str, Any]:
    """What templates/_campaign_head.html needs (the detail page and the htmx swap)."""
    return {"user": user, "csrf": csrf_token(request), "campaign": campaign, "progress": progress}


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_detail(
    campaign_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> HTMLResponse:
    campaign = _campaign_or_404(session, campaign_id)
    link = share_url(campaign, _base_url(request))
    annotators = annotator_quality(session, campaign.id)
    agreement = campaign_agreement(session, campaign.id)
    creator = session.get(User, campaign.created_by_id) if campaign.created_by_id else None
    progress = campaign_progress(session, [campaign.id])[campaign.id]
    context = _head_context(request, user, campaign, progress) | {
        "share_url": link,
        "prolific_url": f"{link}?{PROLIFIC_QUERY}",
        "mturk_url": f"{link}?{MTURK_QUERY}",
        "guidelines_html": render_markdown(campaign.guidelines),
        "annotators": annotators,
        "agreement": agreement,
        "is_admin": user.role == Role.admin,
        "creator": creator,
    }
    return templates.TemplateResponse(request, "campaign_detail.html", context)


@router.post("/campaigns/{campaign_id}/state", dependencies=[CSRFChecked], response_model=None)
def change_state(
    campaign_id: RowId,
    request: Request,
    user: StaffUser,
    state: Annotated[str, Form()],
) -> Response:
    """Pause, resume or close. htmx gets the new header; a plain form goes back to the page."""
    campaign, progress = _change_state(campaign_id, state)
    if request.headers.get("hx-request"):
        context = _head_context(request, user, campaign, progress)
        return templates.TemplateResponse(request, "_campaign_head.html", context)
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=status.HTTP_303_SEE_OTHER)


# --- JSON API -------------------------------------------------------------------------------


class ScaleOptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int
    label: str
    acceptable: bool | None = None
    key: str | None = None


class CampaignIn(BaseModel):
    """``POST /api/campaigns``: the fields of ``CampaignSpec``. ``answer_scale`` is a list of
    options or the same ``value | label | acceptable`` lines the page uses; ``gold_items`` maps
    triple id to answer; ``seed`` defaults to a fresh one (returned in ``selection``)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    purpose: CampaignPurpose = CampaignPurpose.calibration
    sample_size: int | None = None
    relations: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    source_balance: Literal["auto", "equal", "proportional"] = Field(
        "auto",
        description="How a sample spreads over the sources: `equal` gives each source an "
        "equal share, `proportional` draws uniformly, `auto` is equal for evaluation "
        "campaigns and proportional otherwise.",
    )
    ratings_per_item: int = 3
    lease_seconds: int = 600
    gold_fraction: float = 0.0
    gold_items: dict[int, int] = Field(default_factory=dict)
    gold_rate: float = 0.0
    guidelines: str = ""
    answer_scale: list[ScaleOptionIn] | str | None = None
    quota_per_annotator: int | None = None
    min_gold_accuracy: float = 0.7
    speeder_seconds: float = 2.0
    completion_code: str | None = None
    redirect_url: str | None = None
    seed: int | None = None


def _unprocessable(errors: dict[str, str]) -> JSONResponse:
    """422 in FastAPI's own shape (``detail[].loc`` ends with the field name)."""
    detail = [
        {"loc": ["body", name], "msg": message, "type": "value_error"}
        for name, message in errors.items()
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.get("/api/campaigns", summary="List campaigns", response_model=list[CampaignOut])
def api_list_campaigns(
    request: Request, session: SessionDep, user: StaffUser
) -> list[dict[str, Any]]:
    campaigns = _all_campaigns(session)
    progress = campaign_progress(session, [c.id for c in campaigns])
    base = _base_url(request)
    return [campaign_as_dict(c, progress[c.id], base) for c in campaigns]


@router.get("/api/campaigns/{campaign_id}", summary="Get a campaign", response_model=CampaignOut)
def api_get_campaign(
    campaign_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> dict[str, Any]:
    campaign = _campaign_or_404(session, campaign_id)
    progress = campaign_progress(session, [campaign.id])[campaign.id]
    return campaign_as_dict(campaign, progress, _base_url(request))


def _spec_of(body: CampaignIn) -> CampaignSpec | JSONResponse:
    """The spec a JSON body describes, or the 422 for an answer scale that cannot be read."""
    scale: list[dict[str, Any]] = list(DEFAULT_SCALE)
    if isinstance(body.answer_scale, str):
        try:
            scale = parse_scale_lines(body.answer_scale)
        except ScaleError as exc:
            return _unprocessable({"answer_scale": "; ".join(exc.problems)})
    elif body.answer_scale is not None:
        scale = [option.model_dump() for option in body.answer_scale]
    return CampaignSpec(
        **body.model_dump(exclude={"answer_scale", "name"}),
        name=body.name.strip(),
        answer_scale=scale,
    )


@router.post(
    "/api/campaigns/plan",
    summary="Plan a campaign",
    responses={200: {"model": CampaignPlanOut, "description": "The plan; nothing is created."}},
    dependencies=[CSRFChecked],
    response_model=None,
)
def api_plan_campaign(
    body: CampaignIn, session: SessionDep, user: StaffUser
) -> dict[str, Any] | JSONResponse:
    """What the campaign this body describes (the body of ``POST /api/campaigns``) would ask:
    triples matched, items, ratings, annotators for its quota and the time at the recent
    pace. Nothing is created; 422 names each field that is wrong, as creating it would."""
    spec = _spec_of(body)
    if isinstance(spec, JSONResponse):
        return spec
    try:
        return plan_campaign(session, spec).as_dict()
    except CampaignSpecError as exc:
        return _unprocessable(exc.errors)


@router.post(
    "/api/campaigns",
    summary="Create a campaign",
    responses={201: {"model": CampaignOut, "description": "The campaign, open or draft."}},
    dependencies=[CSRFChecked],
    status_code=status.HTTP_201_CREATED,
    response_model=None,
)
def api_create_campaign(
    body: CampaignIn, request: Request, user: StaffUser
) -> dict[str, Any] | JSONResponse:
    """Create a campaign; 422 names each field that is wrong."""
    spec = _spec_of(body)
    if isinstance(spec, JSONResponse):
        return spec
    try:
        with session_scope(write=True) as session:
            campaign = create_campaign(session, spec, user.id)
            session.flush()
            progress = campaign_progress(session, [campaign.id])[campaign.id]
    except CampaignSpecError as exc:
        return _unprocessable(exc.errors)
    return campaign_as_dict(campaign, progress, _base_url(request))


class StateIn(BaseModel):
    state: CampaignState


@router.post(
    "/api/campaigns/{campaign_id}/state",
    summary="Open, pause or close a campaign",
    dependencies=[CSRFChecked],
    response_model=CampaignOut,
)
def api_change_state(
    campaign_id: RowId, body: StateIn, request: Request, user: StaffUser
) -> dict[str, Any]:
    """Open, pause or close from a script; 409 for reopening a closed campaign."""
    campaign, progress = _change_state(campaign_id, body.state)
    return campaign_as_dict(campaign, progress, _base_url(request))
