"""The critic page and its JSON API: versions with their held-out quality, the PR curve and the
corpus score histogram, a threshold preview, live critic jobs, and the admin's retrain, score
and activate (which is also the rollback: activating an earlier version).

Thin doors onto ``app.critic``: training, scoring and activation go through ``loop`` and
``registry`` in one write transaction, and the Celery work is queued only after that commit
(``app.critic.queueing.dispatch_*``), so a worker never looks for rows it cannot see yet.
Staff may look; only admins may change anything. The page's forms post without JavaScript
(and come back with a flash message); with htmx the retrain and score buttons answer with a
message fragment and an ``HX-Trigger`` that makes the jobs panel fetch the new jobs at once.

Work is sent by task name through ``app.core.queue``; no door imports ``workers``.
(``app.critic.loop`` and ``score`` load torch only inside the functions that run a model, so
importing them here is cheap.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.jobs import job_as_dict
from app.core.models import CriticState, CriticVersion, Job, Role, User
from app.critic import filtering, loop
from app.critic.describe import label_snapshot_sentence, model_display_name
from app.critic.histogram import Histogram, adaptive_histogram
from app.critic.score import score_histogram, unscored_count
from app.web.answers import CriticVersionDetailOut, CriticVersionOut, FilterPreviewOut
from app.web.critic_plots import histogram_plot, pr_plot
from app.web.deps import RowId, SessionDep, SessionRoute, StaffUser, csrf_token, templates

router = APIRouter(tags=["critic"], route_class=SessionRoute)

Rule = Literal["recall", "precision", "kept"]
RULES: dict[str, str] = {
    "recall": "target recall (rec_X)",
    "precision": "target precision",
    "kept": "fraction of the corpus kept",
    "score": "a score threshold (or click the PR curve)",
}
# The versions table compares versions at one operating point: the paper's rec_0.8 filter.
TABLE_RECALL = 0.8
HISTOGRAM_BINS = 20
RECENT_JOBS = 6
FLASH_KEY = "critic_flash"


# --- reading versions ------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """NaN and infinities become None, recursively: a metric can be NaN (e.g. ROC-AUC with one
    class), and JSON has no NaN (Starlette refuses to encode it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _at_recall(points: list[dict[str, Any]] | None, target: float) -> dict[str, Any] | None:
    for point in points or []:
        level = _number(point.get("target_recall"))
        if level is not None and abs(level - target) < 1e-9:
            return point
    return None


def version_as_dict(version: CriticVersion, *, curve: bool = True) -> dict[str, Any]:
    """The JSON form of a version; the list leaves out the PR curve (``curve=False``)."""
    metrics = _finite(dict(version.metrics or {}))
    if not curve:
        metrics.pop("pr_curve", None)
    return {
        "id": version.id,
        "state": version.state.value,
        "base_model": version.base_model,
        "path": version.path,
        "threshold": _number(version.threshold),
        "error": version.error,
        "job_id": version.job_id,
        "created_at": version.created_at.isoformat(),
        "activated_at": version.activated_at.isoformat() if version.activated_at else None,
        "hyperparameters": version.hyperparameters or {},
        "label_snapshot": version.label_snapshot or {},
        "metrics": metrics,
        "page_url": f"/critic?version={version.id}",
    }


@dataclass
class VersionRow:
    """One line of the versions table: the numbers it shows, each None when missing."""

    version: CriticVersion
    roc_auc: float | None
    average_precision: float | None
    at_recall: dict[str, Any] | None
    estimate: dict[str, Any] | None
    estimate_recall: float | None
    train: int | None
    held_out: int | None
    # 95% bootstrap intervals of the held-out figures ({} for versions trained before them).
    intervals: dict[str, Any] = field(default_factory=dict)

    @property
    def at_recall_interval(self) -> list[float] | None:
        """The interval of the precision at the table's recall level."""
        return self.intervals.get(f"precision_at_recall_{round(TABLE_RECALL * 100)}")

    @property
    def can_activate(self) -> bool:
        return self.version.state in (CriticState.ready, CriticState.retired)

    @property
    def short_model(self) -> str:
        """The model's name, not its folder (``app.critic.describe``)."""
        return model_display_name(self.version.base_model)

    @property
    def labels_sentence(self) -> str:
        return label_snapshot_sentence(self.version.label_snapshot)


def version_row(version: CriticVersion) -> VersionRow:
    metrics = version.metrics or {}
    snapshot = version.label_snapshot or {}
    calibration = metrics.get("calibration") or {}
    target = _number((version.hyperparameters or {}).get("target_recall"))
    # The estimate at the version's own threshold (set at its target recall); an older record
    # without it falls back to the table's rec_0.8 point.
    estimate = calibration.get("at_threshold")
    if not estimate or _number(estimate.get("precision")) is None:
        estimate = _at_recall(calibration.get("at_recall"), TABLE_RECALL)
        target = TABLE_RECALL if estimate else None
    if estimate and _number(estimate.get("precision")) is None:
        estimate = None
    return VersionRow(
        version=version,
        roc_auc=_number(metrics.get("roc_auc")),
        average_precision=_number(metrics.get("average_precision")),
        at_recall=_at_recall(metrics.get("precision_at_recall"), TABLE_RECALL),
        estimate=estimate,
        estimate_recall=target if estimate else None,
        train=snapshot.get("train"),
        held_out=snapshot.get("held_out"),
        intervals=metrics.get("intervals") or {},
    )


@dataclass
class CalibrationRow:
    """One rec_X operating point: held-out numbers and the calibration-sample estimate."""

    target_recall: float
    threshold: float | None
    precision: float | None
    recall: float | None
    kept_fraction: float | None
    sample_kept: int | None
    sample_acceptable: int | None
    estimate: float | None
    low: float | None
    high: float | None
    chosen: bool


def calibration_rows(version: CriticVersion) -> list[CalibrationRow]:
    metrics = version.metrics or {}
    held_out = metrics.get("precision_at_recall") or []
    estimates = (metrics.get("calibration") or {}).get("at_recall") or []
    levels = sorted(
        {
            level
            for point in [*held_out, *estimates]
            if (level := _number(point.get("target_recall"))) is not None
        }
    )
    rows = []
    for level in levels:
        point = _at_recall(held_out, level) or {}
        estimate = _at_recall(estimates, level) or {}
        threshold = _number(point.get("threshold", estimate.get("threshold")))
        rows.append(
            CalibrationRow(
                target_recall=level,
                threshold=threshold,
                precision=_number(point.get("precision")),
                recall=_number(point.get("recall")),
                kept_fraction=_number(point.get("kept_fraction")),
                sample_kept=estimate.get("sample_kept"),
                sample_acceptable=estimate.get("sample_acceptable"),
                estimate=_number(estimate.get("precision")),
                low=_number(estimate.get("low")),
                high=_number(estimate.get("high")),
                chosen=threshold is not None
                and version.threshold is not None
                and abs(threshold - version.threshold) < 1e-9,
            )
        )
    return rows


def _all_versions(session: Session) -> list[CriticVersion]:
    return list(session.scalars(select(CriticVersion).order_by(CriticVersion.id.desc())))


def _version_or_404(session: Session, version_id: int) -> CriticVersion:
    version = session.get(CriticVersion, version_id)
    if version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no critic version {version_id}")
    return version


def default_version(versions: list[CriticVersion]) -> CriticVersion | None:
    """What the page shows first: the active version, else the newest ready one, else the
    newest of any state (so a failed first training shows its error)."""
    for state in (CriticState.active, CriticState.ready):
        for version in versions:  # newest first
            if version.state == state:
                return version
    return versions[0] if versions else None


def _pick(
    session: Session, versions: list[CriticVersion], version_id: int | None
) -> CriticVersion | None:
    if version_id is not None:
        return _version_or_404(session, version_id)
    return default_version(versions)


def corpus_scores(session: Session, version: CriticVersion) -> tuple[Histogram, int | None]:
    """The version's score histogram and how many triples it has not scored (None for a
    version with no model, which cannot score)."""
    histogram = adaptive_histogram(session, version.id, bins=HISTOGRAM_BINS)
    unscored = unscored_count(session, version.id) if version.path else None
    return histogram, unscored


def recent_critic_jobs(session: Session, limit: int = RECENT_JOBS) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(Job.kind.in_((loop.TRAIN, loop.EVALUATE, loop.SCORE)))
            .order_by(Job.id.desc())
            .limit(limit)
        )
    )


