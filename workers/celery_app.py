"""The Celery app and the beat schedule (the one place periodic work is declared).

Tasks are acked late and a lost worker's task is rejected back to the queue, so a killed
worker's job runs again; jobs are idempotent by id (see ``app.core.jobs.run_job``). With the
embedded
default the broker is Celery's SQLAlchemy transport on a SQLite file: the same code as Redis.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import task_prerun, worker_process_init

from app.core.config import Settings, get_settings


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    if not settings.broker_url or not settings.result_backend:
        settings.ensure_dirs()  # the SQLite files of the embedded broker/backend live there
    app = Celery("skd", broker=settings.broker, backend=settings.results)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=7 * 24 * 3600,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "fail-stale-jobs": {"task": "skd.fail_stale_jobs", "schedule": 60.0},
            "release-expired-leases": {"task": "skd.release_expired_leases", "schedule": 30.0},
            "critic-tick": {"task": "skd.critic_tick", "schedule": settings.critic_check_seconds},
        },
    )
    # One module per room: corpus and housekeeping, the critic loop, exports.
    app.conf.include = ["workers.tasks", "workers.critic_tasks", "workers.export_tasks"]
    return app


@worker_process_init.connect
def _fresh_engine_after_fork(**_kwargs: object) -> None:
    # Pooled connections inherited from the parent process must not be shared.
    from app.core import db

    db.dispose()


@task_prerun.connect
def _jobs_started_here_say_so(task: object = None, **_kwargs: object) -> None:
    # Jobs a task creates record where they came from: "beat" for the scheduled tasks (an
    # automatic retraining or scoring), "worker" for work that follows other work.
    from app.core.origin import set_origin

    name = getattr(task, "name", None)
    app = getattr(task, "app", None)
    schedule = getattr(getattr(app, "conf", None), "beat_schedule", None) or {}
    scheduled = {entry.get("task") for entry in schedule.values()}
    set_origin("beat" if name in scheduled else "worker")


celery_app = create_celery()
