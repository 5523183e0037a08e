"""The critic loop: train → evaluate → maybe activate → re-score, as one chain of jobs.

``request_training`` takes the training lock and creates the chain's three job rows at once,
so the page and the CLI show the whole pipeline from the first click. The lock is the
version row itself: a partial unique index allows one version in state ``training``, so two
requests (two admins, the beat trigger and a click) can never start two trainings, and a
lock held by a worker that died is released by ``release_dead_trainings`` (run by beat with
the stale-job sweep), which fails the version of a failed training job.

Each link is a plain function for ``app.core.jobs.run_job``; ``workers/critic_tasks.py`` runs them
as a Celery chain and the CLI runs them in-process. A link whose predecessor did not succeed
cancels itself (``predecessor_failed``), so a failed training never activates or scores.
Scoring fans out: ``begin_scoring`` plans id-range chunks, one task each, and every finished
chunk adds its count to the job row in the same transaction as its scores
(``record_chunk``), so the bar is exact and a re-score after a crash only does what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.annotation.quality import item_labels
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.jobs import Progress, create_job
from app.core.models import (
    Campaign,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Job,
    JobState,
    Score,
    utcnow,
)
from app.critic.labels import (
    LabelledTriple,
    fresh_label_count,
    latest_rating_id,
    split_by_head,
    training_labels,
)
from app.critic.metrics import wilson_interval
from app.critic.registry import (
    activate,
    active_version,
    fail_version,
    finish_version,
    should_auto_activate,
    start_version,
)
from app.critic.score import Chunk, plan_chunks, score_chunk, score_triples, unscored_count

log = logging.getLogger(__name__)

TRAIN, EVALUATE, SCORE = "critic_train", "critic_evaluate", "critic_score"


class TrainingInProgress(RuntimeError):
    """The training lock is taken: another version is training."""


@dataclass(frozen=True)
class TrainingChain:
    version_id: int
    train_job_id: int
    evaluate_job_id: int
    score_job_id: int


def hyperparameters(settings: Settings) -> dict[str, Any]:
    """The training settings recorded with a version (everything but the base model)."""
    return {
        "epochs": settings.critic_epochs,
        "learning_rate": settings.critic_learning_rate,
        "batch_size": settings.critic_batch_size,
        "warmup_ratio": settings.critic_warmup_ratio,
        "weight_decay": settings.critic_weight_decay,
        "max_length": settings.critic_max_length,
        "seed": settings.critic_seed,
        "target_recall": settings.critic_target_recall,
        "names": settings.critic_names,
        "patience": settings.critic_patience,
        "freeze_embeddings": settings.critic_freeze_embeddings,
        "length_window": settings.critic_length_window,
        "bf16": settings.critic_bf16,
        "held_out_fraction": settings.critic_held_out_fraction,
    }


def model_dir(settings: Settings, version_id: int) -> Path:
    return (settings.data_dir / "models" / f"critic-{version_id}").resolve()


# --- the lock and the chain ------------------------------------------------------------------


def training_version(session: Session) -> CriticVersion | None:
    return session.scalar(select(CriticVersion).where(CriticVersion.state == CriticState.training))


def request_training(
    session: Session,
    *,
    reason: str,
    base_model: str | None = None,
    created_by_id: int | None = None,
    settings: Settings | None = None,
) -> TrainingChain:
    """Take the training lock and create the chain's jobs (in the caller's transaction).

    Raises ``TrainingInProgress`` when a version is already training.
    """
    settings = settings or get_settings()
    busy = training_version(session)
    if busy is None:
        try:
            with session.begin_nested():
                version = start_version(
                    session, base_model or settings.critic_base_model, hyperparameters(settings)
                )
                # What this run can see; the retrain trigger counts fresh labels from here
                # even if the run fails (so beat does not retry a failing run every tick).
                version.label_snapshot = {"max_rating_id": latest_rating_id(session)}
        except IntegrityError:
            busy = training_version(session)
    if busy is not None:
        raise TrainingInProgress(
            f"critic version {busy.id} is already training (job #{busy.job_id}); "
            "one training runs at a time"
        )
    params = {"version_id": version.id, "reason": reason}
    train = create_job(session, TRAIN, params, created_by_id=created_by_id)
    evaluate = create_job(
        session, EVALUATE, {**params, "after": train.id}, created_by_id=created_by_id
    )
    score = create_job(
        session,
        SCORE,
        {**params, "after": evaluate.id, "only_if_active": True},
        created_by_id=created_by_id,
    )
    version.job_id = train.id
    return TrainingChain(version.id, train.id, evaluate.id, score.id)


def predecessor_failed(job_id: int) -> bool:
    """For a chain link: cancel ``job_id`` if the job it waits for did not succeed."""
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None or job.state.finished:
            return True
        after = job.params.get("after")
        if after is None:
            return False
        before = session.get(Job, after)
        if before is not None and before.state == JobState.succeeded:
            return False
        _cancel(job, f"not run: job #{after} did not succeed")
        return True


def _cancel(job: Job, message: str) -> None:
    job.state = JobState.cancelled
    job.message = message
    job.finished_at = utcnow()


def release_dead_trainings(session: Session) -> list[int]:
    """Fail versions whose training job ended without finishing them (a killed worker, a
    job failed by the stale sweep), which releases the training lock; and cancel queued
    chain links whose predecessor failed. Returns the failed version ids."""
    failed: list[int] = []
    rows = session.execute(
        select(CriticVersion, Job)
        .join(Job, Job.id == CriticVersion.job_id)
        .where(CriticVersion.state == CriticState.training, Job.state != JobState.queued)
        .where(Job.state != JobState.running)
    ).all()
    for version, job in rows:
        version.state = CriticState.failed
        version.error = job.error or f"training job #{job.id} {job.state.value}"
        failed.append(version.id)
    queued = session.scalars(
        select(Job)
        .where(Job.state == JobState.queued, Job.kind.in_((EVALUATE, SCORE)))
        .order_by(Job.id)  # a link before the one that waits for it
    ).all()
    for job in queued:
        after = job.params.get("after")
        before = session.get(Job, after) if after is not None else None
        if before is not None and before.state in (JobState.failed, JobState.cancelled):
            _cancel(job, f"not run: job #{after} {before.state.value}")
    return failed


def abandon_training(chain: TrainingChain, error: str) -> None:
    """A chain that never reached the queue: fail its first job and release the lock."""
    with session_scope(write=True) as session:
        job = session.get(Job, chain.train_job_id)
        if job is not None and not job.state.finished:
            _finish(job, JobState.failed, error)
        session.flush()
        release_dead_trainings(session)


# --- link 1: train ---------------------------------------------------------------------------


def _check_split(train: list[LabelledTriple], held_out: list[LabelledTriple]) -> None:
    def classes(labels: list[LabelledTriple]) -> tuple[int, int]:
        good = sum(label.acceptable for label in labels)
        return good, len(labels) - good

    (train_good, train_bad), (held_good, held_bad) = classes(train), classes(held_out)
    if min(train_good, train_bad, held_good, held_bad) == 0:
        raise ValueError(
            "not enough human labels to train a critic: it needs acceptable and unacceptable "
            f"labels both in training ({train_good} acceptable, {train_bad} not) and held out "
            f"({held_good} acceptable, {held_bad} not; heads are split, not triples). "
            "Collect more ratings or import labelled triples."
        )


def run_training(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Link 1: fine-tune the version's base model on the current labels; the version becomes
    ``ready`` with its held-out metrics (or ``failed``, which releases the lock)."""
    from app.critic.train import CriticTrainingArguments, train_critic

    settings = get_settings()
    version_id = int(params["version_id"])
    try:
        with session_scope() as session:
            version = session.get(CriticVersion, version_id)
            if version is None or version.state != CriticState.training:
                state = "missing" if version is None else version.state.value
                raise ValueError(
                    f"critic version {version_id} is {state}, not training; start a new training"
                )
            base_model = version.base_model
            hyper = dict(version.hyperparameters)
            seen_rating_id = latest_rating_id(session)
            labels = training_labels(session)
        fraction = float(hyper.pop("held_out_fraction", settings.critic_held_out_fraction))
        train, held_out = split_by_head(labels, fraction)
        _check_split(train, held_out)
        progress.update(0, None, f"{len(train):,} training and {len(held_out):,} held-out labels")
        output = model_dir(settings, version_id)
        args = CriticTrainingArguments(base_model=base_model, output_dir=output, **hyper)
        trained = train_critic(args, train, held_out, progress)
        target = next(
            (
                point
                for point in trained.metrics["precision_at_recall"]
                if abs(point["target_recall"] - args.target_recall) < 1e-9
            ),
            None,
        )
        snapshot = {
            "max_rating_id": seen_rating_id,
            "labels": len(labels),
            "acceptable": sum(label.acceptable for label in labels),
            "train": len(train),
            "held_out": len(held_out),
            "held_out_fraction": fraction,
            "taken_at": utcnow().isoformat(),
        }
        with session_scope(write=True) as session:
            finish_version(
                session,
                version_id,
                path=str(output),
                metrics={**trained.metrics, "best_epoch": trained.best_epoch},
                label_snapshot=snapshot,
                threshold=target["threshold"] if target else None,
            )
    except BaseException as exc:
        with session_scope(write=True) as session:
            current = session.get(CriticVersion, version_id)
            if current is not None and current.state == CriticState.training:
                fail_version(session, version_id, str(exc) or type(exc).__name__)
        raise
    auc = trained.metrics["roc_auc"]
    return {
        "version_id": version_id,
        "roc_auc": auc,
        "best_epoch": trained.best_epoch,
        "message": f"version {version_id} trained: held-out ROC-AUC {auc:.3f}",
    }