# --- threshold preview -----------------------------------------------------------------------


def run_preview(
    session: Session, version_id: int, rule: str, value: float
) -> tuple[float, filtering.FilterPreview]:
    """``filtering.choose_threshold`` then ``filtering.preview``: the one path of the page's
    fragment and the API. Raises ValueError (unreachable target, bad value) and LookupError."""
    if rule not in RULES:
        raise ValueError(f"rule: {rule!r} is not one of {', '.join(RULES)}")
    if rule == "score":  # a threshold picked on the PR curve, or typed
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"value: a score threshold is in [0, 1], not {value:g}")
        return value, filtering.preview(session, version_id, value)
    threshold = filtering.choose_threshold(session, version_id, rule, value)  # type: ignore[arg-type]
    return threshold, filtering.preview(session, version_id, threshold)


def preview_context(
    session: Session, version: CriticVersion | None, rule: str | None, value: str | None
) -> dict[str, Any]:
    """What templates/_critic_preview.html needs: the result, or the message saying why not."""
    context: dict[str, Any] = {
        "rule": rule or "recall",
        "value": value,
        "rules": RULES,
        "preview": None,
        "error": None,
    }
    if version is None:
        context["error"] = "no critic version yet: train one first"
        return context
    if rule is None or value is None:
        return context
    try:
        number = float(value)
    except ValueError:
        context["error"] = f"value: {value!r} is not a number; enter a fraction such as 0.8"
        return context
    if not math.isfinite(number):
        context["error"] = "value: enter a fraction such as 0.8"
        return context
    try:
        threshold, result = run_preview(session, version.id, rule, number)
    except (ValueError, LookupError) as exc:
        context["error"] = str(exc)
        return context
    top = max(result.kept_by_relation.values(), default=0)
    context.update(
        preview=result,
        threshold=threshold,
        version_id=version.id,
        relations=sorted(result.kept_by_relation.items(), key=lambda item: (-item[1], item[0])),
        top=top or 1,
        kept_share=result.kept / result.scored if result.scored else None,
    )
    return context


