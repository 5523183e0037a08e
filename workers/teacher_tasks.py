"""Celery tasks of the teacher: thin doors onto ``app.teacher.runs``.

``teacher_run`` starts (or resumes) a run's job and sends one ``teacher_chunk`` task per chunk
left, so more workers generate proportionally faster; the chunk that completes the events
phase sends the inference chunks. Chunks are acked late: a killed worker's chunk is delivered
again and either runs (it never stored anything) or is skipped (it did). A key typed for one
run travels in the task arguments, never in the database.
"""

from __future__ import annotations

import logging

from app.core import queue
from app.core.db import session_scope
from app.core.models import TeacherRun
from app.core.queue import celery_app, enqueue_group
from app.teacher import chunks, planning, runs

log = logging.getLogger(__name__)


def _send(chunks: list[planning.ChunkRef], api_key: str | None) -> None:
    enqueue_group(queue.TEACHER_CHUNK, [(c.run_id, c.phase, c.index, api_key) for c in chunks])


def _score_new_triples() -> None:
    # Generated triples are a corpus source like any import: the active critic scores them.
    from app.critic.queueing import score_what_is_new

    score_what_is_new()


@celery_app.task(name=queue.TEACHER_RUN, acks_late=True)
def teacher_run(job_id: int, api_key: str | None = None) -> int:
    """Plan the run's chunks and send them; returns how many were sent."""
    try:
        chunks = planning.begin_run(job_id)
    except (LookupError, ValueError) as exc:
        runs.fail_run(job_id, str(exc))
        return 0
    if not chunks:
        _score_new_triples()
        return 0
    _send(chunks, api_key)
    return len(chunks)


@celery_app.task(name=queue.TEACHER_CHUNK, acks_late=True)
def teacher_chunk(run_id: int, phase: str, index: int, api_key: str | None = None) -> str:
    """Generate and store one chunk; send the next phase or finish the run when it is last."""
    try:
        outcome = chunks.run_chunk(planning.ChunkRef(run_id, phase, index), api_key=api_key)
    except Exception as exc:  # noqa: BLE001 - the backend's, the model's or bad data's
        # A redelivery of this task would fail the same way; the run's job says what went
        # wrong, and a retry from the jobs page resumes from the chunks already stored. (A
        # killed worker raises nothing here: its chunk is delivered again.)
        with session_scope() as session:
            run = session.get(TeacherRun, run_id)
            job_id = run.job_id if run is not None else None
        if job_id is not None:
            runs.fail_run(job_id, str(exc))
        log.warning("teacher run %s chunk %s/%s failed: %s", run_id, phase, index, exc)
        return "failed"
    if outcome.next_chunks:
        _send(outcome.next_chunks, api_key)
    if outcome.finished:
        _score_new_triples()
    return "skipped" if outcome.skipped else "done"