# --- link 2: evaluate and maybe activate -----------------------------------------------------


def calibration_labels(session: Session) -> dict[int, bool]:
    """Decisive labels of the items of ``calibration`` campaigns (uniform random samples)."""
    labels: dict[int, bool] = {}
    campaigns = session.scalars(
        select(Campaign.id).where(Campaign.purpose == CampaignPurpose.calibration)
    ).all()
    for campaign_id in campaigns:
        for row in item_labels(session, campaign_id):
            if row.label is not None:
                labels[row.triple_id] = row.label
    return labels


def calibration_estimate(
    labels: dict[int, bool], scores: dict[int, float], threshold: float
) -> dict[str, Any]:
    """Precision of what ``threshold`` keeps, estimated on the calibration sample."""
    kept = [labels[t] for t, p in scores.items() if t in labels and p >= threshold]
    good = sum(kept)
    low, high = wilson_interval(good, len(kept)) if kept else (None, None)
    return {
        "threshold": threshold,
        "sample_kept": len(kept),
        "sample_acceptable": good,
        "precision": good / len(kept) if kept else None,
        "low": low,
        "high": high,
    }


def evaluate_version(session: Session, version_id: int, settings: Settings) -> dict[str, Any]:
    """Score the calibration sample with this version and estimate, for each rec_X threshold,
    the precision of what it keeps (with a 95% interval). Stored in ``metrics["calibration"]``."""
    version = session.get(CriticVersion, version_id)
    if version is None or not version.path:
        raise LookupError(f"critic version {version_id} has no trained model")
    labels = calibration_labels(session)
    if labels:
        score_triples(
            session,
            version_id,
            sorted(labels),
            batch_size=settings.critic_score_batch_size,
            quantize=settings.critic_quantize,
        )
    scores = dict(
        session.execute(
            select(Score.triple_id, Score.p_accept).where(
                Score.critic_version_id == version_id, Score.triple_id.in_(list(labels))
            )
        ).all()
    )
    points = []
    for point in version.metrics.get("precision_at_recall", []):
        estimate = calibration_estimate(labels, scores, point["threshold"])
        points.append({"target_recall": point["target_recall"], **estimate})
    calibration: dict[str, Any] = {
        "labels": len(labels),
        "acceptable": sum(labels.values()),
        "at_recall": points,
    }
    if version.threshold is not None:
        calibration["at_threshold"] = calibration_estimate(labels, scores, version.threshold)
    version.metrics = {**version.metrics, "calibration": calibration}
    return calibration


