"""Door: what staff do on the critic page and its JSON API (retrain, score, activate), each a thin
wrapper over app.critic."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from app.core.db import session_scope
from app.core.models import CriticVersion, User
from app.critic import loop, queueing, registry, scoring_jobs
from app.critic.presets import ModelMissing
from app.web.answers import CriticVersionActivated, ScoreAlreadyQueued
from app.web.critic import FLASH_KEY, version_as_dict
from app.web.deps import AdminUser, CSRFChecked, RowId, SessionRoute, templates
from app.web.started import CriticTrainingStarted, JobStarted

router = APIRouter(tags=["critic"], route_class=SessionRoute)


def start_training(
    user: User, reason: str | None = None, *, full: bool = False
) -> loop.TrainingChain:
    """Take the training lock and create the chain's jobs, commit, then queue the chain.
    Raises ``TrainingInProgress`` when a version is already training, ``ModelMissing`` when
    the preset's model is not installed. ``full``: no warm start from the active version."""
    with session_scope(write=True) as session:
        chain = loop.request_training(
            session,
            reason=reason or f"requested by {user.username or user.id}",
            created_by_id=user.id,
            full=full,
        )
    queueing.dispatch_training(chain)
    return chain


def start_scoring(user: User, version_id: int | None = None) -> int | None:
    """A score job for ``version_id`` (default: the active version), queued after commit;
    None when one is already queued or running. LookupError when there is nothing to score
    with (no such version, no active version, or no model files)."""
    with session_scope(write=True) as session:
        if version_id is not None and session.get(CriticVersion, version_id) is None:
            raise UnknownVersion(f"no critic version {version_id}")
        job = scoring_jobs.request_scoring(session, version_id, created_by_id=user.id)
        job_id = job.id if job is not None else None
    if job_id is not None:
        queueing.dispatch_scoring(job_id)
    return job_id


class UnknownVersion(LookupError):
    """No critic version has this id (404, where other LookupErrors are a 409 state)."""


class NoModel(Exception):
    """Activation refused: the version has no model files to score the corpus with."""


def activate_version(user: User, version_id: int) -> tuple[dict[str, Any], int | None]:
    """Activate (or roll back to) ``version_id`` and request a re-score with it, in one
    transaction; the score job is queued after the commit. Returns the version's JSON and the
    score job id (None when one was already queued). Raises LookupError (unknown version),
    ``CriticStateError`` (failed or training) and ``NoModel``."""
    with session_scope(write=True) as session:
        version = registry.activate(session, version_id)
        try:
            job = scoring_jobs.request_scoring(session, version.id, created_by_id=user.id)
        except LookupError as exc:
            # Rolls the activation back with it: an active critic that cannot score would
            # leave the corpus half-filtered.
            raise NoModel(str(exc)) from None
        job_id = job.id if job is not None else None
        data = version_as_dict(version)
    if job_id is not None:
        queueing.dispatch_scoring(job_id)
    return data, job_id


