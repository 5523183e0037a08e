"""Queueing goes to the configured broker from any thread: the tasks are bound to the one app
of ``app.core.queue``, never to Celery's thread-local default app."""

from __future__ import annotations

import threading

from app.core import queue


def test_tasks_use_the_configured_app_from_any_thread(settings) -> None:  # type: ignore[no-untyped-def]
    import workers.critic_tasks
    import workers.export_tasks
    import workers.tasks

    tasks = [
        workers.tasks.import_corpus,
        workers.export_tasks.export_task,
        workers.critic_tasks.train_critic,
        workers.critic_tasks.score_chunk,
    ]
    seen: list[tuple[object, str]] = []

    def look() -> None:
        for task in tasks:
            app = task._get_app()
            seen.append((app, app.conf.broker_url))

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(10)
    assert seen == [(queue.celery_app, settings.broker)] * len(tasks)
    assert {task.name for task in tasks} <= {
        queue.IMPORT_CORPUS,
        queue.EXPORT,
        queue.CRITIC_TRAIN,
        queue.CRITIC_SCORE_CHUNK,
    }


def test_a_job_sent_from_another_thread_reaches_the_worker(
    settings, engine, celery_worker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from app.core.job_control import dispatch
    from app.core.jobs import new_job
    from tests.critic_helpers import wait_for_jobs

    file = tmp_path / "t.tsv"
    file.write_text("PersonX waves\txWant\tto say hello\n")
    job_id = new_job("import", {"paths": [str(file)], "names": ["t.tsv"]})
    thread = threading.Thread(target=dispatch, args=(job_id, queue.IMPORT_CORPUS))
    thread.start()
    thread.join(30)
    assert wait_for_jobs(job_id, timeout=60)[job_id].state.value == "succeeded"


def test_an_idle_worker_looks_for_tasks_as_often_as_set(settings, celery_worker) -> None:  # type: ignore[no-untyped-def]
    """On the embedded SQLite broker the worker polls: at kombu's default of once a second,
    every task that starts the next one (a teacher run's chunks, train → evaluate → score)
    waited up to a second for it. Redis hands tasks over at once and keeps its own wait."""
    transport = celery_worker.consumer.connection.transport
    if settings.broker.startswith("sqla+"):
        assert transport.polling_interval == settings.broker_poll_seconds < 1
    else:
        assert transport.polling_interval is None