def run_evaluation(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Link 2: the calibration estimate, then the auto-activation policy."""
    settings = get_settings()
    version_id = int(params["version_id"])
    progress.update(0, 2, "estimating precision on the calibration sample", force=True)
    with session_scope() as session:
        evaluate_version(session, version_id, settings)
        session.commit()
    progress.update(1, 2, "applying the activation policy", force=True)
    with session_scope(write=True) as session:
        candidate = session.get(CriticVersion, version_id)
        assert candidate is not None
        current = active_version(session)
        auc = candidate.metrics.get("roc_auc")
        if not settings.critic_auto_activate:
            decision = "kept ready: automatic activation is off"
        elif should_auto_activate(candidate, current, tolerance=settings.critic_auc_tolerance):
            activate(session, version_id)
            decision = f"activated (held-out ROC-AUC {auc:.3f})"
        elif auc is None or auc != auc or auc <= 0.5:
            decision = (
                "kept ready for review: its held-out ROC-AUC is no better than chance "
                f"({'unknown' if auc is None else f'{auc:.3f}'}); more labels may help"
            )
        else:
            assert current is not None
            decision = (
                f"kept ready for review: held-out ROC-AUC {auc:.3f} is more than "
                f"{settings.critic_auc_tolerance} below the active version {current.id}'s "
                f"{current.metrics.get('roc_auc', float('nan')):.3f}"
            )
        activated = candidate.state == CriticState.active
    return {"version_id": version_id, "activated": activated, "message": decision}


# --- link 3: score the corpus (fanned out in chunks) -----------------------------------------


def begin_scoring(job_id: int, settings: Settings | None = None) -> tuple[int, list[Chunk]]:
    """Start score job ``job_id``: plan its chunks and set its total.

    Returns (version id, chunks). No chunks means nothing to do, and the job is already
    finished (succeeded: everything scored, or skipped because the version is not active).
    """
    settings = settings or get_settings()
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"job {job_id} does not exist")
        version_id = int(job.params["version_id"])
        version = session.get(CriticVersion, version_id)
        job.state = JobState.running
        job.started_at = job.heartbeat_at = utcnow()
        job.finished_at = None
        job.error = None
        skip = None
        if version is None or not version.path:
            skip = f"version {version_id} has no trained model"
        elif job.params.get("only_if_active") and version.state != CriticState.active:
            skip = f"skipped: version {version_id} is {version.state.value}, not active"
        if skip:
            _finish(job, JobState.succeeded if version else JobState.failed, skip)
            return version_id, []
        chunks = plan_chunks(session, version_id, settings.critic_score_chunk_size)
        job.total = sum(chunk.size for chunk in chunks)
        job.done = 0
        job.result = {"chunks": len(chunks), "version_id": version_id}
        job.message = f"scoring {job.total:,} triples in {len(chunks):,} chunks"
        if not chunks:
            _finish(job, JobState.succeeded, f"version {version_id} has scored every triple")
        return version_id, chunks


def _finish(job: Job, state: JobState, message: str) -> None:
    job.state = state
    job.message = message
    job.finished_at = utcnow()
    if state == JobState.failed:
        job.error = message


def record_chunk(session: Session, job_id: int, scored: int) -> None:
    """Add a finished chunk's count to its job (in the chunk's transaction); the chunk that
    completes the total finishes the job."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running)
        .values(done=Job.done + scored, heartbeat_at=utcnow())
    )
    job = session.get(Job, job_id, populate_existing=True)
    if job is not None and job.state == JobState.running and job.done >= (job.total or 0):
        _finish(job, JobState.succeeded, f"scored {job.done:,} triples")


