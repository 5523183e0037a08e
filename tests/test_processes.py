"""Which processes run against the database, and the problems they make (app.core.processes).

A worker on another queue or broker, or none, leaves jobs started from a page waiting with
nothing said for ten minutes; two beats run every scheduled job twice; a restore under running
processes changes what their rows mean. Here the rules, in-process on the real database; the
real `skd serve`/`skd worker`/`skd beat` processes report themselves in tests/test_e2e_jobs.py
and tests/test_restore_e2e.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.core import processes
from app.core.db import session_scope
from app.core.models import ServerProcess, utcnow
from app.core.processes import Heartbeat, ProcessView, problems

BROKER = "redis://:secret@broker.example:6379/0"
SHOWN = "redis://:***@broker.example:6379/0"


def view(kind: str, queues: tuple[str, ...] = ("celery",), broker: str = SHOWN, pid: int = 1):
    now = utcnow()
    return ProcessView(kind, "host", pid, queues, broker, "0.1.0", now, now)


def test_the_broker_is_shown_and_compared_without_its_password() -> None:
    assert processes.safe_broker(BROKER) == SHOWN
    assert "secret" not in processes.safe_broker("amqp://user:secret@rabbit:5672//")


def test_a_worker_taking_the_queue_on_the_same_broker_is_no_problem() -> None:
    fine = [view("web"), view("worker", ("celery", "other")), view("beat")]
    assert problems(fine, BROKER, "celery") == []
    assert problems([view("worker")], BROKER, "celery") == []  # no beat is allowed


def test_no_worker_another_queue_or_another_broker_is_said_with_what_is_running() -> None:
    (none,) = problems([view("web")], BROKER, "celery")
    assert none.startswith("No worker is running") and "skd worker" in none

    (queue,) = problems([view("worker", ("studies",), pid=42)], BROKER, "celery")
    assert "No running worker takes the queue 'celery' on " + SHOWN in queue
    assert "host:42 takes studies on " + SHOWN in queue
    assert "SKD_CELERY_QUEUE" in queue

    elsewhere = "sqla+sqlite:///other/broker.sqlite"
    (broker,) = problems([view("worker", broker=elsewhere)], BROKER, "celery")
    assert "host:1 takes celery on " + elsewhere in broker and "SKD_BROKER_URL" in broker


def test_no_beat_is_a_problem_only_where_beat_has_work(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Beat alone retrains the critic on fresh labels and takes the scheduled backups (every
    web server sweeps jobs too): without it they silently stop."""
    worker = view("worker", (settings.celery_queue,), processes.safe_broker(settings.broker))
    monkeypatch.setattr(settings, "critic_retrain_labels", 200)
    monkeypatch.setattr(settings, "backup_every_hours", 24)
    (found,) = processes.problems_here([worker], settings)
    assert found.startswith("No beat is running: retraining the critic after 200 fresh labels")
    assert "the backup every 24 h" in found and "skd beat" in found
    assert processes.problems_here([worker, view("beat")], settings) == []
    monkeypatch.setattr(settings, "critic_retrain_labels", 0)
    monkeypatch.setattr(settings, "backup_every_hours", 0)
    assert processes.problems_here([worker], settings) == []  # nothing for beat to do


def test_more_than_one_beat_is_a_problem_naming_each() -> None:
    two = [view("worker"), view("beat", pid=7), view("beat", pid=8)]
    (found,) = problems(two, BROKER, "celery")
    assert found.startswith("2 beat processes are running (host:7, host:8)")


def test_a_heartbeat_is_seen_at_once_kept_fresh_and_gone_when_stopped(
    engine, settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "process_heartbeat_seconds", 0.2)
    beat = Heartbeat("worker", ["celery"], BROKER).start(settings)
    try:
        with session_scope() as session:
            (seen,) = [p for p in processes.live(session) if p.kind == "worker"]
        assert seen.queues == ("celery",) and seen.broker == SHOWN
        first = seen.seen_at
        with session_scope(write=True) as session:  # a restore took its row away
            session.query(ServerProcess).delete()
        deadline = utcnow() + timedelta(seconds=10)
        while True:
            with session_scope() as session:
                again = [p for p in processes.live(session) if p.kind == "worker"]
            if again:
                break
            assert utcnow() < deadline, "the heartbeat did not make its row again"
        assert again[0].seen_at > first and again[0].started_at == seen.started_at
    finally:
        beat.stop()
    with session_scope() as session:
        assert (
            session.scalars(select(ServerProcess).where(ServerProcess.kind == "worker")).all() == []
        )


