"""Teacher runs as jobs: events first, then inferences, in chunks that any worker can run.

A run is a ``teacher_runs`` row and a ``teacher`` job. Each phase (events, inferences) is cut
into chunks of prompts; a chunk builds its prompts from a seed of its own (so a chunk run again
asks the same prompts), calls the backend outside any transaction, then writes its output, its
filter counts and its ``teacher_chunks`` row in one transaction. A chunk already recorded is
skipped, so a killed worker's chunk runs again without duplicates or lost work. The chunk that
completes a phase (under a lock on the run row) plans the next phase or finishes the run.

The triples a run writes are a corpus source like any import, ``teacher-run-<id>``, with
``teacher_run_id`` set and the provenance of each (mean log-probability, the examples of its
prompt, its chunk) in ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core import triple_counts
from app.core.db import session_scope
from app.core.job_control import register_kind
from app.core.jobs import create_job
from app.core.models import (
    Job,
    JobState,
    TeacherEvent,
    TeacherRun,
    TeacherRunState,
    Triple,
    utcnow,
)
from app.teacher.backends import Backend
from app.teacher.chunks import run_chunk
from app.teacher.planning import JOB_KIND, ChunkRef, _run_of, begin_run, source_name

# --- creating a run -----------------------------------------------------------------------


# --- backends -----------------------------------------------------------------------------


# --- planning -----------------------------------------------------------------------------


# --- one chunk ----------------------------------------------------------------------------


# --- running a whole run in this process (the CLI), and failures --------------------------


def run_inline(
    job_id: int,
    *,
    api_key: str | None = None,
    backend: Backend | None = None,
    on_chunk: Callable[[int, int | None, str], None] | None = None,
) -> dict[str, Any]:
    """Run every chunk of job ``job_id``'s run here, one after another (``skd generate``)."""
    try:
        pending: Iterable[ChunkRef] = begin_run(job_id)
        queue = list(pending)
        while queue:
            ref = queue.pop(0)
            outcome = run_chunk(ref, api_key=api_key, backend=backend)
            if outcome.next_chunks:
                queue.extend(outcome.next_chunks)
            if on_chunk is not None:
                with session_scope() as session:
                    job = session.get(Job, job_id)
                    if job is not None:
                        on_chunk(job.done, job.total, job.message or "")
    except BaseException as exc:
        fail_run(job_id, str(exc) or type(exc).__name__)
        raise
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        run = _run_of(session, job)
        return {"run_id": run.id, "state": job.state.value, "message": job.message,
                "counts": run.counts}  # fmt: skip


def fail_run(job_id: int, error: str) -> None:
    """Mark the job and its run failed (chunks already stored stay: a retry resumes)."""
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        if job.state in (JobState.queued, JobState.running):
            job.state = JobState.failed
            job.error = error
            job.message = "failed"
            job.finished_at = utcnow()
        _release(session, [job])


def _release(session: Session, jobs: list[Job]) -> None:
    """A teacher job ended badly (cancelled, failed, swept): its run says so."""
    for job in jobs:
        run_id = (job.params or {}).get("run_id")
        run = session.get(TeacherRun, run_id) if run_id is not None else None
        if run is None or run.state == TeacherRunState.succeeded or run.job_id != job.id:
            continue
        if job.state in (JobState.failed, JobState.cancelled):
            run.state = TeacherRunState.failed
            run.error = job.error or job.message or job.state.value
            run.finished_at = utcnow()


def resume_run(run_id: int) -> int:
    """A new job for an unfinished run; its finished chunks are kept and skipped."""
    with session_scope(write=True) as session:
        run = session.get(TeacherRun, run_id)
        if run is None:
            raise LookupError(f"there is no teacher run {run_id}")
        if run.state == TeacherRunState.succeeded:
            raise ValueError(f"teacher run {run_id} already finished")
        old = session.get(Job, run.job_id) if run.job_id else None
        if old is not None and not old.state.finished:
            raise ValueError(f"teacher run {run_id} is still {old.state.value} (job #{old.id})")
        job = create_job(session, JOB_KIND, {"run_id": run.id, "resumes": run.job_id})
        run.job_id = job.id
        run.state = TeacherRunState.queued
        run.error = None
        return job.id


def dispatch_run(job_id: int, api_key: str | None = None) -> None:
    """Send a run's job to the workers. A key typed for this run goes with the task (in the
    broker's message, never the database). A broker that cannot take it fails the job at
    once, with the reason (``BrokerUnavailable`` is re-raised for the door to answer)."""
    from app.core.job_control import dispatch, fail_unsent
    from app.core.jobs import set_celery_id
    from app.core.queue import TEACHER_RUN, BrokerUnavailable, enqueue

    if not api_key:
        dispatch(job_id, TEACHER_RUN)
        return
    try:
        celery_id = enqueue(TEACHER_RUN, job_id, api_key)
    except BrokerUnavailable as exc:
        fail_unsent(job_id, str(exc))
        raise
    set_celery_id(job_id, celery_id)


def _retry(job_id: int) -> int:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        run_id = int((job.params or {})["run_id"])
    new_id = resume_run(run_id)
    dispatch_run(new_id)
    return new_id


register_kind(JOB_KIND, release=_release, retry=_retry)


# --- reading runs (the page, the API) ------------------------------------------------------


def run_triples_count(session: Session, run_id: int) -> int:
    """How many triples the run wrote: its source's kept count (a run's triples, and only
    they, have the source ``teacher-run-<id>``: imports may not take that name)."""
    return triple_counts.source_count(session, source_name(run_id))


def sample_output(session: Session, run_id: int, limit: int = 20) -> dict[str, list[Any]]:
    """A sample of what a run kept: its first events and inferences."""
    events = list(
        session.scalars(
            select(TeacherEvent)
            .where(TeacherEvent.run_id == run_id)
            .order_by(TeacherEvent.id)
            .limit(limit)
        )
    )
    triples = list(
        session.scalars(
            select(Triple).where(Triple.teacher_run_id == run_id).order_by(Triple.id).limit(limit)
        )
    )
    return {"events": events, "triples": triples}


def mark_job_heartbeat(job_id: int) -> None:
    with session_scope(write=True) as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