def _answer(
    request: Request,
    kind: str,
    text: str,
    back: str = "/critic",
    *,
    jobs_changed: bool = False,
    versions_changed: bool = False,
) -> Response:
    """htmx: a message fragment, with events that make the jobs panel (and the versions, for
    a new training) refresh at once; a plain form: the message is kept for the next page
    view and the browser goes back to the page."""
    if request.headers.get("hx-request"):
        response = templates.TemplateResponse(
            request, "_critic_message.html", {"flash": {"kind": kind, "text": text}}
        )
        events = [
            name
            for name, wanted in (
                ("critic-jobs-changed", jobs_changed),
                ("critic-changed", versions_changed),
            )
            if wanted
        ]
        if events:
            response.headers["HX-Trigger"] = ", ".join(events)
        return response
    request.session[FLASH_KEY] = {"kind": kind, "text": text}
    return RedirectResponse(back, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/critic/train", dependencies=[CSRFChecked], response_model=None)
def retrain_from_page(
    request: Request, admin: AdminUser, full: Annotated[str | None, Form()] = None
) -> Response:
    """The "Retrain now" button (with its "full retrain" box). A training already running, or
    a model that is not installed, is a message, not an error page."""
    try:
        chain = start_training(admin, full=bool(full))
    except (loop.TrainingInProgress, ModelMissing) as exc:
        return _answer(request, "error", f"Not started: {exc}")
    return _answer(
        request,
        "ok",
        f"Started training version {chain.version_id}: jobs #{chain.train_job_id} (train), "
        f"#{chain.evaluate_job_id} (evaluate) and #{chain.score_job_id} (score); their "
        "progress is under Jobs.",
        jobs_changed=True,
        versions_changed=True,
    )


@router.post("/critic/score", dependencies=[CSRFChecked], response_model=None)
def score_from_page(
    request: Request, admin: AdminUser, version: Annotated[str | None, Form()] = None
) -> Response:
    """The "Score unscored triples" button: the active version, or the form's ``version``."""
    version_id = int(version) if version and version.isdigit() else None
    back = f"/critic?version={version_id}" if version_id else "/critic"
    try:
        job_id = start_scoring(admin, version_id)
    except LookupError as exc:
        return _answer(request, "error", f"Not started: {exc}.", back)
    if job_id is None:
        return _answer(request, "ok", "A score job for this version is already queued.", back)
    return _answer(
        request,
        "ok",
        f"Started score job #{job_id}; its progress is under Jobs.",
        back,
        jobs_changed=True,
    )


@router.post(
    "/critic/versions/{version_id}/activate", dependencies=[CSRFChecked], response_model=None
)
def activate_from_page(version_id: RowId, request: Request, admin: AdminUser) -> Response:
    """The "Activate" / "Roll back to this" buttons: a plain form, back to the page with a
    message (the whole page changes, so there is nothing smaller to swap)."""
    back = f"/critic?version={version_id}"
    try:
        _data, job_id = activate_version(admin, version_id)
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no critic version {version_id}") from None
    except (registry.CriticStateError, NoModel) as exc:
        return _answer(request, "error", f"Not activated: {exc}.", back)
    rescore = f" Score job #{job_id} re-scores the corpus." if job_id else ""
    return _answer(request, "ok", f"Version {version_id} is now active.{rescore}", back)


class CriticTrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None
    full: bool = False  # retrain from the base model instead of warm-starting


@router.post(
    "/api/critic/train",
    summary="Train a critic version",
    response_description="The version and its three jobs, queued.",
    dependencies=[CSRFChecked],
    status_code=status.HTTP_202_ACCEPTED,
)
def api_train(admin: AdminUser, body: CriticTrainIn | None = None) -> CriticTrainingStarted:
    """Start a training chain (train → evaluate → score); 409 while a version is training."""
    try:
        chain = start_training(admin, body.reason if body else None, full=bool(body and body.full))
    except loop.TrainingInProgress as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ModelMissing as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    jobs = {
        "train": chain.train_job_id,
        "evaluate": chain.evaluate_job_id,
        "score": chain.score_job_id,
    }
    return CriticTrainingStarted(
        version_id=chain.version_id,
        jobs=jobs,
        status_urls={name: f"/api/jobs/{job_id}" for name, job_id in jobs.items()},
    )


class ScoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version_id: int | None = None


@router.post(
    "/api/critic/score",
    summary="Score the corpus",
    responses={
        200: {"model": ScoreAlreadyQueued, "description": "A score job is already queued."},
        202: {"model": JobStarted, "description": "The score job, queued."},
    },
    dependencies=[CSRFChecked],
    response_model=None,
)
def api_score(admin: AdminUser, body: ScoreIn | None = None) -> JSONResponse:
    """Score what a version (default: the active one) has not scored: 202 with the job, or
    200 with ``job_id: null`` when a score job for it is already queued or running."""
    version_id = body.version_id if body else None
    try:
        job_id = start_scoring(admin, version_id)
    except UnknownVersion as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except LookupError as exc:  # no active version, or no model files
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if job_id is None:
        return JSONResponse({"job_id": None, "detail": "a score job is already queued"})
    return JSONResponse(
        {"job_id": job_id, "status_url": f"/api/jobs/{job_id}"},
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.post(
    "/api/critic/versions/{version_id}/activate",
    summary="Activate a critic version",
    dependencies=[CSRFChecked],
    response_model=CriticVersionActivated,
)
def api_activate(version_id: RowId, admin: AdminUser) -> dict[str, Any]:
    """Activate or roll back to a version; a re-score with it is queued (``score_job_id``,
    null when one was already queued). 404 for an unknown version, 409 for a failed or
    training one."""
    try:
        data, job_id = activate_version(admin, version_id)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except (registry.CriticStateError, NoModel) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return data | {"score_job_id": job_id}