def test_a_silent_process_stops_counting_and_its_row_goes_after_a_day(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """Three missed heartbeats of its own: a worker that beats every minute is alive after
    100 s of silence, one that beats every 15 s is not."""
    assert processes.alive_window(15) == timedelta(seconds=47)
    rows = (  # pid, its interval, silent for
        (1, 15.0, timedelta(0)),
        (2, 15.0, timedelta(seconds=100)),
        (3, 60.0, timedelta(seconds=100)),
        (4, 15.0, timedelta(days=2)),
    )
    with session_scope(write=True) as session:
        for pid, every, silent in rows:
            session.add(
                ServerProcess(
                    instance=f"i{pid}", kind="worker", host="h", pid=pid, queues="celery",
                    broker=SHOWN, version="0", seen_at=utcnow() - silent, heartbeat_seconds=every,
                )
            )  # fmt: skip
    with session_scope() as session:
        assert [p.pid for p in processes.live(session) if p.host == "h"] == [1, 3]
        # the one that went quiet is told apart from one that stopped cleanly (no row)
        assert [p.pid for p in processes.gone_silently(session) if p.host == "h"] == [2]
    assert processes.tidy() == 1
    with session_scope() as session:
        left = session.scalars(select(ServerProcess.pid).where(ServerProcess.host == "h")).all()
    assert sorted(left) == [1, 2, 3]


def test_with_heartbeats_off_nothing_is_called_a_problem(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert processes.problems_here([], settings)[0].startswith("No worker is running")
    monkeypatch.setattr(settings, "process_heartbeat_seconds", 0)
    assert processes.problems_here([], settings) == []  # nobody says they run: no false alarm
    assert Heartbeat("web", [], BROKER).start(settings).stop() is None  # starts nothing


def test_the_jobs_page_and_the_api_say_what_runs_and_what_is_wrong(staff_client, settings) -> None:  # type: ignore[no-untyped-def]
    """The in-process server (its lifespan ran) lists itself; with no worker it says so on
    the page and in the API, and the problem goes once a worker takes its queue."""
    listed = staff_client.get("/api/processes")
    assert listed.status_code == 200
    body = listed.json()
    assert [p["kind"] for p in body["processes"]] == ["web"]
    assert body["queue"] == settings.celery_queue
    assert body["problems"] and body["problems"][0].startswith("No worker is running")
    page = staff_client.get("/jobs")
    assert "Processes" in page.text and "No worker is running" in page.text
    # every staff page flags it on Jobs in the navigation, as the last heartbeat found it
    processes.remember_problems()
    flagged = staff_client.get("/").text
    assert 'class="nav-alert"' in flagged and "with the processes)" in flagged

    worker = Heartbeat("worker", [settings.celery_queue], settings.broker).start(settings)
    beat = Heartbeat("beat", [], settings.broker).start(settings)
    try:
        body = staff_client.get("/api/processes").json()
        assert [p["kind"] for p in body["processes"]] == ["web", "worker", "beat"]
        assert body["problems"] == []
        panel = staff_client.get("/jobs/processes")
        assert panel.status_code == 200 and "No worker" not in panel.text
        assert processes.remember_problems() == []
        assert 'class="nav-alert"' not in staff_client.get("/").text
        assert f"<code>{settings.celery_queue}</code>" in panel.text
    finally:
        worker.stop()
        beat.stop()


def test_processes_are_for_staff_only(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/processes").status_code == 401
    assert client.get("/jobs/processes", follow_redirects=False).status_code in (303, 401)


@pytest.mark.parametrize("kind", ["web", "worker", "beat"])
def test_a_restore_is_refused_while_a_process_is_alive(engine, settings, kind) -> None:  # type: ignore[no-untyped-def]
    from app.core.restore import RestoreError, refuse_while_running

    refuse_while_running(settings)  # nothing alive: fine
    beat = Heartbeat(kind, ["celery"], settings.broker).start(settings)
    try:
        with pytest.raises(RestoreError, match=rf"1 SKD Studio process\(es\) .*: {kind} \("):
            refuse_while_running(settings)
    finally:
        beat.stop()
    refuse_while_running(settings)
