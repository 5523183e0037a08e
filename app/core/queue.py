"""Queueing work for the Celery workers: the one Celery app, the task names, and ``enqueue``.

Every door that starts background work (web routes in any thread, ``skd ... --background``,
beat, a task that starts another) sends through this module, by task *name*, on the app
created here. Nothing relies on Celery's thread-local "current app": a ``shared_task`` called
from a thread other than the one that first imported the worker package would fall back to
Celery's built-in default app (broker ``amqp://localhost``), which is how web-started jobs
used to stay "queued" for ever. The tasks in ``workers/`` are declared on this same app
(``@celery_app.task(name=...)``), so the worker consumes what the doors send.

The configuration is read from the settings lazily, on first use, so importing this module
early (tests, the CLI) does not freeze the broker address before the settings are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, bootsteps, chain, group
from kombu.exceptions import OperationalError

from app.core.config import Settings, get_settings

# --- task names (the contract between the doors and workers/) -------------------------------
IMPORT_CORPUS = "skd.import_corpus"
EXPORT = "skd.export"
CRITIC_TRAIN = "skd.critic_train"
CRITIC_EVALUATE = "skd.critic_evaluate"
CRITIC_SCORE = "skd.critic_score"
CRITIC_SCORE_CHUNK = "skd.critic_score_chunk"
CRITIC_TICK = "skd.critic_tick"
FAIL_STALE_JOBS = "skd.fail_stale_jobs"
RELEASE_EXPIRED_LEASES = "skd.release_expired_leases"
TEACHER_RUN = "skd.teacher_run"
TEACHER_CHUNK = "skd.teacher_chunk"
STUDENT_TRAIN = "skd.student_train"
STUDENT_EVALUATE = "skd.student_evaluate"
BACKUP_DATABASE = "skd.backup_database"

# The task that runs a job of a given kind with the job id as its only argument: what a
# plain retry sends. Kinds that need more (a training chain) register their own retry.
TASK_FOR_KIND: dict[str, str] = {
    "import": IMPORT_CORPUS,
    "export": EXPORT,
    "critic_score": CRITIC_SCORE,
    "student_evaluate": STUDENT_EVALUATE,
    "backup": BACKUP_DATABASE,
}


class BrokerUnavailable(RuntimeError):
    """The broker did not take the message (down, unreachable, refused). The web answers 503."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration from the settings (also the beat schedule: one place)."""
    if not settings.broker_url or not settings.result_backend:
        settings.ensure_dirs()  # the SQLite files of the embedded broker/backend live there
    return {
        "broker_url": settings.broker,
        "result_backend": settings.results,
        "task_default_queue": settings.celery_queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Acked late + rejected when the worker is lost: a killed worker's job runs again;
        # jobs are idempotent by id (see app.core.jobs.run_job).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "result_expires": 7 * 24 * 3600,
        "timezone": "UTC",
        "broker_connection_retry_on_startup": True,
        # A publish to a dead broker fails within about a second instead of hanging the
        # request that started the job.
        "broker_connection_timeout": 3,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "worker_hijack_root_logger": False,
        "include": [
            "workers.tasks",
            "workers.critic_tasks",
            "workers.export_tasks",
            "workers.teacher_tasks",
            "workers.student_tasks",
        ],
        "beat_schedule": {
            "fail-stale-jobs": {
                "task": FAIL_STALE_JOBS,
                "schedule": settings.job_sweep_seconds if settings.job_sweep_seconds > 0 else 60.0,
            },
            "release-expired-leases": {"task": RELEASE_EXPIRED_LEASES, "schedule": 30.0},
            "critic-tick": {"task": CRITIC_TICK, "schedule": settings.critic_check_seconds},
            **(
                {
                    "backup-database": {
                        "task": BACKUP_DATABASE,
                        "schedule": settings.backup_every_hours * 3600,
                    }
                }
                if settings.backup_every_hours > 0
                else {}
            ),
        },
    }


class BrokerPolling(bootsteps.StartStopStep):
    """How long an idle worker sleeps between looks at a polled broker: kombu's SQLAlchemy
    transport (the embedded default) sleeps a whole second by default, which every task
    that starts the next one (a teacher run's chunks, a critic's train → evaluate → score)
    paid again. Set on the consumer's own transport once its connection is up (and again
    after a reconnect: consumer steps restart with it). Not through
    ``broker_transport_options``: that transport hands its options to ``create_engine``,
    which refuses the key. Brokers that push (Redis, RabbitMQ) are left alone."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, parent: Any) -> None:
        transport = parent.connection.transport if parent.connection else None
        if getattr(transport, "driver_name", None) == "sqlalchemy":
            transport.polling_interval = get_settings().broker_poll_seconds


celery_app = Celery("skd", set_as_current=False)
celery_app.steps["consumer"].add(BrokerPolling)
celery_app.add_defaults(lambda: celery_config(get_settings()))


def configure(settings: Settings) -> Celery:
    """Re-read the settings (tests switch data dirs and queues); before the first send."""
    celery_app.conf.update(celery_config(settings))
    return celery_app


def _sent(action: str, send: Any) -> Any:
    try:
        return send()
    except (OperationalError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(
            f"could not {action}: the broker at {_safe_url()} did not answer ({exc}); "
            "is it running?"
        ) from exc


def _safe_url() -> str:
    """The broker address without its password (it appears in messages users read)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(celery_app.conf.broker_url))


def enqueue(task_name: str, *args: Any, **kwargs: Any) -> str:
    """Send ``task_name(*args, **kwargs)`` to the configured broker; the Celery task id.

    Raises ``BrokerUnavailable`` when the broker cannot take it.
    """
    result = _sent(
        f"queue {task_name}",
        lambda: celery_app.send_task(task_name, args=args, kwargs=kwargs),
    )
    return str(result.id)


def enqueue_chain(links: Sequence[tuple[str, tuple[Any, ...]]]) -> list[str]:
    """Send tasks that run one after another (each ignores its predecessor's result);
    their Celery ids, in order."""
    signatures = [celery_app.signature(name, args=args, immutable=True) for name, args in links]
    result = _sent("queue a chain", lambda: chain(*signatures).apply_async())
    ids: list[str] = []
    node = result
    while node is not None:
        ids.append(str(node.id))
        node = node.parent
    return list(reversed(ids))


def enqueue_group(task_name: str, calls: Sequence[tuple[Any, ...]]) -> None:
    """Send one task per argument tuple, to run side by side on any workers."""
    if not calls:
        return
    signatures = [celery_app.signature(task_name, args=args, immutable=True) for args in calls]
    _sent(f"queue {len(signatures)} {task_name} tasks", lambda: group(signatures).apply_async())


def revoke(celery_id: str) -> bool:
    """Tell the workers to drop a queued task (best effort: the job row's state is what a
    worker checks before it starts). False when the broker cannot broadcast it."""
    try:
        celery_app.control.revoke(celery_id)
    except Exception:  # noqa: BLE001 - not every transport broadcasts (SQLAlchemy's doesn't)
        return False
    return True
