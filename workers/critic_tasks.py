"""Celery tasks of the critic loop: thin doors onto ``app.critic.loop``.

Training is a chain (train → evaluate → score); scoring fans out as a group of chunk tasks,
so more workers score proportionally faster. Every task takes ids and is safe to run twice.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, group, shared_task

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.jobs import JobAlreadyFinished, run_job, set_celery_id
from app.critic import loop

log = logging.getLogger(__name__)


def _run_link(job_id: int, work: Any) -> dict[str, Any] | None:
    """Run one link of the chain; a failure is recorded on its job (and the next link
    cancels itself), so the chain always moves on and nothing waits forever."""
    if loop.predecessor_failed(job_id):
        return None
    try:
        return run_job(job_id, work)
    except JobAlreadyFinished:
        log.info("job %s already finished; ignoring a repeated delivery", job_id)
    except Exception:
        log.exception("critic job %s failed", job_id)
    return None


@shared_task(name="skd.critic_train", acks_late=True)
def train_critic(job_id: int) -> dict[str, Any] | None:
    return _run_link(job_id, loop.run_training)


@shared_task(name="skd.critic_evaluate", acks_late=True)
def evaluate_critic(job_id: int) -> dict[str, Any] | None:
    return _run_link(job_id, loop.run_evaluation)


@shared_task(name="skd.critic_score", acks_late=True)
def score_corpus(job_id: int) -> int:
    """Plan the score job's chunks and send one task per chunk; returns the chunk count."""
    if loop.predecessor_failed(job_id):
        return 0
    version_id, chunks = loop.begin_scoring(job_id)
    if chunks:
        group(
            score_chunk.si(job_id, version_id, chunk.first_id, chunk.last_id) for chunk in chunks
        ).apply_async()
    return len(chunks)


@shared_task(name="skd.critic_score_chunk", acks_late=True)
def score_chunk(job_id: int | None, version_id: int, first_id: int, last_id: int) -> int:
    return loop.run_chunk(job_id, version_id, first_id, last_id)


def dispatch_training(chain_ids: loop.TrainingChain) -> None:
    """Queue a requested training chain (after its rows are committed).

    If the broker cannot take it, the chain's jobs fail at once and the training lock is
    released, rather than a version waiting in ``training`` for a task that was never sent.
    """
    try:
        result = chain(
            train_critic.si(chain_ids.train_job_id),
            evaluate_critic.si(chain_ids.evaluate_job_id),
            score_corpus.si(chain_ids.score_job_id),
        ).apply_async()
    except Exception as exc:
        loop.abandon_training(chain_ids, f"could not queue the training: {exc}")
        raise
    set_celery_id(chain_ids.score_job_id, result.id)
    parent = result.parent
    for job_id in (chain_ids.evaluate_job_id, chain_ids.train_job_id):
        if parent is None:
            break
        set_celery_id(job_id, parent.id)
        parent = parent.parent


def dispatch_scoring(job_id: int) -> None:
    set_celery_id(job_id, score_corpus.delay(job_id).id)


@shared_task(name="skd.critic_tick")
def critic_tick() -> dict[str, Any]:
    """Beat: release dead trainings, retrain when enough fresh labels arrived, and score
    what the active version has not scored (new imports, an interrupted re-score)."""
    settings = get_settings()
    report: dict[str, Any] = {}
    with session_scope(write=True) as session:
        report["released"] = loop.release_dead_trainings(session)
    with session_scope(write=True) as session:
        reason = loop.retrain_due(session, settings)
        requested = None
        if reason:
            try:
                requested = loop.request_training(session, reason=f"automatic: {reason}")
            except loop.TrainingInProgress:
                requested = None
    if requested is not None:
        dispatch_training(requested)
        report["training"] = requested.version_id
    report["scoring"] = score_what_is_new()
    return report


def score_what_is_new() -> int | None:
    """Start a score job when the active version has unscored triples; its id, or None."""
    with session_scope(write=True) as session:
        version_id = loop.needs_scoring(session)
        job = loop.request_scoring(session, version_id) if version_id else None
        job_id = job.id if job else None
    if job_id is not None:
        dispatch_scoring(job_id)
    return job_id
