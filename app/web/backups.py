"""Backups for admins: the page ``/admin/backups`` and ``/api/backups``.

Thin over ``app.core.backup_files``: the list of the backups folder, a download of one file
by its listed name, and "Back up now", which queues the same job beat's schedule runs. A
backup holds every account's password hash and every rating, so all of it is for admins:
researchers get 403, anonymous visitors the login page (the API: 401).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.core.backup_files import (
    BackupInProgress,
    find_backup,
    list_backups,
    queue_backup,
)
from app.core.config import get_settings
from app.core.jobs import job_as_dict
from app.core.models import Job
from app.web.deps import AdminUser, CSRFChecked, SessionDep, SessionRoute, csrf_token, templates
from app.web.started import JobStarted

router = APIRouter(tags=["backups"], route_class=SessionRoute)

PAGE = "/admin/backups"
NOTICE_KEY = "backups_notice"


class BackupOut(BaseModel):
    """One file in ``DATA_DIR/backups``."""

    name: str = Field(description="The file's name: what the download takes.")
    size_bytes: int
    modified: str = Field(description="When it was written (ISO 8601, UTC).")
    kind: str = Field(
        description="`rotating` (a default name, from beat, Back up now or a plain `skd db "
        "backup`: only the newest SKD_BACKUP_KEEP stay), `before restore` (the database as "
        "it was before `skd db restore`) or `named` (`skd db backup --out`: never deleted)."
    )
    download_url: str


def _latest_backup_jobs(session: Any, limit: int = 3) -> list[dict[str, Any]]:
    jobs = session.scalars(
        select(Job).where(Job.kind == "backup").order_by(Job.id.desc()).limit(limit)
    )
    return [job_as_dict(job) for job in jobs]


@router.get(PAGE, response_class=HTMLResponse)
def backups_page(request: Request, session: SessionDep, user: AdminUser) -> HTMLResponse:
    settings = get_settings()
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "backups": list_backups(settings),
        "jobs": _latest_backup_jobs(session),
        "every_hours": settings.backup_every_hours,
        "keep": settings.backup_keep,
        "folder": settings.data_dir / "backups",
        "notice": request.session.pop(NOTICE_KEY, None),
    }
    return templates.TemplateResponse(request, "backups.html", context)


@router.post(PAGE, dependencies=[CSRFChecked], response_class=RedirectResponse)
def back_up_now(request: Request, user: AdminUser) -> RedirectResponse:
    """The page's button: queue a backup and come back to the page, where its bar runs."""
    try:
        job_id = queue_backup(user.id)
        request.session[NOTICE_KEY] = f"Backup started: job {job_id}."
    except BackupInProgress as exc:
        request.session[NOTICE_KEY] = f"Not started: {exc}."
    return RedirectResponse(PAGE, status_code=status.HTTP_303_SEE_OTHER)


@router.get(f"{PAGE}/{{name}}", response_class=FileResponse)
def download_from_page(name: str, user: AdminUser) -> Response:
    return _download(name)


def _download(name: str) -> FileResponse:
    backup = find_backup(name)
    if backup is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no backup called {name!r}")
    return FileResponse(backup.path, filename=backup.name, media_type="application/octet-stream")


# --- JSON API -------------------------------------------------------------------------------


@router.get("/api/backups", summary="List backups")
def api_list_backups(user: AdminUser) -> list[BackupOut]:
    """The files in ``DATA_DIR/backups``, newest first (admins only)."""
    return [BackupOut(**backup.as_dict()) for backup in list_backups()]  # type: ignore[arg-type]


@router.post(
    "/api/backups",
    summary="Back up now",
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "A backup is already queued or running."}},
)
def api_back_up_now(user: AdminUser) -> JobStarted:
    """Queue a backup of the database (the job beat's schedule runs); follow the job, then
    download the file its result names. One at a time: 409 while another is under way."""
    try:
        job_id = queue_backup(user.id)
    except BackupInProgress as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return JobStarted(job_id=job_id, status_url=f"/api/jobs/{job_id}")


@router.get(
    "/api/backups/{name}",
    summary="Download a backup",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def api_download_backup(name: str, user: AdminUser) -> Response:
    """The file itself (SQLite database or pg_dump custom format), for `skd db restore`."""
    return _download(name)
