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
        full = job.total or 1
    if extra is not None:  # the terminal's bar ends full, as the row does, not where it was
        extra.update(full, full, force=True)
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


# --- what a kind of job holds, and how it is retried ----------------------------------------


# --- sending a job to the workers -----------------------------------------------------------


# --- cancel, retry, sweep (the page, the API and the CLI call these) ------------------------
