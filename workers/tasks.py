"""Celery tasks: thin, idempotent doors onto plain functions. They take ids, not objects."""

from __future__ import annotations

import logging
from typing import Any

from app.core import processes, queue, triple_counts
from app.core.db import session_scope
from app.core.job_control import sweep_jobs
from app.core.jobs import JobAlreadyFinished, run_job
from app.core.queue import celery_app
from app.corpus.importer import run_import_job

log = logging.getLogger(__name__)


@celery_app.task(name=queue.IMPORT_CORPUS, acks_late=True)
def import_corpus(job_id: int) -> dict[str, Any] | None:
    """Import the files named in job ``job_id``'s params (see ``app.corpus.importer``);
    then the active critic scores what arrived."""
    try:
        result = run_job(job_id, run_import_job)
    except JobAlreadyFinished:
        log.info("job %s already finished; ignoring a repeated delivery", job_id)
        return None
    except ValueError:
        # Bad input is recorded on the job; retrying cannot fix it.
        return None
    from app.critic.queueing import score_what_is_new

    score_what_is_new()
    return result


@celery_app.task(name=queue.FAIL_STALE_JOBS)
def fail_stale_jobs_task() -> dict[str, int]:
    """Beat: fail jobs whose worker died or that no worker took, and free what they held, so
    no progress bar spins forever (``app.core.job_control.sweep_jobs``)."""
    from app.critic import queueing  # noqa: F401 - registers what critic jobs hold
    from app.export import run  # noqa: F401 - and export jobs
    from app.teacher import runs as _teacher  # noqa: F401 - and teacher runs

    report = sweep_jobs().as_dict()
    triple_counts.tidy()  # the corpus counts' rows of differences, folded now and then
    processes.tidy()  # rows of processes gone for a day
    return report


@celery_app.task(name=queue.RELEASE_EXPIRED_LEASES)
def release_expired_leases_task() -> int:
    """Beat: return abandoned items to their campaigns' pools (the hot path does not sweep)."""
    from sqlalchemy import select

    from app.annotation.assign import release_expired_leases
    from app.core.models import Campaign, CampaignState

    released = 0
    with session_scope() as session:
        campaign_ids = list(
            session.scalars(select(Campaign.id).where(Campaign.state == CampaignState.open))
        )
    for campaign_id in campaign_ids:
        with session_scope(write=True) as session:
            released += release_expired_leases(session, campaign_id)
    return released


@celery_app.task(name=queue.BACKUP_DATABASE, acks_late=True)
def backup_database_task(job_id: int | None = None) -> dict[str, Any] | None:
    """Beat: a scheduled backup (``SKD_BACKUP_EVERY_HOURS``), as a job of its own so the jobs
    page shows each one and a failed one (no pg_dump, a full disk) is seen; a retry of that
    job sends its id back here."""
    from app.core.backup import default_path, run_backup_job
    from app.core.config import get_settings
    from app.core.jobs import new_job

    if job_id is None:
        job_id = new_job("backup", {"path": str(default_path(get_settings()))})
    try:
        return run_job(job_id, run_backup_job)
    except JobAlreadyFinished:
        log.info("job %s already finished; ignoring a repeated delivery", job_id)
        return None
