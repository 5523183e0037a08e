"""The jobs page for staff: every job, filtered by kind and state, live; and one job's page.

Thin over ``app.core.job_list``. The table is a fragment that re-fetches itself (htmx
polling, like a job's own progress bar), so the page stays live without reloading. Cancel and
retry are forms posting to ``/jobs/{id}/cancel`` and ``/jobs/{id}/retry`` (``app.web.jobs``),
which send the browser back to the ``next`` field.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from app.core.job_list import STATES, get_job_view, job_kinds, list_jobs, state_counts
from app.web.deps import RowId, SessionDep, SessionRoute, StaffUser, csrf_token, templates
from app.web.processes import processes_context

router = APIRouter(tags=["jobs"], route_class=SessionRoute)

PAGE_SIZE = 100


def human_seconds(value: float | None) -> str:
    """3 s, 4 min 05 s, 2 h 10 min: short enough for a table cell."""
    if value is None:
        return "–"
    seconds = int(round(value))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_rate(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10:
        return f"{value:,.0f}/s"
    if value >= 1:
        return f"{value:.1f}/s"
    return f"{value * 60:.1f}/min"


templates.env.filters.setdefault("human_seconds", human_seconds)
templates.env.filters.setdefault("human_rate", human_rate)


def _filters(kind: str | None, state: str | None) -> tuple[str | None, str | None]:
    kind = (kind or "").strip() or None
    state = (state or "").strip() or None
    if state is not None and state not in STATES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"state: {state!r} is not one of {', '.join(STATES)}",
        )
    return kind, state


def _table_context(session: SessionDep, kind: str | None, state: str | None) -> dict[str, Any]:
    jobs = list_jobs(session, kind=kind, state=state, limit=PAGE_SIZE)
    return {
        "jobs": jobs,
        "kind": kind or "",
        "state": state or "",
        "live": any(not job["finished"] for job in jobs),
        "page_size": PAGE_SIZE,
    }


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    kind: str | None = None,
    state: str | None = None,
) -> HTMLResponse:
    kind, state = _filters(kind, state)
    context = (
        _table_context(session, kind, state)
        | {
            "user": user,
            "csrf": csrf_token(request),
            "kinds": job_kinds(session),
            "states": STATES,
            "counts": state_counts(session),
        }
        | processes_context(session)
    )
    return templates.TemplateResponse(request, "jobs.html", context)


@router.get("/jobs/table", response_class=HTMLResponse)
def jobs_table(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    kind: str | None = None,
    state: str | None = None,
) -> HTMLResponse:
    """The table alone: the page polls it (faster while a job in it is unfinished)."""
    kind, state = _filters(kind, state)
    context = _table_context(session, kind, state) | {"csrf": csrf_token(request)}
    return templates.TemplateResponse(request, "_jobs_table.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: RowId, request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    job = get_job_view(session, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    result = dict(job["result"] or {})
    traceback = result.pop("traceback", None)
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "job": job,
        "params_json": json.dumps(job["params"], indent=2, ensure_ascii=False, default=str),
        "result_json": json.dumps(result, indent=2, ensure_ascii=False, default=str)
        if result
        else None,
        "traceback": traceback,
    }
    return templates.TemplateResponse(request, "job_detail.html", context)
