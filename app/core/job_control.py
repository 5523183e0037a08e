"""Controlling jobs once they exist: sending them to the workers, cancelling, retrying, and
sweeping the ones that hang, with the per-kind hooks that free what a job held."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.core.jobs import job_as_dict, new_job, set_celery_id
from app.core.models import Job, JobState, utcnow


def fail_stale_jobs(session: Session, stale_after: timedelta) -> int:
    """Fail running jobs whose worker stopped sending heartbeats (killed, OOM, machine lost).

    Part of ``sweep_jobs``. Without it a dead worker's job would show "running" forever.
    """
    cutoff = utcnow() - stale_after
    stale = list(
        session.scalars(select(Job).where(Job.state == JobState.running, Job.heartbeat_at < cutoff))
    )
    for job in stale:
        _end(
            job,
            JobState.failed,
            "failed",
            error="the worker stopped responding (no progress for "
            f"{int(stale_after.total_seconds())} s); run the job again",
        )
    session.flush()
    _release(session, stale)
    return len(stale)


@dataclass(frozen=True)
class KindHooks:
    """What the generic job code cannot know about one kind of job.

    ``release(session, jobs)``: free what these just-ended jobs held (a training lock, a
    half-written folder), in the transaction that ended them. ``retry(job_id) -> new job id``:
    start the work again, when a new job with the same params and task is not enough.
    """

    release: Callable[[Session, list[Job]], None] | None = None
    retry: Callable[[int], int] | None = None


_KINDS: dict[str, KindHooks] = {}


def register_kind(
    kind: str,
    *,
    release: Callable[[Session, list[Job]], None] | None = None,
    retry: Callable[[int], int] | None = None,
) -> None:
    """Called by the step that owns ``kind`` (at import), so base code stays step-free."""
    _KINDS[kind] = KindHooks(release=release, retry=retry)


def _release(session: Session, jobs: list[Job]) -> None:
    by_kind: dict[str, list[Job]] = {}
    for job in jobs:
        by_kind.setdefault(job.kind, []).append(job)
    for kind, ended in by_kind.items():
        hooks = _KINDS.get(kind)
        if hooks is not None and hooks.release is not None:
            hooks.release(session, ended)


def _end(job: Job, state: JobState, message: str, *, error: str | None = None) -> None:
    job.state = state
    job.message = message
    job.finished_at = utcnow()
    if error is not None:
        job.error = error


class JobStateError(RuntimeError):
    """The job is in the wrong state for what was asked (cancel a finished job, retry a
    running one)."""


def dispatch(job_id: int, task_name: str) -> str:
    """Send job ``job_id`` (already committed) to the workers as ``task_name(job_id)``.

    If the broker cannot take it the job fails at once with the reason, and what it held is
    released, so no row waits in ``queued`` for a message that was never sent; the
    ``BrokerUnavailable`` is re-raised for the door to answer (the web: 503).
    """
    from app.core.queue import BrokerUnavailable, enqueue

    try:
        celery_id = enqueue(task_name, job_id)
    except BrokerUnavailable as exc:
        fail_unsent(job_id, str(exc))
        raise
    set_celery_id(job_id, celery_id)
    return celery_id


def fail_unsent(job_id: int, error: str) -> None:
    """A job whose message never reached the broker: failed, and what it held released."""
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None or job.state.finished:
            return
        _end(job, JobState.failed, "failed", error=error)
        ended = [job, *_cancel_waiting(session, job)]
        session.flush()
        _release(session, ended)


def _cancel_waiting(session: Session, job: Job) -> list[Job]:
    """Queued jobs that wait for ``job`` (``params.after``), transitively: cancelled too."""
    ended: list[Job] = []
    waiting_for = {job.id: job.state.value}
    queued = session.scalars(select(Job).where(Job.state == JobState.queued).order_by(Job.id)).all()
    for link in queued:
        after = (link.params or {}).get("after")
        if after in waiting_for:
            _end(link, JobState.cancelled, f"not run: job #{after} {waiting_for[after]}")
            waiting_for[link.id] = JobState.cancelled.value
            ended.append(link)
    return ended


def cancel_job(job_id: int, *, by: str | None = None) -> dict[str, Any]:
    """Cancel a queued or running job; returns its JSON shape.

    The row ends ``cancelled`` at once (with the jobs that wait for it), what it held is
    released, and the Celery task is revoked. A running task stops at its next progress
    report, and its own clean-up removes what it had half-written. Raises LookupError for an
    unknown id and ``JobStateError`` for a job that already ended.
    """
    from app.core.queue import revoke

    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        if job.state.finished:
            raise JobStateError(
                f"job #{job_id} already {job.state.value}; only a queued or running job "
                "can be cancelled"
            )
        _end(job, JobState.cancelled, f"cancelled by {by}" if by else "cancelled")
        ended = [job, *_cancel_waiting(session, job)]
        session.flush()
        _release(session, ended)
        celery_ids = [j.celery_id for j in ended if j.celery_id]
        data = job_as_dict(job)
    for celery_id in celery_ids:
        revoke(celery_id)
    return data


def retry_job(job_id: int) -> int:
    """Start a failed or cancelled job again with the same parameters; the new job's id.

    Raises LookupError for an unknown id and ``JobStateError`` when the job has not ended
    badly (queued, running or succeeded) or its kind cannot be retried from here.
    """
    from app.core.queue import TASK_FOR_KIND

    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        if job.state not in (JobState.failed, JobState.cancelled):
            raise JobStateError(
                f"job #{job_id} is {job.state.value}; only a failed or cancelled job can be retried"
            )
        kind, params = job.kind, dict(job.params or {})
    hooks = _KINDS.get(kind)
    if hooks is not None and hooks.retry is not None:
        return hooks.retry(job_id)
    task = TASK_FOR_KIND.get(kind)
    if task is None:
        raise JobStateError(f"a {kind} job cannot be retried; start it again from its page")
    new_id = new_job(kind, {**params, "retry_of": job_id})
    dispatch(new_id, task)
    return new_id


@dataclass
class SweepReport:
    stale: int  # running jobs whose worker stopped reporting
    unstarted: int  # queued jobs no worker took in time

    def as_dict(self) -> dict[str, int]:
        return {"stale": self.stale, "unstarted": self.unstarted}


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def fail_unstarted_jobs(session: Session, queued_after: timedelta, where: str = "") -> int:
    """Fail queued jobs that no worker took within ``queued_after`` (a lost message, no
    worker on this broker or queue). A job that waits for another (a chain's next link)
    counts from when that one ended, not from its own creation."""
    now = utcnow()
    cutoff = now - queued_after
    queued = session.scalars(
        select(Job).where(Job.state == JobState.queued, Job.created_at < cutoff).order_by(Job.id)
    ).all()
    failed: list[Job] = []
    for job in queued:
        if job.state != JobState.queued:  # ended as a link of an earlier one in this loop
            continue
        after = (job.params or {}).get("after")
        if after is not None:
            before = session.get(Job, after)
            if before is not None and (
                not before.state.finished or (before.finished_at or now) > cutoff
            ):
                continue
        _end(
            job,
            JobState.failed,
            "failed",
            error=f"no worker took it within {_duration(queued_after.total_seconds())}; "
            f"is a worker running against this broker{where}?",
        )
        failed.append(job)
        failed.extend(_cancel_waiting(session, job))
    session.flush()
    _release(session, failed)
    return sum(1 for job in failed if job.state == JobState.failed)


def sweep_jobs(
    stale_after: timedelta | None = None, queued_after: timedelta | None = None
) -> SweepReport:
    """Fail jobs that hang unseen, and free what they held: running jobs without heartbeats,
    queued jobs no worker took. Beat runs it every minute, the web server too (in case no
    worker or beat is up), and ``skd jobs sweep`` on demand; running it twice is harmless."""
    from app.core.config import get_settings
    from app.core.queue import celery_app

    settings = get_settings()
    stale_after = stale_after or timedelta(seconds=settings.job_stale_seconds)
    queued_after = queued_after or timedelta(seconds=settings.job_queued_seconds)
    where = f" ({_broker_words(celery_app)}, queue {settings.celery_queue!r})"
    with session_scope(write=True) as session:
        stale = fail_stale_jobs(session, stale_after)
    with session_scope(write=True) as session:
        unstarted = fail_unstarted_jobs(session, queued_after, where)
    with session_scope(write=True) as session:
        # Locks that outlived their job another way (a job ended by hand, an older sweep).
        for hooks in _KINDS.values():
            if hooks.release is not None:
                hooks.release(session, [])
    return SweepReport(stale, unstarted)


def _broker_words(app: Any) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(app.conf.broker_url))
