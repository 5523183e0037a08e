"""The worker side of Celery: the app (made once, in ``app.core.queue``), its signals.

``celery -A workers.celery_app worker`` and ``skd worker``/``skd beat`` load this module. The
app and its configuration (broker, queue, beat schedule) live in ``app.core.queue``, the one
module every door sends through; the tasks in this package are declared on that app by name.
Tasks are acked late and a lost worker's task is rejected back to the queue, so a killed
worker's job runs again; jobs are idempotent by id (see ``app.core.jobs.run_job``). With the
embedded default the broker is Celery's SQLAlchemy transport on a SQLite file.
"""

from __future__ import annotations

import atexit
from typing import Any

from celery.signals import (
    beat_init,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from app.core.queue import celery_app

__all__ = ["celery_app"]


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


# This process's row in ``server_processes`` (app.core.processes): the jobs page tells whether a
# worker takes the web server's queue on its broker, and whether more than one beat runs.
_heartbeat: dict[str, Any] = {}


def _consumed_queues(consumer: Any) -> list[str]:
    app = getattr(consumer, "app", None) or celery_app
    consume_from = getattr(getattr(app.amqp, "queues", None), "consume_from", None) or {}
    return sorted(consume_from) or [app.conf.task_default_queue]


@worker_ready.connect
def _worker_says_alive(sender: Any = None, **_kwargs: object) -> None:
    from app.core.processes import Heartbeat

    queues = _consumed_queues(sender)
    _heartbeat["worker"] = Heartbeat("worker", queues, str(celery_app.conf.broker_url)).start()


@worker_shutdown.connect
def _worker_says_gone(**_kwargs: object) -> None:
    if "worker" in _heartbeat:
        _heartbeat.pop("worker").stop()


@beat_init.connect
def _beat_says_alive(**_kwargs: object) -> None:
    from app.core.processes import Heartbeat

    beat = Heartbeat("beat", [], str(celery_app.conf.broker_url)).start()
    _heartbeat["beat"] = beat
    atexit.register(beat.stop)  # beat has no shutdown signal; it exits through SystemExit
