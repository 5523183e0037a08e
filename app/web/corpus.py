"""Corpus import over HTTP: files are saved under the data dir and imported by a worker job."""

from __future__ import annotations

import re
import secrets
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from markupsafe import escape
from sqlalchemy.orm import Session

from app.core import queue
from app.core.config import get_settings
from app.core.job_control import dispatch
from app.core.jobs import create_job, job_as_dict
from app.core.models import Job, User
from app.corpus.formats import FORMATS
from app.corpus.sources import source_problem
from app.corpus.stats import corpus_counts
from app.web.answers import CorpusCountsOut
from app.web.deps import CSRFChecked, SessionDep, SessionRoute, StaffUser, templates
from app.web.started import ImportStarted, accepted

router = APIRouter(tags=["corpus"], route_class=SessionRoute)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@router.get("/api/corpus", summary="Corpus counts", response_model=CorpusCountsOut)
def corpus_summary(session: SessionDep, user: StaffUser) -> dict[str, Any]:
    return corpus_counts(session)


def queue_import(
    session: Session,
    user: User,
    files: list[UploadFile],
    source: str | None,
    fmt: str | None,
) -> Job:
    """Save uploads under the data dir and queue an import job over them (one code path for the
    JSON API and the upload form)."""
    fmt = fmt or None
    if fmt is not None and fmt not in FORMATS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"format: {fmt!r} is not one of {', '.join(FORMATS)}",
        )
    source = (source or "").strip() or None
    problem = source_problem(source) if source else None
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"source {source!r}: {problem}")
    files = [f for f in files if f.filename]
    if not files:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "files: choose at least one file"
        )
    limit = get_settings().max_upload_bytes
    for upload in files:
        if upload.size is not None and upload.size > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"{upload.filename}: {upload.size:,} bytes is more than the upload limit of "
                f"{limit:,} bytes (SKD_MAX_UPLOAD_BYTES); import it with `skd import` instead",
            )
    folder = get_settings().data_dir.resolve() / "uploads" / secrets.token_hex(8)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    names: list[str] = []
    for index, upload in enumerate(files):
        name = upload.filename or f"upload-{index}"
        target = folder / f"{index:03d}-{_SAFE_NAME.sub('_', name)[-120:]}"
        with target.open("wb") as out:
            shutil.copyfileobj(upload.file, out, length=1 << 20)
        paths.append(str(target))
        names.append(name)
    params = {
        "paths": paths,
        "names": names,
        "source": source,
        "format": fmt,
    }
    job = create_job(session, "import", params, created_by_id=user.id)
    session.commit()
    # A broker that does not take it fails the job and answers 503 (app.web.job_actions).
    dispatch(job.id, queue.IMPORT_CORPUS)
    return job


FilesField = Annotated[
    list[UploadFile], File(description="TSV, JSONL or CSV files, optionally .gz")
]


@router.post(
    "/api/corpus/import",
    summary="Import triples",
    responses=accepted(ImportStarted, "The import job, queued."),
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[CSRFChecked],
)
def import_upload(
    session: SessionDep,
    user: StaffUser,
    files: FilesField,
    source: Annotated[str | None, Form()] = None,
    format: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """Queue an import job for the uploaded files; poll ``status_url`` for its progress."""
    job = queue_import(session, user, files, source, format)
    return JSONResponse(
        {
            "job_id": job.id,
            "status_url": f"/api/jobs/{job.id}",
            "progress_url": f"/jobs/{job.id}/progress",
        },
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.post("/corpus/import", dependencies=[CSRFChecked], response_model=None)
def import_form(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    files: FilesField,
    source: Annotated[str | None, Form()] = None,
    format: Annotated[str | None, Form()] = None,
) -> HTMLResponse | RedirectResponse:
    """The upload form: htmx swaps in the job's live progress bar; without JS, back home. A
    refusal (a reserved source name, a file over the limit) shows under the form: htmx swaps
    only 2xx answers, so it gets one, retargeted; without JS it is the 4xx error page."""
    try:
        job = queue_import(session, user, files, source, format)
    except HTTPException as exc:
        if not request.headers.get("hx-request"):
            raise
        return HTMLResponse(
            f'<p class="notice field-error" role="alert">{escape(str(exc.detail))}</p>',
            headers={"HX-Retarget": "#import-problem", "HX-Reswap": "innerHTML"},
        )
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(request, "_job.html", {"job": job_as_dict(job)})
    return RedirectResponse(f"/?job={job.id}", status_code=status.HTTP_303_SEE_OTHER)
