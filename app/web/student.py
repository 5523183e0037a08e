"""The student for researchers: train on an export, open a teacher-vs-student evaluation, read
its table. Pages and the JSON API, thin doors onto ``app.student``.

- ``/student``: trained models, the training form, the evaluation form, the evaluations;
- ``/student/runs/{id}``: one model (its job's live bar, dev loss per epoch, the model card);
- ``/student/evaluations/{campaign_id}``: the paper's table for an evaluation campaign, with
  a CSV download (the campaign's own page embeds the same table).

Bad requests come back before any work: on the page next to the field (422), from the API as
a 422 naming the field. Forms work without JavaScript (post, then a redirect); htmx polls the
job bars.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.core import triple_counts
from app.core.jobs import job_as_dict
from app.core.models import Campaign, CampaignPurpose, Export, Job, StudentState
from app.corpus.sources import is_student_source
from app.student.evaluation import JOB_KIND as EVALUATION_JOB_KIND
from app.student.evaluation import EvaluationSpec, EvaluationSpecError, queue_evaluation
from app.student.generate import METHODS
from app.student.runs import (
    StudentRequestError,
    get_model,
    list_models,
    model_as_dict,
    queue_training,
)
from app.student.table import evaluation_table, table_csv
from app.web.answers import EvaluationTableOut, StudentModelOut
from app.web.deps import (
    MAX_ROW_ID,
    CSRFChecked,
    NoNulStr,
    PostedForm,
    RowId,
    SessionDep,
    SessionRoute,
    StaffUser,
    csrf_token,
    templates,
)
from app.web.markdown import render_markdown
from app.web.started import JobStarted, StudentRunStarted, accepted

router = APIRouter(tags=["student"], route_class=SessionRoute)


TRAIN_FIELDS = ("export_id", "base_model", "epochs", "learning_rate", "batch_size", "max_steps")
EVAL_FIELDS = ("name", "export_id", "heads", "n", "decoding", "ratings_per_item", "seed")


def _exports(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Export).where(Export.path.is_not(None)).order_by(Export.id.desc()).limit(50)
    ).all()
    return [
        {
            "id": e.id,
            "total": (e.counts or {}).get("total"),
            "critic_version_id": e.critic_version_id,
            # Training reads the student format's files: an export without them is shown,
            # not offered.
            "student_files": "student" in (e.formats or []),
        }
        for e in rows
    ]


def _evaluations(session: Session) -> list[dict[str, Any]]:
    campaigns = session.scalars(
        select(Campaign)
        .where(Campaign.purpose == CampaignPurpose.evaluation)
        .order_by(Campaign.id.desc())
        .limit(50)
    ).all()
    return [
        {
            "id": c.id,
            "name": c.name,
            "state": c.state.value,
            "systems": (c.selection or {}).get("systems") or [],
            "export_id": (c.selection or {}).get("export_id"),
        }
        for c in campaigns
    ]


def _sources(session: Session) -> list[str]:
    return triple_counts.sources(session)


def _page(
    request: Request,
    session: Session,
    user: Any,
    *,
    train_values: dict[str, Any] | None = None,
    train_errors: dict[str, str] | None = None,
    eval_values: dict[str, Any] | None = None,
    eval_errors: dict[str, str] | None = None,
    started: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    models = list_models(session)
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "models": models,
        "ready_models": [m for m in models if m["state"] == StudentState.ready.value],
        "exports": _exports(session),
        "evaluations": _evaluations(session),
        "sources": [s for s in _sources(session) if not is_student_source(s)],
        "methods": METHODS,
        "train": train_values or {"epochs": "", "learning_rate": "", "batch_size": ""},
        "train_errors": train_errors or {},
        "ev": eval_values or {"heads": "100", "n": "1", "ratings_per_item": "3", "teacher": True},
        "eval_errors": eval_errors or {},
        "started": started,
    }
    return templates.TemplateResponse(request, "student.html", context, status_code=status_code)


def _started_evaluation(session: Session, job_id: int | None) -> dict[str, Any] | None:
    """The evaluation job a form post started, for its bar at the top of the page.

    The form answers with a redirect here (``?evaluation_job=N``), so a reload shows the bar
    again instead of offering to post the form a second time; any other job id shows nothing.
    """
    if job_id is None:
        return None
    job = session.get(Job, job_id)
    if job is None or job.kind != EVALUATION_JOB_KIND:
        return None
    return job_as_dict(job)


@router.get("/student", response_class=HTMLResponse)
def student_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    evaluation_job: Annotated[RowId | None, Query()] = None,
) -> HTMLResponse:
    return _page(request, session, user, started=_started_evaluation(session, evaluation_job))


def _number(values: dict[str, Any], name: str, kind: type, errors: dict[str, str]) -> Any:
    text = str(values.get(name) or "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        errors[name] = f"{text!r} is not a{'n integer' if kind is int else ' number'}"
        return None
    if kind is int and not 0 <= value <= MAX_ROW_ID:
        errors[name] = f"must be between 0 and {MAX_ROW_ID}"
        return None
    return value


@router.post("/student/runs", dependencies=[CSRFChecked], response_model=None)
def train_form(
    request: Request, form: PostedForm, session: SessionDep, user: StaffUser
) -> Response:
    values = {name: str(form.get(name) or "").strip() for name in TRAIN_FIELDS}
    errors: dict[str, str] = {}
    export_id = _number(values, "export_id", int, errors)
    if export_id is None and "export_id" not in errors:
        errors["export_id"] = "choose an export"
    numbers = {
        "epochs": _number(values, "epochs", int, errors),
        "learning_rate": _number(values, "learning_rate", float, errors),
        "batch_size": _number(values, "batch_size", int, errors),
        "max_steps": _number(values, "max_steps", int, errors),
    }
    if not errors:
        try:
            started = queue_training(
                export_id, values["base_model"] or None, user_id=user.id, **numbers
            )
        except StudentRequestError as exc:
            errors = exc.errors
        else:
            return RedirectResponse(
                f"/student/runs/{started.model_id}", status_code=status.HTTP_303_SEE_OTHER
            )
    return _page(
        request,
        session,
        user,
        train_values=values,
        train_errors=errors,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.get("/student/runs/{model_id}", response_class=HTMLResponse)
def model_page(
    model_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> HTMLResponse:
    try:
        model = get_model(session, model_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    job = session.get(Job, model.job_id) if model.job_id else None
    card = None
    if model.path:
        from pathlib import Path

        readme = Path(model.path) / "README.md"
        if readme.is_file():
            text = readme.read_text(encoding="utf-8")
            card = render_markdown(text.split("---", 2)[-1] if text.startswith("---") else text)
    return templates.TemplateResponse(
        request,
        "student_model.html",
        {
            "user": user,
            "csrf": csrf_token(request),
            "model": model_as_dict(model, job),
            "job": job_as_dict(job) if job else None,
            "card": card,
        },
    )


def _eval_spec(values: dict[str, Any], form: FormData) -> tuple[EvaluationSpec | None, dict]:
    errors: dict[str, str] = {}
    export_id = _number(values, "export_id", int, errors)
    if export_id is None and "export_id" not in errors:
        errors["export_id"] = "choose an export"
    heads = _number(values, "heads", int, errors)
    n = _number(values, "n", int, errors) or 1
    ratings = _number(values, "ratings_per_item", int, errors) or 3
    seed = _number(values, "seed", int, errors) or 0
    models: list[int] = []
    for text in form.getlist("models"):
        try:
            models.append(int(str(text)))
        except ValueError:
            errors["student_model_ids"] = f"{text!r} is not a model id"
    if errors:
        return None, errors
    spec = EvaluationSpec(
        name=values["name"] or f"student evaluation on export {export_id}",
        export_id=int(export_id),  # type: ignore[arg-type]
        student_model_ids=models,
        heads=heads,
        n=n,
        decoding=values["decoding"] or "greedy",
        teacher=bool(form.get("teacher")),
        teacher_sources=[str(s) for s in form.getlist("teacher_sources")],
        reference_sources=[str(s) for s in form.getlist("reference_sources")],
        ratings_per_item=ratings,
        seed=seed,
    )
    return spec, {}


@router.post("/student/evaluations", dependencies=[CSRFChecked], response_model=None)
def evaluation_form(
    request: Request, form: PostedForm, session: SessionDep, user: StaffUser
) -> Response:
    values: dict[str, Any] = {name: str(form.get(name) or "").strip() for name in EVAL_FIELDS}
    values |= {
        "models": [str(v) for v in form.getlist("models")],
        "teacher": bool(form.get("teacher")),
        "teacher_sources": [str(v) for v in form.getlist("teacher_sources")],
        "reference_sources": [str(v) for v in form.getlist("reference_sources")],
    }
    spec, errors = _eval_spec(values, form)
    if spec is not None:
        try:
            job_id = queue_evaluation(spec, user.id)
        except EvaluationSpecError as exc:
            errors = exc.errors
        else:
            return RedirectResponse(
                f"/student?evaluation_job={job_id}#evaluation-started",
                status_code=status.HTTP_303_SEE_OTHER,
            )
    return _page(
        request,
        session,
        user,
        eval_values=values,
        eval_errors=errors,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _table_or_error(session: Session, campaign_id: int) -> dict[str, Any]:
    try:
        return evaluation_table(session, campaign_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.get("/student/evaluations/{campaign_id}", response_class=HTMLResponse)
def evaluation_page(
    campaign_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> HTMLResponse:
    table = _table_or_error(session, campaign_id)
    return templates.TemplateResponse(
        request,
        "student_evaluation.html",
        {"user": user, "csrf": csrf_token(request), "table": table},
    )


@router.get("/student/evaluations/{campaign_id}/table", response_class=HTMLResponse)
def evaluation_fragment(
    campaign_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> HTMLResponse:
    """The table alone, for the campaign page to load in place."""
    table = _table_or_error(session, campaign_id)
    return templates.TemplateResponse(request, "_student_table.html", {"table": table})


@router.get("/student/evaluations/{campaign_id}/table.csv")
@router.get(
    "/api/student/evaluations/{campaign_id}/table.csv",
    summary="Download an evaluation table as CSV",
)
def evaluation_csv(campaign_id: RowId, session: SessionDep, user: StaffUser) -> Response:
    table = _table_or_error(session, campaign_id)
    return Response(
        table_csv(table),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="evaluation-{campaign_id}.csv"'},
    )


# --- JSON API ---------------------------------------------------------------------------------


class StudentTrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    export_id: RowId
    base_model: NoNulStr | None = Field(
        default=None, max_length=500, description="hub name, folder or .gguf file"
    )
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    warmup_ratio: float | None = None
    weight_decay: float | None = None
    max_length: int | None = None
    max_steps: int | None = None
    seed: int | None = None
    bf16: bool | None = None


class EvaluationIn(BaseModel):
    """The fields of ``app.student.evaluation.EvaluationSpec``."""

    model_config = ConfigDict(extra="forbid")

    name: NoNulStr = Field(max_length=200)
    export_id: RowId
    student_model_ids: list[RowId] = Field(default_factory=list, max_length=20)
    heads: int | None = Field(default=100, ge=1, le=1_000_000)
    relations: list[NoNulStr] = Field(default_factory=list, max_length=100)
    n: int = Field(default=1, ge=1, le=20)
    decoding: NoNulStr = "greedy"
    top_p: float = Field(default=0.9, gt=0, le=1)
    num_beams: int = Field(default=5, ge=1, le=64)
    teacher: bool = True
    teacher_sources: list[NoNulStr] = Field(default_factory=list, max_length=100)
    reference_sources: list[NoNulStr] = Field(default_factory=list, max_length=100)
    ratings_per_item: int = Field(default=3, ge=1, le=50)
    guidelines: NoNulStr = Field(default="", max_length=100_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


def _unprocessable(errors: dict[str, str]) -> JSONResponse:
    detail = [{"loc": ["body", name], "msg": message} for name, message in errors.items()]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post(
    "/api/student/runs",
    summary="Train a student model",
    responses=accepted(StudentRunStarted, "The model and its training job, queued."),
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
)
def api_train(body: StudentTrainIn, user: StaffUser) -> JSONResponse:
    """Check the request (422 naming the field) and queue the training; follow ``status_url``."""
    options = body.model_dump(exclude={"export_id", "base_model"})
    try:
        started = queue_training(body.export_id, body.base_model, user_id=user.id, **options)
    except StudentRequestError as exc:
        return _unprocessable(exc.errors)
    return JSONResponse(
        {
            "model_id": started.model_id,
            "job_id": started.job_id,
            "status_url": f"/api/jobs/{started.job_id}",
            "model_url": f"/api/student/runs/{started.model_id}",
        },
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.get(
    "/api/student/runs", summary="List student models", response_model=list[StudentModelOut]
)
def api_models(session: SessionDep, user: StaffUser) -> list[dict[str, Any]]:
    return list_models(session)


@router.get(
    "/api/student/runs/{model_id}", summary="Get a student model", response_model=StudentModelOut
)
def api_model(model_id: RowId, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    try:
        model = get_model(session, model_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    job = session.get(Job, model.job_id) if model.job_id else None
    return model_as_dict(model, job)


@router.post(
    "/api/student/evaluations",
    summary="Evaluate students against the teacher",
    responses=accepted(JobStarted, "The job that writes the inferences and opens the campaign."),
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
)
def api_evaluate(body: EvaluationIn, user: StaffUser) -> JSONResponse:
    """Check the spec (422 naming the field) and queue the job that generates and opens the
    campaign; the job's result names it (``result.campaign_id``)."""
    try:
        spec = EvaluationSpec.from_dict(body.model_dump())
        job_id = queue_evaluation(spec, user.id)
    except EvaluationSpecError as exc:
        return _unprocessable(exc.errors)
    return JSONResponse(
        {"job_id": job_id, "status_url": f"/api/jobs/{job_id}"},
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.get(
    "/api/student/evaluations/{campaign_id}",
    summary="Get an evaluation table",
    response_model=EvaluationTableOut,
)
def api_table(campaign_id: RowId, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    return _table_or_error(session, campaign_id)
