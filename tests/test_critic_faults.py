"""Faults a real deployment meets: a worker killed mid-training, and the `skd critic` CLI
used from a fresh process (with the packaged MiniLM as the base model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.jobs import run_job
from app.core.models import CriticState, CriticVersion, Job, JobState, Score, Triple
from app.critic import evaluation, loop, scoring_jobs
from app.critic.registry import active_version
from tests.conftest import ROOT
from tests.critic_helpers import critic_settings, labelled_corpus, wait_for_jobs
from tests.test_critic_loop import ready_version


def _worker(queue: str, **env: str) -> subprocess.Popen[bytes]:
    """A separate worker process (solo pool: the task runs in the process we will kill)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "-Q",
            queue,
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_worker_killed_mid_training_keeps_the_active_version_and_the_job_is_retriable(
    settings, engine, tiny_base
) -> None:  # type: ignore[no-untyped-def]
    from workers.critic_tasks import train_critic
    from workers.tasks import fail_stale_jobs_task

    labelled_corpus(n_heads=60)
    previous = ready_version(tiny_base, auc=0.7, active=True)
    # The version's hyperparameters are fixed when it is requested, so "long enough to be
    # killed in the middle" must be set here, not in the worker's environment.
    with (
        critic_settings(settings, tiny_base, critic_epochs=1000, critic_patience=1000),
        session_scope(write=True) as session,
    ):
        chain = loop.request_training(session, reason="doomed")
    queue = f"kill-{os.getpid()}-{time.monotonic_ns()}"
    worker = _worker(
        queue,
        SKD_CRITIC_BASE_MODEL=str(tiny_base),
    )
    try:
        train_critic.apply_async((chain.train_job_id,), queue=queue)
        deadline = time.monotonic() + 90
        while True:
            with session_scope() as session:
                job = session.get(Job, chain.train_job_id)
                if job.state == JobState.running and job.done > 0:
                    break
            assert time.monotonic() < deadline, f"training never started: {job.message}"
            assert worker.poll() is None, "the worker process exited on its own"
            time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    with session_scope() as session:
        assert session.get(CriticVersion, chain.version_id).state == CriticState.training
        assert active_version(session).id == previous  # nothing switched mid-training

    # Beat's sweep: no heartbeat for job_stale_seconds → the job fails, the lock is released.
    saved = settings.job_stale_seconds
    settings.job_stale_seconds = 1
    try:
        time.sleep(1.5)
        fail_stale_jobs_task()
    finally:
        settings.job_stale_seconds = saved
    with session_scope() as session:
        job = session.get(Job, chain.train_job_id)
        assert job.state == JobState.failed and "stopped responding" in job.error
        assert session.get(CriticVersion, chain.version_id).state == CriticState.failed
        for link in (chain.evaluate_job_id, chain.score_job_id):
            assert session.get(Job, link).state == JobState.cancelled
        assert active_version(session).id == previous

    # A repeated delivery of the dead task does nothing (the job already ended)...
    assert loop.predecessor_failed(chain.train_job_id)
    # ...and the retry is a new run that succeeds.
    with critic_settings(settings, tiny_base):
        with session_scope(write=True) as session:
            retry = loop.request_training(session, reason="retry")
        run_job(retry.train_job_id, loop.run_training)
        run_job(retry.evaluate_job_id, evaluation.run_evaluation)
    with session_scope() as session:
        assert session.get(CriticVersion, retry.version_id).state in (
            CriticState.active,
            CriticState.ready,
        )


