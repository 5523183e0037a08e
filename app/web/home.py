"""The home page: corpus counts and recent jobs for staff, a welcome for annotators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.accounts import STAFF_ROLES
from app.corpus.formats import FORMATS
from app.corpus.stats import corpus_counts
from app.jobs import job_as_dict, recent_jobs
from app.web.deps import OptionalUser, SessionDep, csrf_token, templates

router = APIRouter(tags=["pages"])


@router.get("/", response_class=HTMLResponse, response_model=None)
def home(request: Request, session: SessionDep, user: OptionalUser) -> Any:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    context: dict[str, Any] = {"user": user, "csrf": csrf_token(request)}
    if user.role not in STAFF_ROLES:
        return templates.TemplateResponse(request, "annotator_home.html", context)
    context["counts"] = corpus_counts(session)
    context["jobs"] = [job_as_dict(job) for job in recent_jobs(session, 8)]
    context["formats"] = FORMATS
    return templates.TemplateResponse(request, "home.html", context)


@router.get("/healthz", include_in_schema=False)
def healthz(session: SessionDep) -> dict[str, str]:
    from sqlalchemy import text

    session.execute(text("SELECT 1"))
    return {"status": "ok"}
