"""Cancel and retry a job, and sweep hanging ones: thin doors onto ``app.core.jobs``.

JSON for scripts (``POST /api/jobs/{id}/cancel|retry``, ``POST /api/jobs/sweep``) and form
posts for pages (``POST /jobs/{id}/cancel|retry``), which go back to the ``next`` field (a
local path) or to the job's progress. Staff only, CSRF-checked like every state change. A job
in the wrong state answers 409 with the reason; an unreachable broker 503 (the retry's new
job is then failed, not left queued).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

# The steps register what their jobs hold (the training lock, a half-written export) and how
# a training is retried: importing them makes sure they did in this process.
from app.core import job_control, jobs
from app.core.db import session_scope
from app.core.models import Job, User
from app.critic import queueing as _critic_jobs  # noqa: F401
from app.export import run as _export_jobs  # noqa: F401
from app.web.answers import SweepOut
from app.web.deps import CSRFChecked, RowId, SessionRoute, StaffUser
from app.web.jobs import JobSummary
from app.web.started import JobRetried

router = APIRouter(tags=["jobs"], route_class=SessionRoute)


def _who(user: User) -> str:
    return user.username or f"user {user.id}"


def cancel(job_id: int, user: User) -> dict[str, Any]:
    try:
        return job_control.cancel_job(job_id, by=_who(user))
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc).strip("'\"")) from None
    except job_control.JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


def retry(job_id: int) -> int:
    try:
        return job_control.retry_job(job_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc).strip("'\"")) from None
    except job_control.JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


def _job_json(job_id: int) -> dict[str, Any]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return jobs.job_as_dict(job)


@router.post(
    "/api/jobs/sweep",
    summary="Fail stale jobs now",
    dependencies=[CSRFChecked],
    response_model=SweepOut,
)
def sweep_api(user: StaffUser) -> dict[str, int]:
    """Fail stale and never-started jobs now (beat and the server also do it every minute)."""
    return job_control.sweep_jobs().as_dict()


@router.post(
    "/api/jobs/{job_id}/cancel",
    summary="Cancel a job",
    dependencies=[CSRFChecked],
    response_model=JobSummary,
)
def cancel_api(job_id: RowId, user: StaffUser) -> dict[str, Any]:
    """Cancel a queued or running job; its JSON, now ``cancelled``."""
    return cancel(job_id, user)


@router.post(
    "/api/jobs/{job_id}/retry",
    summary="Retry a job",
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRetried,
)
def retry_api(job_id: RowId, user: StaffUser) -> dict[str, Any]:
    """Run a failed or cancelled job again with the same parameters, as a new job."""
    new_id = retry(job_id)
    return {
        "job_id": new_id,
        "retry_of": job_id,
        "status_url": f"/api/jobs/{new_id}",
        "job": _job_json(new_id),
    }


def _back(next_url: str | None, fallback: str) -> RedirectResponse:
    # Only a local path: an absolute URL in ``next`` would make this an open redirect.
    target = (
        next_url
        if next_url and next_url.startswith("/") and not next_url.startswith("//")
        else fallback
    )
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


NextField = Annotated[str | None, Form(alias="next")]


@router.post("/jobs/{job_id}/cancel", dependencies=[CSRFChecked])
def cancel_form(job_id: RowId, user: StaffUser, next_url: NextField = None) -> RedirectResponse:
    cancel(job_id, user)
    return _back(next_url, f"/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry", dependencies=[CSRFChecked])
def retry_form(job_id: RowId, user: StaffUser, next_url: NextField = None) -> RedirectResponse:
    new_id = retry(job_id)
    return _back(next_url, f"/jobs/{new_id}")


async def broker_unavailable(request: Request, exc: Exception) -> Response:
    """Any door that queues work: 503 with the reason (the job row is already failed)."""
    text = f"{exc} The job was not started; start it again once the broker is up."
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    ):
        return JSONResponse({"detail": text}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return PlainTextResponse(text, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
