"""Job progress for staff: JSON for scripts, an htmx fragment that polls itself while running."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from app.core import processes
from app.core.job_list import get_job_view
from app.core.job_list import list_jobs as list_job_views
from app.core.jobs import job_as_dict
from app.core.models import Job, JobState
from app.web.deps import RowId, SessionDep, SessionRoute, StaffUser, templates

router = APIRouter(tags=["jobs"], route_class=SessionRoute)

_WHEN = {"format": "date-time"}


class JobSummary(BaseModel):
    """A job as it is nested in what it works on (an export, a teacher run) and as cancel
    answers it: ``JobOut`` without the timing and who started it."""

    model_config = ConfigDict(extra="allow")

    id: int
    kind: str = Field(description="import, teacher, critic_train, export, student_train, ...")
    label: str = Field(description="What it works on, e.g. 'Export #5'.")
    subject_url: str | None = Field(description="The page of what it works on.")
    state: JobState
    done: int = Field(description="Work done so far, in the job's own unit.")
    total: int | None = Field(description="The work there is, once known.")
    fraction: float | None = Field(description="done / total, in [0, 1].")
    message: str | None = Field(description="Its latest word: what it is doing, or did.")
    result: Any = Field(description="What a succeeded job made (its ids, counts, paths).")
    error: str | None = Field(description="Why a failed job failed.")
    finished: bool
    created_at: str = Field(json_schema_extra=_WHEN)
    started_at: str | None = Field(json_schema_extra=_WHEN)
    finished_at: str | None = Field(json_schema_extra=_WHEN)


class JobOut(JobSummary):
    """A job as every ``status_url`` answers it: poll until ``finished``, then read ``state``
    and ``result``. The same fields as a row of the jobs page."""

    duration_s: float | None = Field(description="Seconds it has run (or ran).")
    rate_per_s: float | None = Field(
        description="Units done per second, for kinds that count one thing (see unit)."
    )
    unit: str | None = Field(
        description="What done and total count (triples, steps, prompts, queries); null "
        "where they mix several (an import's bytes and rows), a fraction only."
    )
    left_s: float | None = Field(description="Seconds left at that rate.")
    waiting_s: float | None = Field(description="Seconds a queued job has waited for a worker.")
    started_by: str = Field(description="Who, through which door: 'ada (api token 'nightly')'.")
    door: str | None
    params: dict[str, Any] | None = Field(description="What it was asked to do.")


def _get(session: SessionDep, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


@router.get("/api/jobs", summary="List jobs")
def list_jobs(
    session: SessionDep,
    user: StaffUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    kind: Annotated[str | None, Query(max_length=50)] = None,
    state: JobState | None = None,
) -> list[JobOut]:
    """Newest first, optionally of one kind and/or state: the rows of the jobs page (what each
    works on, who started it through which door, rate, time left, duration) as JSON."""
    views = list_job_views(
        session, kind=kind, state=state.value if state else None, limit=min(limit, 200)
    )
    return [JobOut.model_validate(view) for view in views]


@router.get("/api/jobs/{job_id}", summary="Get a job")
def get_job(job_id: RowId, session: SessionDep, user: StaffUser) -> JobOut:
    _get(session, job_id)
    view = get_job_view(session, job_id)
    assert view is not None
    return JobOut.model_validate(view)


@router.get("/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(job_id: RowId, request: Request, session: SessionDep, user: StaffUser) -> Any:
    job = job_as_dict(_get(session, job_id))
    context: dict[str, Any] = {"job": job}
    if job["state"] == JobState.queued.value:  # waiting: say so if no worker will take it
        context["worker_problems"] = processes.why_jobs_wait(session)
    response = templates.TemplateResponse(request, "_job.html", context)
    if job["finished"]:
        # The poll that sees the end tells the page, so counts elsewhere can refresh.
        response.headers["HX-Trigger"] = "job-finished"
    return response