def _skd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_trains_the_packaged_minilm_lists_rolls_back_and_evaluates_a_file(
    settings, engine, tiny_base, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    labels = labelled_corpus(n_heads=24)
    earlier = ready_version(tiny_base, auc=0.6)
    # The default base model is the packaged MiniLM; one short epoch keeps this quick.
    done = _skd("critic", "train", SKD_CRITIC_EPOCHS="1", SKD_CRITIC_HELD_OUT_FRACTION="0.25")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "trained: held-out ROC-AUC" in done.stdout and "scored" in done.stdout
    listed = json.loads(_skd("critic", "list", "--json").stdout)
    newest = listed[-1]
    assert newest["base_model"] == "all-MiniLM-L6-v2"  # recorded by name, not by a path
    assert newest["train_labels"] + newest["held_out_labels"] == len(labels)
    # Its held-out figures come with 95% intervals over resampled heads, in the table too.
    low, high = newest["intervals"]["roc_auc"]
    assert newest["intervals"]["by"] == "head" and low <= newest["roc_auc"] <= high
    table = _skd("critic", "list").stdout
    assert f"{newest['roc_auc']:.3f} [{low:.3f}, {high:.3f}]" in table, table
    if newest["state"] == "active":
        with session_scope() as session:
            corpus = session.scalar(select(func.count()).select_from(Triple))
        assert newest["scored"] == corpus

    rolled = _skd("critic", "activate", str(earlier))
    assert rolled.returncode == 0, rolled.stderr
    assert f"critic version {earlier} is active" in rolled.stdout
    assert "skd critic score" in rolled.stdout  # it has not scored the corpus yet
    with session_scope() as session:
        assert active_version(session).id == earlier

    scored = _skd("critic", "score")
    assert scored.returncode == 0, scored.stderr
    with session_scope() as session:
        assert session.scalar(
            select(func.count()).where(Score.critic_version_id == earlier)
        ) == session.scalar(select(func.count()).select_from(Triple))

    file = tmp_path / "labelled.tsv"
    file.write_text(
        "PersonX eats\txWant\tto sleep well\t2\n"
        "PersonX eats\txWant\tseventeen spoons\t-2\n"
        "PersonX runs\txWant\tto rest\t1\n"
        "PersonX runs\txWant\tthe moon melts\t-1\n"
        "PersonX runs\txWant\tto thank them\n"
    )
    evaluated = _skd("critic", "evaluate", str(file), "--version", str(earlier), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["labelled"] == 4 and report["skipped_unlabelled"] == 1
    assert report["metrics"]["n"] == 4 and report["metrics"]["acceptable"] == 2
    assert 0 <= report["metrics"]["roc_auc"] <= 1
    assert report["metrics"]["intervals"]["groups"] == 2  # two heads in the file
    shown = _skd("critic", "evaluate", str(file), "--version", str(earlier))
    assert shown.returncode == 0, shown.stderr
    assert "ROC-AUC" in shown.stdout and "(95% intervals: 2 heads resampled)" in shown.stdout

    file.write_text("PersonX eats\txWant\tto sleep\t7\n")
    bad = _skd("critic", "evaluate", str(file))
    assert bad.returncode != 0
    assert f"{file}:1: field 'label'" in bad.stdout + bad.stderr

    missing = _skd("critic", "activate", "9999")
    assert missing.returncode != 0 and "no critic version 9999" in missing.stdout + missing.stderr


def test_scoring_chunks_spread_over_two_workers(settings, engine, tiny_base) -> None:  # type: ignore[no-untyped-def]
    """A group of chunk tasks: two worker processes share them and the job still ends exact."""
    from tests.conftest import add_triples
    from workers.critic_tasks import score_chunk

    add_triples(200, head="PersonX hikes {i}", tail="to see the view {i}")
    version_id = ready_version(tiny_base, active=True)
    with critic_settings(settings, tiny_base, critic_score_chunk_size=20):
        with session_scope(write=True) as session:
            job_id = scoring_jobs.request_scoring(session).id
        _, chunks = scoring_jobs.begin_scoring(job_id)
    queue = f"chunks-{os.getpid()}-{time.monotonic_ns()}"
    workers = [_worker(queue, SKD_CRITIC_SCORE_CHUNK_SIZE="20") for _ in range(2)]
    try:
        for chunk in chunks:
            score_chunk.apply_async(
                (job_id, version_id, chunk.first_id, chunk.last_id), queue=queue
            )
        job = wait_for_jobs(job_id, timeout=180)[job_id]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert (job.state, job.done, job.total) == (JobState.succeeded, 200, 200)