# --- pages -----------------------------------------------------------------------------------


def _is_admin(user: User) -> bool:
    return user.role == Role.admin


@router.get("/critic", response_class=HTMLResponse)
def critic_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    version: RowId | None = None,
    rule: str | None = None,
    value: str | None = None,
) -> HTMLResponse:
    """Versions, the selected version's plots and calibration, the preview and the jobs.
    ``rule`` and ``value`` fill the preview when the form is sent without JavaScript."""
    versions = _all_versions(session)
    selected = _pick(session, versions, version)
    context: dict[str, Any] = {
        "user": user,
        "csrf": csrf_token(request),
        "is_admin": _is_admin(user),
        "rows": [version_row(v) for v in versions],
        "selected": selected,
        "requested_version": version,
        "active": next((v for v in versions if v.state == CriticState.active), None),
        "training": next((v for v in versions if v.state == CriticState.training), None),
        "flash": request.session.pop(FLASH_KEY, None),
        "table_recall": TABLE_RECALL,
    }
    if selected is not None:
        scores, unscored = corpus_scores(session, selected)
        context.update(
            selected_row=version_row(selected),
            pr=pr_plot(selected.metrics or {}, selected.threshold),
            histogram=histogram_plot(scores.counts, selected.threshold, scores.low, scores.high),
            unscored=unscored,
            calibration=calibration_rows(selected),
            calibration_meta=(selected.metrics or {}).get("calibration") or {},
        )
    default_value = None
    if selected is not None:
        default_value = (selected.hyperparameters or {}).get("target_recall")
    preview = preview_context(session, selected, rule, value)
    if value is None:
        preview["value"] = str(default_value or TABLE_RECALL)
    context["p"] = preview
    context.update(_jobs_context(session))
    return templates.TemplateResponse(request, "critic.html", context)


