"""The teacher for researchers: configure and start a run, watch it, read a sample of its output
and its filter counts, and open a campaign on its triples in one click; and the JSON API.

Thin doors onto ``app.teacher.runs``: a form or a JSON body becomes the run's parameters,
``create_run`` checks them before any work (422 naming each bad field) and the job goes to the
workers. An API key typed for one run travels with the task, never into the database.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from app.annotation.campaigns import CampaignSpec, CampaignSpecError, create_campaign
from app.core import triple_counts
from app.core.db import session_scope
from app.core.durations import duration_words
from app.core.job_list import timing
from app.core.jobs import job_as_dict
from app.core.models import CampaignPurpose, Job, TeacherRun, User
from app.corpus.relations import ATOMIC10X_RELATIONS, allowed_relations
from app.student.table import ratings_by_source, source_ratings
from app.teacher.estimate import RunPlan, plan_run
from app.teacher.params import TeacherParamsError
from app.teacher.planning import create_run, source_name
from app.teacher.postprocess import FILTERS
from app.teacher.prompts import DEFAULT_EVENTS, default_templates, read_example_pool
from app.teacher.runs import dispatch_run, resume_run, run_triples_count, sample_output
from app.web.answers import (
    TeacherCampaignOpened,
    TeacherRunDetailOut,
    TeacherRunOut,
    TeacherRunPlanOut,
)
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
from app.web.started import TeacherRunResumed, TeacherRunStarted, accepted
from app.web.teacher_body import TeacherRunIn

router = APIRouter(tags=["teacher"], route_class=SessionRoute)

FILTER_WORDS = {
    "empty": "empty",
    "not_personx": "not starting with PersonX",
    "too_short": "too short",
    "too_long": "too long",
    "charset": "odd characters",
    "duplicate_in_run": "duplicate within the run",
    "duplicate_in_corpus": "already in the corpus",
    "low_logprob": "below the log-probability cut",
}


def _start(run_id: int, job_id: int, api_key: str | None) -> None:
    dispatch_run(job_id, api_key)


def run_view(session: Session, run: TeacherRun, triples: int | None = None) -> dict[str, Any]:
    """A run as the page and the API show it. ``triples``: its count, where a list of runs
    has read them all at once."""
    job = session.get(Job, run.job_id) if run.job_id else None
    counts = dict(run.counts or {})
    state = run.state.value
    if job is not None and job.state.finished and state in ("queued", "running"):
        state = "failed" if job.state.value != "succeeded" else state  # ended by another door
    return {
        "id": run.id,
        "name": (run.params or {}).get("name"),
        "kind": run.kind,
        "state": state,
        "backend": run.backend,
        "model": run.model,
        "source": source_name(run.id),
        "params": run.params,
        "templates": run.templates,
        "counts": {p: counts[p] for p in ("events", "inferences") if p in counts},
        "http": counts.get("http"),
        "phase": counts.get("phase"),
        "triples": run_triples_count(session, run.id) if triples is None else triples,
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "job": job_as_dict(job) if job else None,
        "timing": timing(job) if job else None,
    }


def _run_views(session: Session, runs: list[TeacherRun]) -> list[dict[str, Any]]:
    """Several runs, their triple counts read in one query."""
    kept = triple_counts.by_source(session)
    return [run_view(session, r, kept.get(source_name(r.id), 0)) for r in runs]


# --- the page -------------------------------------------------------------------------------


def _form_defaults() -> dict[str, Any]:
    return {
        "kind": "events",
        "backend": "local",
        "model": "",
        "base_url": "",
        "mode": "completions",
        "api_key_env": "OPENAI_API_KEY",
        "concurrency": "8",
        "timeout": "60",
        "max_retries": "5",
        "batch_size": "",
        "prompts": "4",
        "n": "5",
        "examples": "10",
        "inference_n": "10",
        "inference_examples": "5",
        "relations": [],
        "heads_kind": "source",
        "heads_value": "",
        "heads_text": "",
        "heads_limit": "",
        "top_p": "0.9",
        "temperature": "1.0",
        "max_tokens": "16",
        "inference_top_p": "0.5",
        "keep_top": "1",
        "seed": "0",
        "seed_events": "\n".join(DEFAULT_EVENTS),
        "name": "",
        "templates": default_templates(list(ATOMIC10X_RELATIONS)),
    }


def _page(
    request: Request,
    session: Session,
    user: Any,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    plan: RunPlan | None = None,
) -> HTMLResponse:
    runs = list(session.scalars(select(TeacherRun).order_by(TeacherRun.id.desc()).limit(30)))
    sources = triple_counts.sources(session)
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "values": values or _form_defaults(),
        "errors": errors or {},
        "runs": _run_views(session, runs),
        "rated": ratings_by_source(session, among=[source_name(r.id) for r in runs]),
        "relations": list(ATOMIC10X_RELATIONS),
        "sources": sources,
        "filters": FILTERS,
        "filter_words": FILTER_WORDS,
        "plan": plan_view(plan) if plan else None,
    }
    return templates.TemplateResponse(request, "teacher.html", context, status_code=status_code)


@router.get("/teacher", response_class=HTMLResponse)
def teacher_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    events_of_run: Annotated[RowId | None, Query()] = None,
) -> HTMLResponse:
    """The form; ``?events_of_run=N`` (the "Write inferences for these events" link of an
    events-only run) fills it in for inferences of run N's events, every relation ticked."""
    values = None
    if events_of_run is not None:
        run = session.get(TeacherRun, events_of_run)
        if run is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no teacher run {events_of_run}")
        values = _follow_up_values(run)
    return _page(request, session, user, values)


