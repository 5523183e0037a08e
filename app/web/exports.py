"""Exports for researchers: the page (form, preview, list, downloads) and the JSON API.

Thin doors onto ``app.export``: a form or a JSON body becomes ``ExportParams``;
``preview_export`` shows what would be kept; ``queue_export`` checks everything, records the
export and hands its job to a worker. Bad parameters come back before any work: on the page
next to their field, from the API as a 422 naming the field. The form works without
JavaScript (post, redirect to the export's page); htmx previews in place and swaps in the
job's live progress bar.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.core.db import session_scope
from app.core.jobs import job_as_dict
from app.core.models import CriticVersion, Job
from app.corpus.stats import corpus_counts
from app.critic.estimates import weak_version_error
from app.export.params import (
    DEFAULT_SPLITS,
    FORMAT_HELP,
    FORMATS,
    HUMAN_LABEL_RULES,
    SPLIT_BY,
    ExportParamError,
    ExportParams,
)
from app.export.plan import USABLE_STATES
from app.export.remove import ExportBusy, delete_export
from app.export.run import (
    export_file,
    get_export,
    list_exports,
    preview_export,
    queue_export,
)
from app.web.answers import ExportDeleted, ExportOut, ExportPlanOut
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
from app.web.started import ExportStarted, accepted

router = APIRouter(tags=["exports"], route_class=SessionRoute)

# The page's threshold choice: one radio and one number, mapped onto the four parameters.
THRESHOLD_CHOICES = {
    "default": ("", "The version's own threshold (else held-out recall 0.8, the paper's rec_0.8)"),
    "target_recall": ("0.8", "Target recall on held-out labels (0.5 high, 0.8 medium filtration)"),
    "target_precision": ("0.9", "Target precision on held-out labels"),
    "kept_fraction": ("0.5", "Fraction of the scored triples to keep"),
    "threshold": ("0.5", "An explicit score"),
}
THRESHOLD_FIELDS = set(THRESHOLD_CHOICES) - {"default"}
DELETED_KEY = "export_deleted"  # session key: what the last delete removed, shown once


def usable_versions(session: Session) -> list[dict[str, Any]]:
    """Critic versions an export can use (ready, active, retired), newest first. (No score
    counts: counting a million scores per version on every page load is not worth it; the
    preview says how many triples a version scored.)"""
    versions = session.scalars(
        select(CriticVersion)
        .where(CriticVersion.state.in_(USABLE_STATES))
        .order_by(CriticVersion.id.desc())
    ).all()
    return [
        {
            "id": version.id,
            "state": version.state.value,
            "roc_auc": (version.metrics or {}).get("roc_auc"),
            "threshold": version.threshold,
        }
        for version in versions
    ]


def blank_values() -> dict[str, Any]:
    return {
        "version": "",
        "rule": "default",
        "value": "",
        "relations": [],
        "sources": [],
        "human_labels": "override",
        **{f"split_{name}": f"{ratio:g}" for name, ratio in DEFAULT_SPLITS},
        "split_by": "head",
        "seed": "0",
        "formats": list(FORMATS),
    }


def form_values(form: FormData) -> dict[str, Any]:
    """The posted form as the template shows it again."""
    values = blank_values()
    for name in ("version", "rule", "value", "human_labels", "split_by", "seed"):
        text = form.get(name)
        if isinstance(text, str):
            values[name] = text.strip()
    for name, _ratio in DEFAULT_SPLITS:
        text = form.get(f"split_{name}")
        if isinstance(text, str):
            values[f"split_{name}"] = text.strip()
    for name in ("relations", "sources", "formats"):
        values[name] = [v for v in form.getlist(name) if isinstance(v, str)]
    values["confirm_weak_critic"] = form.get("confirm_weak_critic") == "1"
    return values


def refuse_weak_critic(params: ExportParams, confirmed: bool) -> None:
    """Exporting with a critic no better than chance needs an explicit confirmation."""
    if confirmed or params.no_critic:
        return
    with session_scope() as session:
        weak = weak_version_error(session, params.version)
    if weak:
        raise ExportParamError(
            {"version": f"{weak}; confirm to export with it anyway (confirm_weak_critic)"}
        )


def params_from_values(values: dict[str, Any]) -> ExportParams:
    """Form values -> ExportParams; errors are keyed by form field (``value`` for thresholds)."""
    data: dict[str, Any] = {
        "version": values["version"] or None,
        "relations": values["relations"],
        "sources": values["sources"],
        "human_labels": values["human_labels"],
        "split_by": values["split_by"],
        "seed": values["seed"],
        "formats": values["formats"] or "",
    }
    if values["split_by"] != "corpus":  # the shares are for splitting by head
        data["splits"] = {name: values[f"split_{name}"] or "0" for name, _ratio in DEFAULT_SPLITS}
    rule = values["rule"]
    if rule in THRESHOLD_FIELDS:
        if not values["value"]:
            raise ExportParamError({"value": "give a number for the threshold rule you chose"})
        data[rule] = values["value"]
    elif rule != "default":
        raise ExportParamError({"rule": f"{rule!r} is not a threshold rule"})
    if not values["formats"]:
        raise ExportParamError({"formats": f"choose at least one of {', '.join(FORMATS)}"})
    return ExportParams.from_dict(data)


def form_errors(errors: dict[str, str]) -> dict[str, str]:
    """Parameter names -> the form field that shows the message."""
    shown: dict[str, str] = {}
    for name, message in errors.items():
        field = "value" if name in THRESHOLD_FIELDS else name
        shown.setdefault(field, message)
    return shown


def _page_context(
    request: Request,
    session: Session,
    user: Any,
    values: dict[str, Any],
    errors: dict[str, str],
) -> dict[str, Any]:
    return {
        "user": user,
        "csrf": csrf_token(request),
        "values": values,
        "errors": errors,
        "versions": usable_versions(session),
        "counts": corpus_counts(session),
        "rules": THRESHOLD_CHOICES,
        "human_rules": HUMAN_LABEL_RULES,
        "formats": FORMAT_HELP,
        "split_choices": SPLIT_BY,
        "exports": list_exports(session),
    }


# --- pages ----------------------------------------------------------------------------------


@router.get("/exports", response_class=HTMLResponse)
def exports_page(request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    context = _page_context(request, session, user, blank_values(), {})
    context["deleted"] = request.session.pop(DELETED_KEY, None)
    return templates.TemplateResponse(request, "exports.html", context)


@router.get("/exports/list", response_class=HTMLResponse)
def exports_list_fragment(request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    """The list alone: the page refreshes it when a job starts or finishes."""
    return templates.TemplateResponse(
        request, "_export_list.html", {"exports": list_exports(session)}
    )


@router.post("/exports/preview", dependencies=[CSRFChecked], response_class=HTMLResponse)
def preview(
    request: Request, session: SessionDep, user: StaffUser, form: PostedForm
) -> HTMLResponse:
    """What the form's parameters would keep, or what is wrong with them. htmx gets the
    fragment (status 200, so it is swapped in); a plain form post gets the page with it."""
    values = form_values(form)
    try:
        plan = preview_export(params_from_values(values)).as_dict()
        errors: dict[str, str] = {}
    except ExportParamError as exc:
        plan, errors = None, form_errors(exc.errors)
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(
            request, "_export_preview.html", {"plan": plan, "errors": errors}
        )
    context = _page_context(request, session, user, values, errors) | {"plan": plan}
    return templates.TemplateResponse(request, "exports.html", context)


@router.post("/exports", dependencies=[CSRFChecked], response_model=None)
def create_from_form(
    request: Request, session: SessionDep, user: StaffUser, form: PostedForm
) -> Response:
    """Start an export. htmx: the job's progress bar (or the errors) in place; without
    JavaScript: the export's page, or the form again with every message."""
    values = form_values(form)
    htmx = bool(request.headers.get("hx-request"))
    try:
        params = params_from_values(values)
        refuse_weak_critic(params, values["confirm_weak_critic"])
        started = queue_export(params, user.id)
    except ExportParamError as exc:
        errors = form_errors(exc.errors)
        if htmx:
            return templates.TemplateResponse(
                request, "_export_preview.html", {"plan": None, "errors": errors}
            )
        context = _page_context(request, session, user, values, errors)
        return templates.TemplateResponse(
            request, "exports.html", context, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    if htmx:
        with session_scope() as fresh:  # the request's session may predate the new rows
            job = fresh.get(Job, started.job_id)
            assert job is not None
            job_dict = job_as_dict(job)
        response = templates.TemplateResponse(
            request,
            "_export_started.html",
            {"job": job_dict, "export_id": started.export_id},
        )
        response.headers["HX-Trigger"] = "export-started"
        return response
    return RedirectResponse(f"/exports/{started.export_id}", status_code=status.HTTP_303_SEE_OTHER)


def _export_or_404(session: Session, export_id: int) -> dict[str, Any]:
    export = get_export(session, export_id)
    if export is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no export {export_id}")
    return export


def _card_html(session: Session, export_id: int) -> Any:
    """The card as HTML, without its YAML header (that is for the Hugging Face loader)."""
    path = export_file(session, export_id, "README.md")
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            text = text[end + 5 :]
    return render_markdown(text)


@router.get("/exports/{export_id}", response_class=HTMLResponse)
def export_page(
    export_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> HTMLResponse:
    export = _export_or_404(session, export_id)
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "export": export,
        "card_html": _card_html(session, export_id),
    }
    return templates.TemplateResponse(request, "export_detail.html", context)


def _delete(export_id: int) -> dict[str, Any]:
    """``delete_export`` with its refusals as HTTP errors (404 unknown, 409 still running)."""
    try:
        deleted = delete_export(export_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ExportBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return {
        "deleted": deleted.export_id,
        "removed": deleted.removed,
        "freed_bytes": deleted.freed_bytes,
    }


@router.post("/exports/{export_id}/delete", dependencies=[CSRFChecked], response_model=None)
def delete_from_page(export_id: RowId, request: Request, user: StaffUser) -> Response:
    """The export page's Delete button: files and row go, then back to the list (htmx follows
    ``HX-Redirect``; a plain form follows the 303)."""
    result = _delete(export_id)
    request.session[DELETED_KEY] = result
    if request.headers.get("HX-Request"):
        return Response(headers={"HX-Redirect": "/exports"})
    return RedirectResponse("/exports", status_code=status.HTTP_303_SEE_OTHER)


def _download(session: Session, export_id: int, name: str | None) -> FileResponse:
    export = _export_or_404(session, export_id)
    path = export_file(session, export_id, name)
    if path is None:
        what = "archive" if name is None else f"file {name!r}"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"export {export_id} has no {what} (state: {export['state']})",
        )
    media = {
        ".gz": "application/gzip",
        ".parquet": "application/vnd.apache.parquet",
        ".jsonl": "application/jsonl",
        ".tsv": "text/tab-separated-values",
        ".md": "text/markdown",
        ".json": "application/json",
    }.get(path.suffix, "text/plain")
    filename = path.name if name is not None else path.name.split("-", 1)[-1]
    if name is not None and "/" in name:
        filename = name.replace("/", "-")
    return FileResponse(path, media_type=media, filename=filename)


@router.get("/exports/{export_id}/download")
def download_archive(export_id: RowId, session: SessionDep, user: StaffUser) -> FileResponse:
    """The export's .tar.gz (it unpacks into one folder named after the parameters)."""
    return _download(session, export_id, None)


@router.get("/exports/{export_id}/files/{name:path}")
def download_file(
    export_id: RowId, name: str, session: SessionDep, user: StaffUser
) -> FileResponse:
    """One file of the export, e.g. ``jsonl/train.jsonl`` or ``README.md``."""
    return _download(session, export_id, name)


# --- JSON API -------------------------------------------------------------------------------


class ExportIn(BaseModel):
    """``POST /api/exports``: every field optional. ``version``: an id or "active" (default);
    ``critic``: "none" for an export no critic filters (``version`` null or left out, no
    threshold rule; ``human_labels`` alone drops triples), else "version"; at most one of
    ``threshold``, ``target_precision``, ``target_recall``, ``kept_fraction``
    (none: the version's threshold, else recall 0.8); ``splits``: ``{"train": 0.8, ...}``;
    ``split_by``: "head" (default) or "corpus" (keep each triple's imported split)."""

    model_config = ConfigDict(extra="forbid")
    version: int | str | None = None
    critic: str | None = None
    threshold: float | None = None
    target_precision: float | None = None
    target_recall: float | None = None
    kept_fraction: float | None = None
    relations: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    human_labels: str = "override"
    splits: dict[str, float] | None = None
    split_by: str = "head"
    seed: int = 0
    formats: list[str] | None = None
    # Needed to export with a version whose held-out AUC is no better than chance.
    confirm_weak_critic: bool = False


def _unprocessable(errors: dict[str, str]) -> JSONResponse:
    """422 in FastAPI's own shape (``detail[].loc`` ends with the parameter's name)."""
    detail = [
        {"loc": ["body", name], "msg": message, "type": "value_error"}
        for name, message in errors.items()
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _params(body: ExportIn) -> ExportParams:
    return ExportParams.from_dict(
        body.model_dump(exclude_none=True, exclude={"confirm_weak_critic"})
    )


@router.get("/api/exports", summary="List exports", response_model=list[ExportOut])
def api_list(
    session: SessionDep, user: StaffUser, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    return list_exports(session, min(max(limit, 1), 500))


@router.get("/api/exports/{export_id}", summary="Get an export", response_model=ExportOut)
def api_get(export_id: RowId, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    return _export_or_404(session, export_id)


@router.post(
    "/api/exports/preview",
    summary="Preview an export",
    responses={200: {"model": ExportPlanOut, "description": "What it would keep."}},
    dependencies=[CSRFChecked],
    response_model=None,
)
def api_preview(body: ExportIn, user: StaffUser) -> dict[str, Any] | JSONResponse:
    """What an export would keep: threshold and why, counts, estimated precision. Writes
    nothing; 422 names each bad parameter."""
    try:
        return preview_export(_params(body)).as_dict()
    except ExportParamError as exc:
        return _unprocessable(exc.errors)


@router.post(
    "/api/exports",
    summary="Create an export",
    responses=accepted(ExportStarted, "The export and its job, queued."),
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
)
def api_create(body: ExportIn, user: StaffUser) -> JSONResponse:
    """Check the parameters (422 naming each bad one, before any work) and queue the export;
    follow ``status_url``, then download ``download_url``."""
    try:
        params = _params(body)
        refuse_weak_critic(params, body.confirm_weak_critic)
        started = queue_export(params, user.id)
    except ExportParamError as exc:
        return _unprocessable(exc.errors)
    with session_scope() as session:
        export = get_export(session, started.export_id)
    return JSONResponse(
        {
            "export_id": started.export_id,
            "job_id": started.job_id,
            "status_url": f"/api/jobs/{started.job_id}",
            "progress_url": f"/jobs/{started.job_id}/progress",
            "export_url": f"/api/exports/{started.export_id}",
            "download_url": f"/api/exports/{started.export_id}/download",
            "started": started.as_dict(),
            "export": export,
        },
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.delete(
    "/api/exports/{export_id}",
    summary="Delete an export",
    dependencies=[CSRFChecked],
    response_model=ExportDeleted,
)
def api_delete(export_id: RowId, user: StaffUser) -> dict[str, Any]:
    """Delete the export's folder, archive and row (404 unknown, 409 while its job runs)."""
    return _delete(export_id)


@router.get("/api/exports/{export_id}/download", summary="Download an export's archive")
def api_download(export_id: RowId, session: SessionDep, user: StaffUser) -> FileResponse:
    return _download(session, export_id, None)


@router.get("/api/exports/{export_id}/files/{name:path}", summary="Download one file of an export")
def api_download_file(
    export_id: RowId, name: str, session: SessionDep, user: StaffUser
) -> FileResponse:
    return _download(session, export_id, name)
