"""The home page: corpus counts and recent jobs for staff, a welcome for annotators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.accounts import STAFF_ROLES
from app.core.jobs import job_as_dict, recent_jobs
from app.core.models import (
    AnnotatorCampaign,
    Assignment,
    AssignmentState,
    Campaign,
    CampaignState,
)
from app.corpus.formats import FORMATS
from app.corpus.stats import corpus_counts
from app.web.deps import OptionalUser, SessionDep, SessionRoute, csrf_token, templates

router = APIRouter(tags=["pages"], route_class=SessionRoute)


@router.get("/", response_class=HTMLResponse, response_model=None)
def home(request: Request, session: SessionDep, user: OptionalUser) -> Any:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    context: dict[str, Any] = {"user": user, "csrf": csrf_token(request)}
    if user.role not in STAFF_ROLES:
        context["studies"] = open_studies(session, user.id)
        return templates.TemplateResponse(request, "annotator_home.html", context)
    context["counts"] = corpus_counts(session)
    context["jobs"] = [job_as_dict(job) for job in recent_jobs(session, 8)]
    context["formats"] = FORMATS
    return templates.TemplateResponse(request, "home.html", context)


def open_studies(session: Session, user_id: int) -> list[dict[str, Any]]:
    """The open campaigns this annotator entered or was invited to (no others: a campaign is
    reached only through its link), with how many items they answered in each."""
    rated = (
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.campaign_id == Campaign.id,
            Assignment.annotator_id == user_id,
            Assignment.state == AssignmentState.submitted,
        )
        .scalar_subquery()
    )
    rows = session.execute(
        select(Campaign.id, Campaign.name, Campaign.quota_per_annotator, rated)
        .join(AnnotatorCampaign, AnnotatorCampaign.campaign_id == Campaign.id)
        .where(Campaign.state == CampaignState.open, AnnotatorCampaign.annotator_id == user_id)
        .order_by(Campaign.id.desc())
    ).all()
    return [{"id": r[0], "name": r[1], "quota": r[2], "rated": r[3]} for r in rows]


@router.get("/healthz", include_in_schema=False)
def healthz(session: SessionDep) -> dict[str, str]:
    from sqlalchemy import text

    session.execute(text("SELECT 1"))
    return {"status": "ok"}