def _follow_up_values(run: TeacherRun) -> dict[str, Any]:
    """The form for inferences of ``run``'s events with the model, server and sampling that
    wrote them (an API key typed for that run was never stored: it is asked for again)."""
    params = dict(run.params or {})
    backend = dict(params.get("backend") or {})
    inferences = dict(params.get("inferences") or {})
    values = _form_defaults()
    text = {key: "" if value is None else str(value) for key, value in backend.items()}
    values.update(
        kind="inferences",
        heads_kind="run",
        heads_value=str(run.id),
        relations=list(ATOMIC10X_RELATIONS),
        backend=text.get("type") or values["backend"],
        **{
            key: text[key]
            for key in ("model", "base_url", "mode", "api_key_env", "concurrency", "timeout")
            if key in text
        },
        max_retries=text.get("max_retries", values["max_retries"]),
        batch_size=text.get("batch_size", ""),
        inference_n=str(inferences.get("n", values["inference_n"])),
        inference_top_p=str(inferences.get("top_p", values["inference_top_p"])),
        temperature=str(inferences.get("temperature", values["temperature"])),
        max_tokens=str(inferences.get("max_tokens", values["max_tokens"])),
        inference_examples=str(params.get("inference_examples", values["inference_examples"])),
        seed=str(params.get("seed", values["seed"])),
    )
    for key, edited in (params.get("templates") or {}).items():
        if key in values["templates"]:
            values["templates"][key] = {**values["templates"][key], **edited}
    return values


