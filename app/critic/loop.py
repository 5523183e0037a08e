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
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.jobs import Progress, create_job
from app.core.models import (
    CriticState,
    CriticVersion,
    Job,
    JobState,
    utcnow,
)
from app.critic import presets
from app.critic.job_kinds import EVALUATE, SCORE, TRAIN
from app.critic.labels import (
    LabelledTriple,
    fresh_label_count,
    latest_rating_id,
    rated_since,
    split_by_head,
    training_labels,
)
from app.critic.registry import (
    active_version,
    fail_version,
    finish_version,
    start_version,
)
from app.critic.scoring_jobs import _finish

log = logging.getLogger(__name__)


class TrainingInProgress(RuntimeError):
    """The training lock is taken: another version is training."""


@dataclass(frozen=True)
class TrainingChain:
    version_id: int
    train_job_id: int
    evaluate_job_id: int
    score_job_id: int


TRAINING_SETTINGS = (
    "epochs",
    "learning_rate",
    "batch_size",
    "warmup_ratio",
    "weight_decay",
    "max_length",
    "seed",
    "target_recall",
    "names",
    "patience",
    "freeze_embeddings",
    "length_window",
    "bf16",
    "freeze_layers",
    "layer_decay",
    "max_minutes",
)
# Recorded with a version, but not arguments of ``CriticTrainingArguments``.
RECORD_ONLY = ("held_out_fraction", "preset", "base_name", "base_source", "warm_start", "full")
# A warm start continues from trained weights: half the recipe's rate moves them less.
WARM_LR_SCALE = 0.5


def hyperparameters(settings: Settings) -> dict[str, Any]:
    """The training settings recorded with a version: the preset's recipe, with every
    explicitly set ``critic_*`` setting over it (the base model is chosen separately)."""
    values = {name: presets.setting(settings, name) for name in TRAINING_SETTINGS}
    values["held_out_fraction"] = settings.critic_held_out_fraction
    return values


