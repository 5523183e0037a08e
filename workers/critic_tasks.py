"""Celery tasks of the critic loop: thin doors onto ``app.critic.loop``.

Training is a chain (train → evaluate → score, sent by ``app.critic.queueing``); scoring fans
out as a group of chunk tasks, so more workers score proportionally faster. Every task takes
ids and is safe to run twice; all are declared on the one app of ``app.core.queue``.
"""

from __future__ import annotations

import logging
from typing import Any

from app.core import queue
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.jobs import JobAlreadyFinished, run_job
from app.core.queue import celery_app
from app.critic import evaluation, loop, queueing, scoring_jobs

log = logging.getLogger(__name__)


def _run_link(job_id: int, work: Any) -> dict[str, Any] | None:
    """Run one link of the chain; a failure is recorded on its job (and the next link
    cancels itself), so the chain always moves on and nothing waits forever."""
    if loop.predecessor_failed(job_id):
        return None
    try:
        return run_job(job_id, work)
    except JobAlreadyFinished:
        log.info("job %s already finished or cancelled; not running it", job_id)
    except Exception:
        log.exception("critic job %s failed", job_id)
    return None


@celery_app.task(name=queue.CRITIC_TRAIN, acks_late=True)
def train_critic(job_id: int) -> dict[str, Any] | None:
    return _run_link(job_id, loop.run_training)


@celery_app.task(name=queue.CRITIC_EVALUATE, acks_late=True)
def evaluate_critic(job_id: int) -> dict[str, Any] | None:
    return _run_link(job_id, evaluation.run_evaluation)


@celery_app.task(name=queue.CRITIC_SCORE, acks_late=True)
def score_corpus(job_id: int) -> int:
    """Plan the score job's chunks and send one task per chunk; returns the chunk count."""
    if loop.predecessor_failed(job_id):
        return 0
    version_id, chunks = scoring_jobs.begin_scoring(job_id)
    queueing.dispatch_chunks(job_id, version_id, chunks)
    return len(chunks)


@celery_app.task(name=queue.CRITIC_SCORE_CHUNK, acks_late=True)
def score_chunk(job_id: int | None, version_id: int, first_id: int, last_id: int) -> int:
    return scoring_jobs.run_chunk(job_id, version_id, first_id, last_id)


@celery_app.task(name=queue.CRITIC_TICK)
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
        queueing.dispatch_training(requested)
        report["training"] = requested.version_id
    report["scoring"] = queueing.score_what_is_new()
    return report