def _number(values: dict[str, Any], key: str) -> Any:
    text = str(values.get(key) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # the check names it


def _form_params(form: FormData) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(form values to show again, run parameters, typed API key)."""
    values = _form_defaults()
    for key in values:
        if key == "relations":
            values[key] = [str(v) for v in form.getlist("relations")]
        elif key == "templates":
            continue
        elif key in form:
            values[key] = str(form.get(key) or "")
    templates_given: dict[str, dict[str, str]] = {}
    for key, template in values["templates"].items():
        edited = {
            part: str(form.get(f"template.{key}.{part}", template[part]))
            for part in ("instruction", "example", "query")
        }
        values["templates"][key] = {**template, **edited}
        if any(edited[part] != template[part] for part in edited):
            templates_given[key] = edited
    backend: dict[str, Any] = {"type": values["backend"]}
    if values["model"].strip():
        backend["model"] = values["model"].strip()
    if values["backend"] == "openai":
        backend.update(
            base_url=values["base_url"].strip(),
            mode=values["mode"],
            api_key_env=values["api_key_env"].strip() or None,
            concurrency=_number(values, "concurrency"),
            timeout=_number(values, "timeout"),
            max_retries=_number(values, "max_retries"),
        )
    if _number(values, "batch_size") is not None:
        backend["batch_size"] = _number(values, "batch_size")
    backend = {k: v for k, v in backend.items() if v is not None}
    pool: dict[str, Any] = {
        "events": [line.strip() for line in values["seed_events"].splitlines() if line.strip()]
    }
    upload = form.get("pool_file")
    if isinstance(upload, UploadFile) and upload.filename:
        import tempfile
        from pathlib import Path

        from app.core.config import get_settings

        data = upload.file.read()
        with tempfile.NamedTemporaryFile("wb", suffix=".tsv", delete=False) as handle:
            handle.write(data)
            path = Path(handle.name)
        try:
            loaded = read_example_pool(path, allowed_relations(get_settings()))
        except ValueError as exc:
            raise TeacherParamsError(
                {"pool": str(exc).replace(str(path), upload.filename)}
            ) from None
        finally:
            path.unlink(missing_ok=True)
        pool["inferences"] = {r: [list(p) for p in pairs] for r, pairs in loaded.items()}
    params: dict[str, Any] = {
        "kind": values["kind"],
        "name": values["name"] or None,
        "backend": backend,
        "relations": values["relations"],
        "seed": _number(values, "seed") or 0,
        "pool": pool,
        "templates": templates_given,
        "events": {
            k: v
            for k, v in {
                "n": _number(values, "n"),
                "top_p": _number(values, "top_p"),
                "temperature": _number(values, "temperature"),
                "max_tokens": _number(values, "max_tokens"),
            }.items()
            if v is not None
        },
        "inferences": {
            k: v
            for k, v in {
                "n": _number(values, "inference_n"),
                "top_p": _number(values, "inference_top_p"),
                "temperature": _number(values, "temperature"),
                "max_tokens": _number(values, "max_tokens"),
            }.items()
            if v is not None
        },
        "filters": {"keep_top": _number(values, "keep_top")} if values["keep_top"] else {},
    }
    if values["kind"] == "events":
        params["prompts"] = _number(values, "prompts")
        params["examples"] = _number(values, "examples")
    else:
        params["inference_examples"] = _number(values, "inference_examples")
        kind = values["heads_kind"]
        heads: dict[str, Any] = {"kind": kind, "limit": _number(values, "heads_limit")}
        if kind == "file":
            heads["heads"] = [x.strip() for x in values["heads_text"].splitlines() if x.strip()]
        else:
            heads["value"] = (
                _number(values, "heads_value")
                if kind != "source"
                else (values["heads_value"].strip())
            )
        params["heads"] = heads
    api_key = str(form.get("api_key") or "").strip() or None
    return values, params, api_key


@router.post("/teacher/runs", dependencies=[CSRFChecked], response_model=None)
def start_from_form(request: Request, user: StaffUser, form: PostedForm) -> Response:
    """Start a run; its page, or the form again with every message next to its field. A plain
    function: its database writes and the broker's publish run in the thread pool, not on the
    event loop that serves every other request."""
    values = _form_defaults()
    try:
        values, params, api_key = _form_params(form)
        run_id, job_id = create_run(params, created_by_id=user.id)
    except TeacherParamsError as exc:
        with session_scope() as session:
            return _page(request, session, user, values, exc.errors, status_code=422)
    _start(run_id, job_id, api_key)
    return RedirectResponse(f"/teacher/runs/{run_id}", status_code=status.HTTP_303_SEE_OTHER)


def plan_view(plan: RunPlan) -> dict[str, Any]:
    """The plan with its estimated time in words, as the page shows it."""
    seconds = plan.estimated_seconds
    return {
        **plan.as_dict(),
        "duration": duration_words(seconds) if seconds is not None else None,
    }


@router.post("/teacher/plan", dependencies=[CSRFChecked], response_model=None)
def plan_from_form(request: Request, user: StaffUser, form: PostedForm) -> Response:
    """What the form's run would ask of the model. htmx (on every change of the form): the
    panel beside the start button; without JavaScript (the "Check the plan" button): the page
    again, the form as filled in and the plan under it."""
    values = _form_defaults()
    plan = None
    errors: dict[str, str] = {}
    try:
        values, params, _api_key = _form_params(form)
        plan = plan_run(params)
    except TeacherParamsError as exc:
        errors = exc.errors
    if request.headers.get("hx-request"):
        context = {"plan": plan_view(plan) if plan else None, "plan_errors": errors}
        return templates.TemplateResponse(request, "_teacher_plan.html", context)
    with session_scope() as session:
        return _page(
            request,
            session,
            user,
            values,
            errors,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT if errors else status.HTTP_200_OK,
            plan=plan,
        )


def _run_or_404(session: Session, run_id: int) -> TeacherRun:
    run = session.get(TeacherRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no teacher run {run_id}")
    return run


def _run_context(request: Request, session: Session, user: Any, run_id: int) -> dict[str, Any]:
    run = _run_or_404(session, run_id)
    sample = sample_output(session, run_id, limit=25)
    view = run_view(session, run)
    return {
        "user": user,
        "csrf": csrf_token(request),
        "run": view,
        "events": sample["events"],
        "triples": sample["triples"],
        "filters": FILTERS,
        "filter_words": FILTER_WORDS,
        "job": view["job"],
        # Read only once the run has ended: the panel is re-fetched every 2 s until then.
        "references": (
            reference_sources(session, run_id)
            if run.state.value not in ("queued", "running")
            else []
        ),
    }


@router.get("/teacher/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: RowId, request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    context = _run_context(request, session, user, run_id)
    # Not in the live panel's context: the panel is re-fetched while the run works.
    context["ratings"] = source_ratings(session, source_name(run_id))
    return templates.TemplateResponse(request, "teacher_run.html", context)


@router.get("/teacher/runs/{run_id}/panel", response_class=HTMLResponse)
def run_panel(
    run_id: RowId, request: Request, session: SessionDep, user: StaffUser
) -> HTMLResponse:
    """The live part of a run's page (counts and sample), re-fetched while the run works."""
    context = _run_context(request, session, user, run_id)
    return templates.TemplateResponse(request, "_teacher_panel.html", context)


RATE_PER_SOURCE = 200  # items a run's campaign draws from the run (and from a reference)


class RateRunIn(BaseModel):
    """``POST /api/teacher/runs/{id}/campaign``: optional; without a body the campaign rates
    the run alone, as the run page's button does with no reference picked."""

    model_config = ConfigDict(extra="forbid")
    compare_with: str | None = Field(
        None,
        description="A corpus source to rate beside the run (e.g. `atomic2020`): the campaign "
        "draws an equal share from each, of the relations the run wrote, and its table "
        "compares them with a z-test.",
    )
    per_source: int = Field(
        RATE_PER_SOURCE,
        ge=1,
        le=10_000,
        description="Items drawn from the run at most; a reference gives as many (or all it has).",
    )


def _open_campaign(
    session: Session,
    run_id: int,
    user: User,
    compare_with: str | None = None,
    per_source: int = RATE_PER_SOURCE,
) -> int:
    """An evaluation campaign on (a sample of up to ``per_source`` of) the run's triples, and
    as many of ``compare_with``'s of the same relations beside them when a reference is named;
    its id. 409 when the run has no triples yet, 422 for a reference that is the run itself or
    has none of the run's relations."""
    run = _run_or_404(session, run_id)
    count = run_triples_count(session, run_id)
    if not count:
        raise HTTPException(status.HTTP_409_CONFLICT, f"teacher run {run_id} has no triples yet")
    own = source_name(run_id)
    name = (run.params or {}).get("name") or f"teacher run #{run_id}"
    sources, sample, relations = [own], min(count, per_source), []
    if compare_with:
        unprocessable = status.HTTP_422_UNPROCESSABLE_CONTENT
        if compare_with == own:
            raise HTTPException(unprocessable, "compare_with: pick a source other than the run's")
        # Like for like: the reference's triples of the relations the run wrote.
        kept = triple_counts.counts(session)
        relations = sorted(r for (s, r) in kept if s == own)
        reference = triple_counts.per_source(session, relations, [compare_with], kept).get(
            compare_with, 0
        )
        if not reference:
            raise HTTPException(
                unprocessable,
                f"compare_with: no triples from {compare_with!r} of the run's relations "
                f"({', '.join(relations)})",
            )
        sources.append(compare_with)
        sample += min(reference, sample)  # no more of the reference than of the run
        name = f"{name} against {compare_with}"
    spec = CampaignSpec(
        name=f"Rate {name}",
        purpose=CampaignPurpose.evaluation,  # several sources: an equal share each
        sources=sources,
        relations=relations,
        sample_size=sample,
    )
    try:
        campaign = create_campaign(session, spec, user.id)
    except CampaignSpecError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "; ".join(exc.errors.values())) from None
    session.commit()
    return campaign.id


