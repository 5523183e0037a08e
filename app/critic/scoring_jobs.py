"""Scoring the corpus as a job: plan id-range chunks, one task each; each chunk adds its count in
the same transaction as its scores, so a re-score after a crash does only what is left."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
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
from app.critic.job_kinds import SCORE
from app.critic.registry import (
    active_version,
)
from app.critic.score import Chunk, plan_chunks, score_chunk, unscored_count


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
    """One scoring task: score the range, count it on the job (nothing, for a job that was
    cancelled or failed meanwhile: its remaining chunks are dropped)."""
    if job_id is not None:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is not None and job.state != JobState.running:
                return 0
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
