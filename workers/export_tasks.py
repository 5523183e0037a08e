"""Celery tasks of the export room (thin doors onto app functions)."""

from __future__ import annotations

import logging
from typing import Any

from app.core import queue
from app.core.jobs import JobAlreadyFinished, run_job
from app.core.queue import celery_app
from app.export.run import run_export_job

log = logging.getLogger(__name__)


@celery_app.task(name=queue.EXPORT, acks_late=True)
def export_task(job_id: int) -> dict[str, Any] | None:
    """Write the export named in job ``job_id``'s params (see ``app.export.run``).

    Acked late, so a killed worker's export runs again; a re-run rewrites the same bytes.
    """
    try:
        return run_job(job_id, run_export_job)
    except JobAlreadyFinished:
        log.info("job %s already finished or cancelled; not running it", job_id)
        return None
    except ValueError:
        # Bad parameters (or data that changed so that nothing is kept) are recorded on the
        # job; retrying cannot fix them.
        return None
