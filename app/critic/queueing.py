"""Sending the critic loop's work to the workers, and what its jobs hold when they end.

The page, the API, ``skd critic ... --background``, beat's tick and the import task all start
critic work through these functions, which send by task name through ``app.core.queue`` (no
door imports ``workers``). Rows are committed first, then the message is sent, so a worker
never looks for a row it cannot see; if the broker refuses, the jobs fail at once and the
training lock is released (``BrokerUnavailable`` goes on to the door).

The job kinds are registered with ``app.core.jobs`` here: an ended training job releases the
training lock (its version fails), and a retried training is a new chain (a new version).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core import queue
from app.core.db import session_scope
from app.core.job_control import dispatch, register_kind
from app.core.jobs import set_celery_id
from app.core.models import CriticVersion, Job
from app.critic import loop, scoring_jobs
from app.critic.job_kinds import EVALUATE, SCORE, TRAIN
from app.critic.score import Chunk


def dispatch_training(chain_ids: loop.TrainingChain) -> None:
    """Queue a requested training chain (after its rows are committed).

    If the broker cannot take it, the chain's jobs fail at once and the training lock is
    released, rather than a version waiting in ``training`` for a task that was never sent.
    """
    try:
        celery_ids = queue.enqueue_chain(
            [
                (queue.CRITIC_TRAIN, (chain_ids.train_job_id,)),
                (queue.CRITIC_EVALUATE, (chain_ids.evaluate_job_id,)),
                (queue.CRITIC_SCORE, (chain_ids.score_job_id,)),
            ]
        )
    except queue.BrokerUnavailable as exc:
        loop.abandon_training(chain_ids, str(exc))
        raise
    job_ids = (chain_ids.train_job_id, chain_ids.evaluate_job_id, chain_ids.score_job_id)
    for job_id, celery_id in zip(job_ids, celery_ids, strict=False):
        set_celery_id(job_id, celery_id)


def dispatch_scoring(job_id: int) -> None:
    """Queue score job ``job_id`` (its task plans the chunks and fans them out)."""
    dispatch(job_id, queue.CRITIC_SCORE)


def dispatch_chunks(job_id: int, version_id: int, chunks: list[Chunk]) -> None:
    """One task per chunk, so more workers score proportionally faster."""
    queue.enqueue_group(
        queue.CRITIC_SCORE_CHUNK,
        [(job_id, version_id, chunk.first_id, chunk.last_id) for chunk in chunks],
    )


def score_what_is_new() -> int | None:
    """Start a score job when the active version has unscored triples; its id, or None."""
    with session_scope(write=True) as session:
        version_id = scoring_jobs.needs_scoring(session)
        job = scoring_jobs.request_scoring(session, version_id) if version_id else None
        job_id = job.id if job else None
    if job_id is not None:
        dispatch_scoring(job_id)
    return job_id


# --- what critic jobs hold, and their retry --------------------------------------------------


def _release_training_lock(session: Session, _ended: list[Job]) -> None:
    loop.release_dead_trainings(session)


def retry_training(job_id: int) -> int:
    """A failed or cancelled training (or its evaluation) runs again as a new chain, on the
    same base model: a new version, since the old one has failed. The new train job's id."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        old = session.get(CriticVersion, int(job.params["version_id"]))
        base_model = old.base_model if old is not None else None
    with session_scope(write=True) as session:
        try:
            chain = loop.request_training(
                session, reason=f"retry of job #{job_id}", base_model=base_model
            )
        except loop.TrainingInProgress as exc:
            from app.core.job_control import JobStateError

            raise JobStateError(str(exc)) from None
    dispatch_training(chain)
    return chain.train_job_id


def retry_scoring(job_id: int) -> int:
    """Score again with the same version (resumes: finished chunks stay scored)."""
    from app.core.job_control import JobStateError

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        version_id = int(job.params["version_id"])
    with session_scope(write=True) as session:
        try:
            new = scoring_jobs.request_scoring(session, version_id)
        except LookupError as exc:
            raise JobStateError(str(exc)) from None
        if new is None:
            raise JobStateError(f"a score job for critic version {version_id} is already queued")
        new.params = {**new.params, "retry_of": job_id}
        new_id = new.id
    dispatch_scoring(new_id)
    return new_id


register_kind(TRAIN, release=_release_training_lock, retry=retry_training)
register_kind(EVALUATE, release=_release_training_lock, retry=retry_training)
register_kind(SCORE, retry=retry_scoring)
