"""Celery tasks: thin, idempotent doors onto plain functions. They take ids, not objects."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.jobs import JobAlreadyFinished, fail_stale_jobs, run_job
from app.corpus.importer import run_import_job

log = logging.getLogger(__name__)


@shared_task(name="skd.import_corpus", acks_late=True)
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
    from workers.critic_tasks import score_what_is_new

    score_what_is_new()
    return result


@shared_task(name="skd.fail_stale_jobs")
def fail_stale_jobs_task() -> int:
    """Beat: fail jobs whose worker died, so no progress bar spins forever."""
    from app.critic.loop import release_dead_trainings

    with session_scope(write=True) as session:
        failed = fail_stale_jobs(session, timedelta(seconds=get_settings().job_stale_seconds))
        # A dead training job holds the training lock until its version is failed too.
        release_dead_trainings(session)
        return failed


@shared_task(name="skd.release_expired_leases")
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
