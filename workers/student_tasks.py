"""Celery tasks of the student room: thin doors onto ``app.student`` (ids in, no objects).

Both are acked late: a killed worker's training or evaluation runs again from the start (a
training writes into a hidden folder that the re-run replaces; an evaluation writes nothing
until its generation is done).
"""

from __future__ import annotations

import logging
from typing import Any

from app.core import queue
from app.core.jobs import JobAlreadyFinished, run_job
from app.core.queue import celery_app
from app.student.evaluation import run_evaluation_job
from app.student.runs import run_training_job

log = logging.getLogger(__name__)


def _run(job_id: int, work: Any) -> dict[str, Any] | None:
    try:
        return run_job(job_id, work)
    except JobAlreadyFinished:
        log.info("job %s already finished or cancelled; not running it", job_id)
    except Exception:
        # Recorded on the job (and the model row); retrying the same input would fail again.
        log.exception("student job %s failed", job_id)
    return None


@celery_app.task(name=queue.STUDENT_TRAIN, acks_late=True)
def train_student(job_id: int) -> dict[str, Any] | None:
    """Train the student model named in job ``job_id``'s params (``app.student.runs``)."""
    return _run(job_id, run_training_job)


@celery_app.task(name=queue.STUDENT_EVALUATE, acks_late=True)
def evaluate_students(job_id: int) -> dict[str, Any] | None:
    """Generate, gather and open the evaluation campaign of job ``job_id``."""
    return _run(job_id, run_evaluation_job)