def run_chunk(job_id: int | None, version_id: int, first_id: int, last_id: int) -> int:
    """One scoring task: score the range, count it on the job."""
    settings = get_settings()
    return score_chunk(
        version_id,
        first_id,
        last_id,
        batch_size=settings.critic_score_batch_size,
        quantize=settings.critic_quantize,
        on_stored=(lambda session, n: record_chunk(session, job_id, n)) if job_id else None,
    )


def run_scoring_inline(job_id: int, progress: Progress) -> dict[str, Any]:
    """The CLI's way: the same chunks, one after another in this process, with a bar."""
    version_id, chunks = begin_scoring(job_id)
    total = sum(chunk.size for chunk in chunks)
    done = 0
    for chunk in chunks:
        done += run_chunk(job_id, version_id, chunk.first_id, chunk.last_id)
        progress.update(done, total, f"scored {done:,} of {total:,}")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return {"state": job.state.value, "message": job.message, "scored": done}


def fail_scoring(job_id: int, message: str) -> None:
    """Mark an in-process score job failed (Ctrl-C); finished chunks stay scored."""
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is not None and not job.state.finished:
            _finish(job, JobState.failed, message)


def request_scoring(
    session: Session, version_id: int | None = None, *, created_by_id: int | None = None
) -> Job | None:
    """A score job for ``version_id`` (default: the active version), unless one is already
    queued or running for it. Returns the job to dispatch, or None."""
    if version_id is None:
        active = active_version(session)
        if active is None:
            raise LookupError("no active critic version; train one or activate one first")
        version_id = active.id
    version = session.get(CriticVersion, version_id)
    if version is None or not version.path:
        raise LookupError(f"critic version {version_id} has no trained model")
    for job in session.scalars(
        select(Job).where(Job.kind == SCORE, Job.state.in_((JobState.queued, JobState.running)))
    ):
        if job.params.get("version_id") == version_id and not job.params.get("only_if_active"):
            return None
    return create_job(session, SCORE, {"version_id": version_id}, created_by_id=created_by_id)


