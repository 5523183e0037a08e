"""Jobs: progress shows while the work runs, outcomes are recorded, dead workers are noticed."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.core.job_control import fail_stale_jobs
from app.core.jobs import job_as_dict, new_job, run_job
from app.core.models import Job, JobState, utcnow


def load(job_id: int) -> dict:
    with session_scope() as session:
        return job_as_dict(session.get(Job, job_id))


def test_progress_is_visible_from_outside_while_the_job_runs(engine) -> None:  # type: ignore[no-untyped-def]
    job_id = new_job("demo-work", {"n": 3})
    halfway = threading.Event()
    proceed = threading.Event()
    seen: dict = {}

    def work(params, progress):  # type: ignore[no-untyped-def]
        progress.update(1, params["n"], "step 1", force=True)
        halfway.set()
        assert proceed.wait(10)
        progress.update(3, params["n"], "step 3", force=True)
        return {"answer": 42}

    runner = threading.Thread(target=lambda: seen.update(result=run_job(job_id, work)))
    runner.start()
    assert halfway.wait(10)
    during = load(job_id)
    proceed.set()
    runner.join(10)
    assert (during["state"], during["done"], during["total"], during["message"]) == (
        "running",
        1,
        3,
        "step 1",
    )
    assert during["fraction"] == pytest.approx(1 / 3)
    after = load(job_id)
    assert after["state"] == "succeeded" and after["fraction"] == 1.0
    assert after["result"] == {"answer": 42} == seen["result"]


def test_the_terminal_bar_ends_full_when_the_job_succeeds(engine) -> None:  # type: ignore[no-untyped-def]
    """A step that reports its last progress half way (the critic's evaluation: "applying the
    activation policy", 1 of 2) still leaves the CLI's bar at 100% once the job succeeded,
    as the job row and the jobs page do; a job that never gave a total ends full too."""
    seen: list[tuple[int, int | None]] = []

    class Bar:
        def update(self, done, total=None, message=None, *, force=False):  # type: ignore[no-untyped-def]
            seen.append((done, total))

        def paused(self):  # type: ignore[no-untyped-def]
            return contextlib.nullcontext()

    def half_way(params, progress):  # type: ignore[no-untyped-def]
        progress.update(1, 2, "applying the activation policy", force=True)
        return {"message": "activated"}

    run_job(new_job("demo-work"), half_way, extra=Bar())
    assert seen[-1] == (2, 2)
    run_job(new_job("demo-work"), lambda params, progress: {}, extra=Bar())
    assert seen[-1] == (1, 1)


def test_an_error_fails_the_job_with_its_message(engine) -> None:  # type: ignore[no-untyped-def]
    job_id = new_job("demo-work")

    def work(params, progress):  # type: ignore[no-untyped-def]
        raise ValueError("input.tsv:3: field 'relation': unknown relation 'x'")

    with pytest.raises(ValueError):
        run_job(job_id, work)
    job = load(job_id)
    assert job["state"] == "failed" and job["finished"]
    assert "input.tsv:3" in job["error"]


def test_a_succeeded_job_is_not_run_twice(engine) -> None:  # type: ignore[no-untyped-def]
    from app.core.jobs import JobAlreadyFinished

    job_id = new_job("demo-work")
    runs = []
    run_job(job_id, lambda p, g: runs.append(1) or {})
    with pytest.raises(JobAlreadyFinished):
        run_job(job_id, lambda p, g: runs.append(1) or {})
    assert runs == [1]


def test_running_jobs_without_heartbeat_are_failed(engine) -> None:  # type: ignore[no-untyped-def]
    stale, fresh = new_job("a"), new_job("b")
    with session_scope(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.id == stale)
            .values(state=JobState.running, heartbeat_at=utcnow() - timedelta(hours=1))
        )
        session.execute(
            update(Job).where(Job.id == fresh).values(state=JobState.running, heartbeat_at=utcnow())
        )
    with session_scope(write=True) as session:
        assert fail_stale_jobs(session, timedelta(minutes=10)) == 1
    assert load(stale)["state"] == "failed" and "stopped responding" in load(stale)["error"]
    assert load(fresh)["state"] == "running"


def _age(job_id: int, **values) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def test_the_sweep_fails_jobs_no_worker_took_saying_why(engine) -> None:  # type: ignore[no-untyped-def]
    from app.core.job_control import sweep_jobs

    lost, young = new_job("import"), new_job("import")
    # A chain: the link waits for a training that ended only just now.
    first = new_job("a")
    waiting = new_job("b", {"after": first})
    hour_ago = utcnow() - timedelta(hours=1)
    _age(lost, created_at=hour_ago)
    _age(waiting, created_at=hour_ago)
    _age(first, created_at=hour_ago, state=JobState.succeeded, finished_at=utcnow())
    report = sweep_jobs(queued_after=timedelta(minutes=10))
    assert report.unstarted == 1
    assert load(lost)["state"] == "failed"
    assert "no worker took it within 10 min" in load(lost)["error"]
    assert "is a worker running against this broker" in load(lost)["error"]
    assert load(young)["state"] == "queued"
    assert load(waiting)["state"] == "queued"  # counts from when its predecessor ended
    # A late delivery of the swept job does not run it.
    from app.core.jobs import JobAlreadyFinished

    with pytest.raises(JobAlreadyFinished):
        run_job(lost, lambda p, g: {})


def test_cancel_stops_a_running_job_at_its_next_report_and_cancels_what_waits(engine) -> None:  # type: ignore[no-untyped-def]
    from app.core.job_control import JobStateError, cancel_job
    from app.core.jobs import JobCancelled

    job_id = new_job("demo-work")
    link = new_job("demo-next", {"after": job_id})
    started = threading.Event()
    cancelled = threading.Event()
    seen: dict = {}

    def work(params, progress):  # type: ignore[no-untyped-def]
        progress.update(1, 10, "step 1", force=True)
        started.set()
        assert cancelled.wait(10)
        try:
            progress.update(2, 10, "step 2", force=True)
        except JobCancelled:
            seen["cleaned up"] = True
            raise
        return {}

    def runner() -> None:
        try:
            run_job(job_id, work)
        except JobCancelled as exc:
            seen["error"] = exc

    thread = threading.Thread(target=runner)
    thread.start()
    assert started.wait(10)
    answer = cancel_job(job_id, by="ada")
    cancelled.set()
    thread.join(10)
    assert answer["state"] == "cancelled" and answer["message"] == "cancelled by ada"
    assert seen.get("cleaned up") and isinstance(seen.get("error"), JobCancelled)
    assert load(job_id)["state"] == "cancelled"  # not overwritten by "failed"
    assert load(link)["state"] == "cancelled" and f"#{job_id}" in load(link)["message"]
    with pytest.raises(JobStateError):
        cancel_job(job_id)


def test_retry_refuses_jobs_that_did_not_fail(engine) -> None:  # type: ignore[no-untyped-def]
    from app.core.job_control import JobStateError, retry_job

    queued = new_job("import")
    with pytest.raises(JobStateError, match="only a failed or cancelled job"):
        retry_job(queued)
    odd = new_job("no-such-kind")
    _age(odd, state=JobState.failed)
    with pytest.raises(JobStateError, match="cannot be retried"):
        retry_job(odd)
    with pytest.raises(LookupError):
        retry_job(10**9)


def test_a_dead_exports_half_written_folder_is_removed_by_the_sweep(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import app.export.run  # noqa: F401 - registers what export jobs hold
    from app.core.job_control import sweep_jobs

    destination = tmp_path / "0001-skd-kg"
    half = tmp_path / f".tmp-{destination.name}-1a2b"
    (half / "data").mkdir(parents=True)
    job_id = new_job("export", {"export_id": 1, "destination": str(destination)})
    _age(job_id, state=JobState.running, heartbeat_at=utcnow() - timedelta(hours=1))
    assert sweep_jobs(stale_after=timedelta(minutes=10)).stale == 1
    assert load(job_id)["state"] == "failed"
    assert not half.exists()