def plan_start(
    session: Session, choice: presets.BaseChoice, settings: Settings, *, full: bool
) -> dict[str, Any]:
    """Warm start or full retrain, and why. Warm: from the active version's weights, when it
    was trained from the same base model under the same preset and warm starts are on."""
    active = active_version(session)
    reason = None
    if full:
        reason = "a full retrain was asked for"
    elif not settings.critic_warm_start:
        reason = "warm starts are off (critic_warm_start)"
    elif active is None or not active.path:
        reason = "no active version to start from"
    else:
        before = active.hyperparameters or {}
        if before.get("base_name") != choice.name or before.get("preset") != choice.preset:
            was = f"{before.get('base_name', 'unrecorded')} ({before.get('preset', '?')})"
            reason = (
                f"the base model changed: {was} -> {choice.name} ({choice.preset}); "
                "a full retrain is forced"
            )
        elif "max_rating_id" not in (active.label_snapshot or {}):
            reason = f"version {active.id} has no label snapshot to count new labels from"
    if reason is not None:
        return {"full": reason}
    assert active is not None
    return {
        "warm_start": {
            "from_version": active.id,
            "path": active.path,
            "since_rating_id": int(active.label_snapshot["max_rating_id"]),
        }
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
    full: bool = False,
) -> TrainingChain:
    """Take the training lock and create the chain's jobs (in the caller's transaction).

    The version records its base model by name, the preset, and whether it warm-starts from
    the active version (``full`` asks for a full retrain; a change of base model forces one).
    Raises ``TrainingInProgress`` when a version is already training, ``ModelMissing`` when
    the base model is not installed (the message says how to get it).
    """
    settings = settings or get_settings()
    choice = presets.choose(settings, base_model)
    busy = training_version(session)
    if busy is None:
        hyper = {
            **hyperparameters(settings),
            "preset": choice.preset,
            "base_name": choice.name,
            "base_source": choice.source,
            **plan_start(session, choice, settings, full=full),
        }
        try:
            with session.begin_nested():
                version = start_version(session, choice.source or choice.name, hyper)
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

    started = time.monotonic()  # a time limit (critic_max_minutes) bounds the whole job
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
            recorded = dict(version.hyperparameters)
            seen_rating_id = latest_rating_id(session)
            labels = training_labels(session)
            warm = recorded.get("warm_start")
            fresh = rated_since(session, warm["since_rating_id"]) if warm else set()
            # the version it starts from, where its folder is now (the data dir may have
            # moved since this training was asked for, say before a retry)
            parent = session.get(CriticVersion, warm["from_version"]) if warm else None
            warm_path = parent.path if parent is not None and parent.path else None
        fraction = float(recorded.get("held_out_fraction", settings.critic_held_out_fraction))
        hyper = {k: v for k, v in recorded.items() if k not in RECORD_ONLY}
        train, held_out = split_by_head(labels, fraction)
        _check_split(train, held_out)
        choice = presets.BaseChoice(
            recorded.get("base_name") or presets.model_name(version.base_model),
            recorded.get("preset") or presets.preset_name(settings),
            recorded.get("base_source") if "base_name" in recorded else version.base_model,
        )
        base_source = presets.locate(choice, settings)
        output = model_dir(settings, version_id)
        args = CriticTrainingArguments(base_model=base_source, output_dir=output, **hyper)
        fitted, start = train, {"mode": "full", "why": recorded.get("full")}
        if warm:
            fitted, start = warm_start_labels(train, fresh, warm, settings, args.seed)
            if fitted is train:  # nothing new on the training side: a full retrain
                start = {"mode": "full", "why": start["why"]}
            else:
                args.init_from = warm_path or warm["path"]
                args.epochs = settings.critic_warm_epochs
                args.learning_rate *= WARM_LR_SCALE
        progress.update(
            0,
            None,
            f"{len(fitted):,} training and {len(held_out):,} held-out labels ({start['mode']})",
        )
        trained = train_critic(args, fitted, held_out, progress, started=started)
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
            "start": start,
        }
        with session_scope(write=True) as session:
            finish_version(
                session,
                version_id,
                path=str(output),
                metrics={
                    **trained.metrics,
                    "best_epoch": trained.best_epoch,
                    "schedule": trained.schedule,
                },
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


def describe_start(session: Session, version_id: int) -> str:
    """One line for people: the base model by name, the preset, warm or full and why."""
    version = session.get(CriticVersion, version_id)
    if version is None:
        return "unknown version"
    hyper = version.hyperparameters or {}
    name = hyper.get("base_name") or presets.model_name(version.base_model)
    where = f"{name}, preset {hyper['preset']}" if hyper.get("preset") else name
    warm = hyper.get("warm_start")
    if warm:
        return f"{where}; warm start from version {warm['from_version']}"
    return f"{where}; full training: {hyper.get('full') or 'no warm start'}"


def warm_start_labels(
    train: list[LabelledTriple],
    fresh: set[int],
    warm: dict[str, Any],
    settings: Settings,
    seed: int,
) -> tuple[list[LabelledTriple], dict[str, Any]]:
    """A warm start's training set: the training-side labels rated since the active version's
    snapshot, plus a seeded sample of the older ones (``critic_replay_ratio`` per new label,
    at least ``critic_replay_min``) so the model does not drift toward the newest labels only.
    Returns ``train`` itself when nothing on the training side is new."""
    new = [label for label in train if label.triple_id in fresh]
    if not new:
        why = f"no new training labels since version {warm['from_version']}"
        return train, {"mode": "full", "why": why}
    old = [label for label in train if label.triple_id not in fresh]
    want = max(settings.critic_replay_min, math.ceil(settings.critic_replay_ratio * len(new)))
    replayed = random.Random(seed).sample(old, min(len(old), want))
    info = {
        "mode": "warm",
        "from_version": warm["from_version"],
        "new": len(new),
        "replayed": len(replayed),
    }
    return new + replayed, info


# --- link 2: evaluate and maybe activate -----------------------------------------------------


# --- link 3: score the corpus (fanned out in chunks) -----------------------------------------


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