def _jobs_context(session: Session) -> dict[str, Any]:
    jobs = [job_as_dict(job) for job in recent_critic_jobs(session)]
    return {"jobs": jobs, "watch": [job["id"] for job in jobs if not job["finished"]]}


@router.get("/critic/jobs", response_class=HTMLResponse)
def critic_jobs_panel(
    request: Request, session: SessionDep, user: StaffUser, watch: str = ""
) -> HTMLResponse:
    """The jobs panel, fetched every few seconds while a critic job runs (so new links of a
    chain and jobs started elsewhere appear). ``watch`` lists the jobs that were unfinished at
    the last refresh: when one of them has finished, ``HX-Trigger: critic-changed`` tells the
    page to refresh its versions and plots."""
    context = _jobs_context(session)
    response = templates.TemplateResponse(request, "_critic_jobs.html", context)
    # Ids the panel itself wrote; anything else (too many, too long for BIGINT) is ignored.
    parts = [part.strip() for part in watch.split(",")[:RECENT_JOBS]]
    watched = {int(part) for part in parts if part.isdigit() and len(part) <= 15}
    if watched:
        finished = session.scalars(select(Job.id).where(Job.id.in_(watched))).all()
        still = set(context["watch"])
        if any(job_id not in still for job_id in finished):
            response.headers["HX-Trigger"] = "critic-changed"
    return response


@router.get("/critic/preview", response_class=HTMLResponse)
def critic_preview_fragment(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    version: RowId | None = None,
    rule: str | None = None,
    value: str | None = None,
) -> HTMLResponse:
    """The preview fragment the form swaps in. An unreachable target is an answer, not an
    error: it comes back as a 200 message so htmx shows it in place."""
    selected = _pick(session, _all_versions(session), version)
    context = preview_context(session, selected, rule or "recall", value or "")
    return templates.TemplateResponse(request, "_critic_preview.html", {"p": context})


# --- the admin's actions (one path for the page and the API) ---------------------------------


# --- the page's forms ------------------------------------------------------------------------


# --- JSON API --------------------------------------------------------------------------------


@router.get(
    "/api/critic/versions",
    summary="List critic versions",
    response_model=list[CriticVersionOut],
)
def api_versions(session: SessionDep, user: StaffUser) -> list[dict[str, Any]]:
    """Every version, newest first (metrics without the PR curve; see the single version)."""
    return [version_as_dict(v, curve=False) for v in _all_versions(session)]


@router.get(
    "/api/critic/versions/{version_id}",
    summary="Get a critic version",
    response_model=CriticVersionDetailOut,
)
def api_version(version_id: RowId, session: SessionDep, user: StaffUser) -> dict[str, Any]:
    """One version with its PR curve and its corpus scores (histogram over [0, 1])."""
    version = _version_or_404(session, version_id)
    counts = score_histogram(session, version.id, bins=HISTOGRAM_BINS)  # fixed [0, 1] bins
    unscored = unscored_count(session, version.id) if version.path else None
    return version_as_dict(version) | {
        "histogram": {"bins": len(counts), "counts": counts},
        "scored": sum(counts),
        "unscored": unscored,
    }


@router.get(
    "/api/critic/preview",
    summary="Preview a filter threshold",
    response_model=FilterPreviewOut,
)
def api_preview(
    session: SessionDep,
    user: StaffUser,
    rule: Annotated[Rule, Query(description="recall, precision or kept")],
    value: Annotated[float, Query(description="the target, a fraction in (0, 1]")],
    version: RowId | None = None,
) -> dict[str, Any]:
    """The threshold a rule picks and what it keeps: counts per relation and the precision
    estimated from calibration labels (with its 95% interval). 422 when the target cannot
    be reached; the version defaults to the active one (else the newest ready one)."""
    selected = _pick(session, _all_versions(session), version)
    if selected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no critic version yet: train one first")
    try:
        _threshold, result = run_preview(session, selected.id, rule, value)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    data = _finite(result.as_dict())
    data["interval"] = list(result.interval) if result.interval else None
    return {"version_id": selected.id, "rule": rule, "value": value} | data
