"""Jobs: the one mechanism every long task reports through.

A job is a row (kind, state, done/total, message, result or error). Whoever runs the work (a
Celery task, or the CLI in-process) wraps it in ``run_job``, which marks the row running, hands
the work a ``JobProgress`` to report through, and records success or the error. The web shows
the row as a live progress bar (JSON at ``/api/jobs/{id}``, an htmx fragment at
``/jobs/{id}/progress``); the CLI shows the same numbers with rich.

Progress writes are throttled and go through their own short transaction, so a job's progress
is visible while its work is still inside a long transaction of its own.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.core.job_list import job_subject
from app.core.models import Job, JobState, utcnow
from app.core.origin import current_origin


class Progress(Protocol):
    """What long-running functions report to: a job row, a terminal bar, or both."""

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None: ...

    @contextmanager
    def paused(self) -> Iterator[None]:
        """While the caller holds the database's write lock (SQLite), don't write progress."""
        ...


class NullProgress:
    """Reports nowhere; also the base of sinks that have nothing to pause."""

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        return None

    @contextmanager
    def paused(self) -> Iterator[None]:
        yield


class MultiProgress:
    """Report to several sinks at once (the CLI's bar and the job row)."""

    def __init__(self, *sinks: Progress) -> None:
        self.sinks = sinks

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        for sink in self.sinks:
            sink.update(done, total, message, force=force)

    @contextmanager
    def paused(self) -> Iterator[None]:
        with _all_paused(list(self.sinks)):
            yield


@contextmanager
def _all_paused(sinks: list[Progress]) -> Iterator[None]:
    if not sinks:
        yield
        return
    with sinks[0].paused(), _all_paused(sinks[1:]):
        yield


class JobProgress:
    """Writes progress to a job row at most every ``min_interval`` seconds (and on ``force``)."""

    def __init__(self, job_id: int, min_interval: float = 0.5) -> None:
        self.job_id = job_id
        self.min_interval = min_interval
        self._last_write = 0.0
        self._paused = False
        self._pending: dict[str, Any] | None = None

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        values: dict[str, Any] = {"done": done, "heartbeat_at": utcnow()}
        if total is not None:
            values["total"] = total
        if message is not None:
            values["message"] = message
        if self._paused:
            self._pending = {**(self._pending or {}), **values}
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval:
            self._pending = {**(self._pending or {}), **values}
            return
        self._write({**(self._pending or {}), **values})

    def flush(self) -> None:
        if self._pending and not self._paused:
            self._write(self._pending)

    def _write(self, values: dict[str, Any]) -> None:
        self._pending = None
        self._last_write = time.monotonic()
        with session_scope(write=True) as session:
            written = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.state == JobState.running)
                .values(**values)
            ).rowcount
        if not written:
            # Cancelled (or failed by the sweep) while the work ran: stop at this report,
            # so the work's own clean-up (``finally`` blocks) runs now.
            raise JobCancelled(f"job {self.job_id} was cancelled or ended elsewhere")

    @contextmanager
    def paused(self) -> Iterator[None]:
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
            self.flush()


def create_job(
    session: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    created_by_id: int | None = None,
    message: str = "waiting for a worker",
) -> Job:
    # Who started it: the door at work (app.core.origin), and its signed-in user unless the
    # caller named one.
    came_from = current_origin()
    if created_by_id is None and came_from is not None:
        created_by_id = came_from.user_id
    job = Job(
        kind=kind,
        params=params or {},
        created_by_id=created_by_id,
        started_by=came_from.door if came_from is not None else None,
        message=message,
    )
    session.add(job)
    session.flush()
    return job


def new_job(kind: str, params: dict[str, Any] | None = None, **kwargs: Any) -> int:
    """Create a job in its own transaction and return its id (to hand to a task)."""
    with session_scope(write=True) as session:
        return create_job(session, kind, params, **kwargs).id


def set_celery_id(job_id: int, celery_id: str) -> None:
    with session_scope(write=True) as session:
        session.execute(update(Job).where(Job.id == job_id).values(celery_id=celery_id))


class JobAlreadyFinished(RuntimeError):
    """A task was delivered again for a job that already ended (idempotent re-delivery)."""


class JobCancelled(JobAlreadyFinished):
    """Raised inside a job's work when its row was cancelled meanwhile (at a progress report)."""


def run_job(
    job_id: int,
    work: Callable[[dict[str, Any], Progress], dict[str, Any]],
    *,
    extra: Progress | None = None,
) -> dict[str, Any]:
    """Run ``work(params, progress)`` as job ``job_id``; record its result or its error.

    Re-raises the error after recording it, so Celery and the CLI see it too. A job that has
    already succeeded is not run again (tasks are acked late and may be delivered twice).
    """
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"job {job_id} does not exist")
        if job.state == JobState.succeeded:
            raise JobAlreadyFinished(f"job {job_id} already succeeded")
        if job.state == JobState.cancelled or (
            job.state == JobState.failed and job.started_at is None
        ):
            # Cancelled, or failed by the sweep before any worker took it: a late delivery
            # must not run it behind the back of whoever saw it end (or retried it).
            raise JobAlreadyFinished(f"job {job_id} is {job.state.value}; not running it")
        job.state = JobState.running
        job.started_at = job.heartbeat_at = utcnow()
        job.finished_at = None
        job.error = None
        job.done = 0
        job.message = "starting"
        params = dict(job.params)
    progress = JobProgress(job_id)
    sink: Progress = MultiProgress(progress, extra) if extra is not None else progress
    try:
        result = work(params, sink)
    except BaseException as exc:
        with session_scope(write=True) as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.state != JobState.running:  # cancelled or swept meanwhile: keep that
                raise
            job.state = JobState.failed
            job.finished_at = utcnow()
            job.error = str(exc) or type(exc).__name__
            job.message = "failed"
            if not isinstance(exc, ValueError | KeyboardInterrupt):
                job.result = {"traceback": traceback.format_exc(limit=20)}
        raise
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        assert job is not None
        if job.state != JobState.running:  # cancelled while its last step ran
            return result
        pending = progress._pending or {}
        job.state = JobState.succeeded
        job.finished_at = utcnow()
        job.result = result
        job.total = pending.get("total", job.total)
        job.done = job.total if job.total is not None else pending.get("done", job.done)
        job.message = (
            pending.get("message", "done") if result.get("message") is None else result["message"]
        )
    return result


def job_as_dict(job: Job) -> dict[str, Any]:
    """The JSON shape of a job, shared by the API, the htmx fragment and the CLI."""
    fraction = None
    if job.total:
        fraction = min(1.0, job.done / job.total)
    elif job.state == JobState.succeeded:
        fraction = 1.0
    # The thing it works on under that thing's own number ("Export #5", not the job's id).
    subject = job_subject(job.kind, job.params)
    return {
        "id": job.id,
        "kind": job.kind,
        "label": subject.label,
        "subject_url": subject.url,
        "state": job.state.value,
        "done": job.done,
        "total": job.total,
        "fraction": fraction,
        "message": job.message,
        "result": job.result,
        "error": job.error,
        "finished": job.state.finished,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def recent_jobs(session: Session, limit: int = 10) -> list[Job]:
    return list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))


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


# --- what a kind of job holds, and how it is retried ----------------------------------------


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


# --- sending a job to the workers -----------------------------------------------------------


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


# --- cancel, retry, sweep (the page, the API and the CLI call these) ------------------------


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