def reference_sources(session: Session, run_id: int) -> list[str]:
    """The corpus sources a run can be rated against (every one but its own)."""
    own = source_name(run_id)
    return [source for source in triple_counts.sources(session) if source != own]


def _resume(run_id: int) -> int:
    """A new job for an unfinished run, sent to the workers; its id. 404: no such run;
    409: the run has finished, or its job is still queued or running."""
    try:
        job_id = resume_run(run_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    _start(run_id, job_id, None)
    return job_id


@router.post("/teacher/runs/{run_id}/campaign", dependencies=[CSRFChecked], response_model=None)
def campaign_from_run(
    run_id: RowId,
    session: SessionDep,
    user: StaffUser,
    compare_with: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """One click: an evaluation campaign on (a sample of up to 200 of) the run's triples, and
    as many of the reference source picked beside the button."""
    campaign_id = _open_campaign(session, run_id, user, compare_with or None)
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/teacher/runs/{run_id}/resume", dependencies=[CSRFChecked], response_model=None)
def resume_from_page(run_id: RowId, user: StaffUser) -> Response:
    _resume(run_id)
    return RedirectResponse(f"/teacher/runs/{run_id}", status_code=status.HTTP_303_SEE_OTHER)


# --- the JSON API ---------------------------------------------------------------------------


def _unprocessable(errors: dict[str, str]) -> JSONResponse:
    detail = [
        {"loc": ["body", *name.split(".")], "msg": message, "type": "value_error"}
        for name, message in errors.items()
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post(
    "/api/teacher/runs",
    summary="Start a teacher run",
    responses=accepted(TeacherRunStarted, "The run and its job, queued."),
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
)
def api_create(user: StaffUser, run: TeacherRunIn) -> JSONResponse:
    """Start a run from its parameters (the JSON a run's ``params`` holds; ``api_key`` is
    used for this run only). 422 names each bad parameter, before any work."""
    body = run.as_params()
    api_key = body.pop("api_key", None)
    try:
        run_id, job_id = create_run(body, created_by_id=user.id)
    except TeacherParamsError as exc:
        return _unprocessable(exc.errors)
    _start(run_id, job_id, api_key if isinstance(api_key, str) else None)
    return JSONResponse(
        {
            "run_id": run_id,
            "job_id": job_id,
            "source": source_name(run_id),
            "status_url": f"/api/jobs/{job_id}",
            "run_url": f"/api/teacher/runs/{run_id}",
            "page_url": f"/teacher/runs/{run_id}",
        },
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.post(
    "/api/teacher/runs/{run_id}/resume",
    summary="Resume a teacher run",
    response_description="A new job for the run, queued.",
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
)
def api_resume(run_id: RowId, user: StaffUser) -> TeacherRunResumed:
    """Finish an interrupted or failed run (its finished chunks are kept and skipped), as
    `skd generate resume` and the run page's Resume button do."""
    job_id = _resume(run_id)
    return TeacherRunResumed(run_id=run_id, job_id=job_id, status_url=f"/api/jobs/{job_id}")


@router.post(
    "/api/teacher/runs/{run_id}/campaign",
    summary="Rate a teacher run",
    dependencies=[CSRFChecked],
    status_code=status.HTTP_201_CREATED,
    response_model=TeacherCampaignOpened,
)
def api_campaign(
    run_id: RowId, session: SessionDep, user: StaffUser, body: RateRunIn | None = None
) -> dict[str, Any]:
    """Open an evaluation campaign on (a sample of up to 200 of) the run's triples, as the
    run page's button does; with ``compare_with``, as many of that source's beside them."""
    body = body or RateRunIn()
    campaign_id = _open_campaign(session, run_id, user, body.compare_with, body.per_source)
    return {"campaign_id": campaign_id, "campaign_url": f"/api/campaigns/{campaign_id}"}


@router.post(
    "/api/teacher/plan",
    summary="Plan a teacher run",
    responses={200: {"model": TeacherRunPlanOut, "description": "The plan; nothing starts."}},
    dependencies=[CSRFChecked],
    response_model=None,
)
def api_plan(user: StaffUser, run: TeacherRunIn) -> Response:
    """What a run with these parameters (the body of ``POST /api/teacher/runs``) would ask:
    prompts, generations and the most new tokens per phase, and the time it should take at
    the pace of the newest finished run of the same model. Nothing is started or written."""
    body = run.as_params()
    body.pop("api_key", None)
    try:
        plan = plan_run(body)
    except TeacherParamsError as exc:
        return _unprocessable(exc.errors)
    return JSONResponse(plan.as_dict())


@router.get("/api/teacher/runs", summary="List teacher runs", response_model=list[TeacherRunOut])
def api_list(session: SessionDep, user: StaffUser) -> list[dict[str, Any]]:
    runs = list(session.scalars(select(TeacherRun).order_by(TeacherRun.id.desc()).limit(100)))
    return _run_views(session, runs)


@router.get(
    "/api/teacher/runs/{run_id}", summary="Get a teacher run", response_model=TeacherRunDetailOut
)
def api_get(run_id: RowId, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    run = _run_or_404(session, run_id)
    sample = sample_output(session, run_id, limit=20)
    return {
        **run_view(session, run),
        "ratings": source_ratings(session, source_name(run_id)),
        "sample": {
            "events": [{"text": e.text, "logprob": e.logprob} for e in sample["events"]],
            "triples": [
                {
                    "id": t.id,
                    "head": t.head,
                    "relation": t.relation,
                    "tail": t.tail,
                    "logprob": (t.meta or {}).get("logprob"),
                }  # fmt: skip
                for t in sample["triples"]
            ],
        },
    }
