"""Jobs: progress shows while the work runs, outcomes are recorded, dead workers are noticed."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.core.jobs import fail_stale_jobs, job_as_dict, new_job, run_job
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
