"""Job progress for staff: JSON for scripts, an htmx fragment that polls itself while running."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from app.core.job_list import get_job_view
from app.core.job_list import list_jobs as list_job_views
from app.core.jobs import job_as_dict
from app.core.models import Job, JobState
from app.web.deps import RowId, SessionDep, SessionRoute, StaffUser, templates

router = APIRouter(tags=["jobs"], route_class=SessionRoute)


def _get(session: SessionDep, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


@router.get("/api/jobs")
def list_jobs(
    session: SessionDep,
    user: StaffUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    kind: Annotated[str | None, Query(max_length=50)] = None,
    state: JobState | None = None,
) -> list[dict[str, Any]]:
    """Newest first, optionally of one kind and/or state: the rows of the jobs page (what each
    works on, who started it through which door, rate, time left, duration) as JSON."""
    return list_job_views(
        session, kind=kind, state=state.value if state else None, limit=min(limit, 200)
    )


@router.get("/api/jobs/{job_id}")
def get_job(job_id: RowId, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    _get(session, job_id)
    view = get_job_view(session, job_id)
    assert view is not None
    return view


@router.get("/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(job_id: RowId, request: Request, session: SessionDep, user: StaffUser) -> Any:
    job = job_as_dict(_get(session, job_id))
    response = templates.TemplateResponse(request, "_job.html", {"job": job})
    if job["finished"]:
        # The poll that sees the end tells the page, so counts elsewhere can refresh.
        response.headers["HX-Trigger"] = "job-finished"
    return response