# --- the retrain trigger ---------------------------------------------------------------------


def retrain_due(session: Session, settings: Settings) -> str | None:
    """Why the critic should retrain now, or None.

    Due when at least ``critic_retrain_labels`` fresh labels arrived since the label
    snapshot of the latest version that was trained or tried (counting from the latest
    rather than the active one, so a version kept for review or a failed run does not make
    beat retry on every tick with the same labels).
    """
    if settings.critic_retrain_labels <= 0 or training_version(session) is not None:
        return None
    latest = session.scalar(
        select(CriticVersion)
        .where(CriticVersion.state != CriticState.training)
        .order_by(CriticVersion.id.desc())
        .limit(1)
    )
    since = int((latest.label_snapshot or {}).get("max_rating_id", 0)) if latest else 0
    fresh = fresh_label_count(session, since)
    if fresh >= settings.critic_retrain_labels:
        return f"{fresh} fresh labels since the last training"
    return None


def needs_scoring(session: Session) -> int | None:
    """The active version's id when it has unscored triples and no score job is on it."""
    active = active_version(session)
    if active is None or not active.path:
        return None
    pending = session.scalars(
        select(Job).where(Job.kind == SCORE, Job.state.in_((JobState.queued, JobState.running)))
    ).all()
    if any(job.params.get("version_id") == active.id for job in pending):
        return None
    return active.id if unscored_count(session, active.id) else None
