"""Job progress for staff: JSON for scripts, an htmx fragment that polls itself while running."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from app.core.jobs import job_as_dict, recent_jobs
from app.core.models import Job
from app.web.deps import SessionDep, StaffUser, templates

router = APIRouter(tags=["jobs"])


def _get(session: SessionDep, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


@router.get("/api/jobs")
def list_jobs(
    session: SessionDep, user: StaffUser, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[dict[str, Any]]:
    return [job_as_dict(job) for job in recent_jobs(session, min(limit, 200))]


@router.get("/api/jobs/{job_id}")
def get_job(job_id: int, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    return job_as_dict(_get(session, job_id))


@router.get("/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(job_id: int, request: Request, session: SessionDep, user: StaffUser) -> Any:
    job = job_as_dict(_get(session, job_id))
    response = templates.TemplateResponse(request, "_job.html", {"job": job})
    if job["finished"]:
        # The poll that sees the end tells the page, so counts elsewhere can refresh.
        response.headers["HX-Trigger"] = "job-finished"
    return response
