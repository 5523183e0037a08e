"""Which SKD Studio processes run against this database, and whether they fit together.

A job started from a page is a message on a broker queue; it runs only if some worker takes
that queue on that broker. A worker that is down, started with another `SKD_BROKER_URL` or
another `SKD_CELERY_QUEUE`, looks the same from the page: the job waits, and only the sweep
says so ten minutes later. And two beats double every scheduled job, while restoring a
database under running processes hands them rows that changed meaning.

So each long-running process (`skd serve`, `skd worker`, `skd beat`) keeps a row of
``server_processes`` fresh with a daemon thread (``Heartbeat``): its kind, host, pid, the
queues it sends to (web) or takes (worker), its broker without the password. ``live`` reads
the rows seen within three heartbeats, ``problems`` turns them into the warnings the jobs
page, ``GET /api/processes`` and ``skd processes`` show, and ``skd db restore`` refuses while
any is alive. A process that stops cleanly deletes its row; a killed one's row ages out.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.models import ServerProcess, utcnow

log = logging.getLogger(__name__)

KINDS = ("web", "worker", "beat")
MISSED_BEATS = 3  # a process silent for this many heartbeats counts as gone
FORGET_AFTER = timedelta(days=1)  # a gone process's row is deleted by the sweep after this


def safe_broker(url: str) -> str:
    """The broker's address without its password: what the page may show and compare."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url, mask="***"))


def alive_window(every: float) -> timedelta:
    """How long a process that says it is alive every ``every`` seconds counts as alive."""
    return timedelta(seconds=every * MISSED_BEATS + 2)


@dataclass(frozen=True)
class ProcessView:
    """One live process as the page and the API show it."""

    kind: str
    host: str
    pid: int
    queues: tuple[str, ...]
    broker: str
    version: str
    started_at: datetime
    seen_at: datetime
    every: float = 15.0  # its own heartbeat interval: it counts as gone after three missed

    @property
    def seen_ago(self) -> str:
        """``4 s ago``: how fresh its last word is (the page and ``skd processes``)."""
        return f"{max(0, round((utcnow() - self.seen_at).total_seconds()))} s ago"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.pid}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "broker": self.broker,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "seen_at": self.seen_at.isoformat(),
        }


def _seen(session: Session) -> list[tuple[ProcessView, bool]]:
    """Every process seen within ``FORGET_AFTER``, with whether it is alive: seen within
    three of its own heartbeats (each row carries its interval, so a worker set to beat every
    minute is not taken for gone by a web server that beats every 15 s)."""
    now = utcnow()
    rows = session.scalars(select(ServerProcess).where(ServerProcess.seen_at >= now - FORGET_AFTER))
    seen = [
        (
            ProcessView(
                kind=row.kind,
                host=row.host,
                pid=row.pid,
                queues=tuple(q for q in row.queues.split(",") if q),
                broker=row.broker,
                version=row.version,
                started_at=row.started_at,
                seen_at=row.seen_at,
                every=row.heartbeat_seconds,
            ),
            row.seen_at >= now - alive_window(row.heartbeat_seconds),
        )
        for row in rows
    ]
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(seen, key=lambda pair: (order.get(pair[0].kind, 9), pair[0].host, pair[0].pid))


def census(session: Session) -> tuple[list[ProcessView], list[ProcessView]]:
    """From one read: the processes alive now (by kind, host and pid), and those that
    stopped without saying so within the last day, newest first (a clean stop deletes the
    row): killed, out of memory, their machine lost. A worker among the latter is usually why
    a running job later fails with "the worker stopped responding"."""
    seen = _seen(session)
    alive = [view for view, is_alive in seen if is_alive]
    gone = [view for view, is_alive in seen if not is_alive]
    return alive, sorted(gone, key=lambda view: view.seen_at, reverse=True)


def live(session: Session) -> list[ProcessView]:
    """The processes alive now, by kind, host and pid."""
    return census(session)[0]


def gone_silently(session: Session) -> list[ProcessView]:
    """The processes that stopped without saying so within the last day (see ``census``)."""
    return census(session)[1]


def why_jobs_wait(session: Session, settings: Settings | None = None) -> list[str]:
    """Why a queued job would not be taken: no worker, or none on this queue and broker
    (what a queued job's bar and ``skd … --background`` say under it)."""
    return problems_here(live(session), settings, workers_only=True)


def worker_problem(processes: Sequence[ProcessView], broker: str, queue: str) -> str | None:
    """Why jobs sent to ``queue`` on ``broker`` would wait: no worker at all, or none on
    that queue and broker (naming what each takes instead); None when one takes them."""
    broker = safe_broker(broker)
    workers = [p for p in processes if p.kind == "worker"]
    if not workers:
        return (
            "No worker is running: jobs started now wait in the queue until one starts "
            "(run skd worker, or start the worker service of docker-compose)."
        )
    if any(p.broker == broker and queue in p.queues for p in workers):
        return None
    elsewhere = "; ".join(
        f"{p.where} takes {', '.join(p.queues) or 'no queue'} on {p.broker}" for p in workers
    )
    return (
        f"No running worker takes the queue '{queue}' on {broker}, where this server sends "
        f"jobs: they will wait. Workers seen: {elsewhere}. Start the worker with the same "
        "SKD_BROKER_URL and SKD_CELERY_QUEUE as the web server."
    )


def beat_problem(processes: Sequence[ProcessView], scheduled: Sequence[str] = ()) -> str | None:
    """No beat while work is scheduled (``scheduled``: what beat would start, in words), or
    more than one beat: every scheduled job then runs once per beat."""
    beats = [p for p in processes if p.kind == "beat"]
    if not beats and scheduled:
        return (
            f"No beat is running: {' and '.join(scheduled)} will not happen until one starts "
            "(run skd beat, exactly one, or start the beat service of docker-compose)."
        )
    if len(beats) < 2:
        return None
    return (
        f"{len(beats)} beat processes are running ({', '.join(p.where for p in beats)}): "
        "every scheduled job (backups, retraining checks, sweeps) runs once per beat. "
        "Stop all but one."
    )


def problems(
    processes: Sequence[ProcessView], broker: str, queue: str, scheduled: Sequence[str] = ()
) -> list[str]:
    """What will go wrong with these processes, for a web server that sends jobs to ``queue``
    on ``broker`` (its own settings) and expects beat to start ``scheduled``: plain
    sentences, the most serious first. (Where the heartbeats are off, nobody says they run:
    see ``problems_here``.)"""
    found = (worker_problem(processes, broker, queue), beat_problem(processes, scheduled))
    return [problem for problem in found if problem is not None]


def record(
    instance: str,
    kind: str,
    queues: Iterable[str],
    broker: str,
    started_at: datetime,
    every: float,
) -> None:
    """Say this process is alive now (its row is made again if it went, say by a restore)."""
    from app import __version__
    from app.core.db import session_scope

    now = utcnow()
    with session_scope(write=True) as session:
        found = session.execute(
            update(ServerProcess).where(ServerProcess.instance == instance).values(seen_at=now)
        )
        if not found.rowcount:
            session.add(
                ServerProcess(
                    instance=instance,
                    kind=kind,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    queues=",".join(queues)[:500],
                    broker=safe_broker(broker)[:500],
                    version=__version__[:40],
                    started_at=started_at,
                    seen_at=now,
                    heartbeat_seconds=every,
                )
            )


def forget(session: Session, instance: str | None = None) -> int:
    """Delete one process's row (it stopped), or, with no instance, every row not seen for
    ``FORGET_AFTER`` (what the sweep tidies)."""
    statement = delete(ServerProcess)
    if instance is not None:
        statement = statement.where(ServerProcess.instance == instance)
    else:
        statement = statement.where(ServerProcess.seen_at < utcnow() - FORGET_AFTER)
    return int(session.execute(statement).rowcount or 0)


class Heartbeat:
    """A daemon thread that keeps this process's row fresh until ``stop``."""

    def __init__(self, kind: str, queues: Iterable[str], broker: str) -> None:
        assert kind in KINDS, kind
        self.kind, self.queues, self.broker = kind, list(queues), broker
        self.instance = uuid.uuid4().hex
        self.started_at = utcnow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.every = 0.0

    def start(self, settings: Settings | None = None) -> Heartbeat:
        every = (settings or get_settings()).process_heartbeat_seconds
        if every <= 0:
            return self
        self.every = every
        self._beat()  # seen at once, not a heartbeat later
        self._thread = threading.Thread(
            target=self._loop, args=(every,), name=f"skd-{self.kind}-heartbeat", daemon=True
        )
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            record(self.instance, self.kind, self.queues, self.broker, self.started_at, self.every)
            if self.kind == "web":  # what every staff page's navigation flags
                remember_problems()
        except Exception:  # a restarting or locked database: try again next time
            log.warning("could not record that this %s process is alive", self.kind, exc_info=True)

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self._beat()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        from app.core.db import session_scope

        try:
            with session_scope(write=True) as session:
                forget(session, self.instance)
        except Exception:
            log.warning("could not record that this %s process stopped", self.kind, exc_info=True)


def tidy() -> int:
    """Delete the rows of processes gone for a day (the sweeps, web's and beat's, call it)."""
    from app.core.db import session_scope

    with session_scope(write=True) as session:
        return forget(session)


def problems_here(
    processes: Sequence[ProcessView],
    settings: Settings | None = None,
    *,
    workers_only: bool = False,
) -> list[str]:
    """``problems`` for this process's own broker and queue; none when this installation
    turned the heartbeats off (``SKD_PROCESS_HEARTBEAT_SECONDS=0``: an empty list of processes
    then means nothing, and "no worker is running" would be a false alarm)."""
    settings = settings or get_settings()
    if settings.process_heartbeat_seconds <= 0:
        return []
    if workers_only:  # why a queued job waits
        found = worker_problem(processes, settings.broker, settings.celery_queue)
        return [found] if found else []
    return problems(processes, settings.broker, settings.celery_queue, scheduled_work(settings))


def scheduled_work(settings: Settings) -> list[str]:
    """What only beat starts, in words, as these settings ask for it (the job sweep is not
    among it: every web server sweeps too)."""
    work = []
    if settings.critic_retrain_labels > 0:
        work.append(f"retraining the critic after {settings.critic_retrain_labels} fresh labels")
    if settings.backup_every_hours > 0:
        every = settings.backup_every_hours
        work.append(f"the backup every {every:g} h" if every >= 1 else "the scheduled backups")
    return work


# The problems as this web server's heartbeat last found them: every staff page flags them in
# its navigation without a query of its own (they are at most one heartbeat old).
_latest: list[str] = []


def remember_problems() -> list[str]:
    """Find the problems now and keep them for ``latest_problems`` (the web heartbeat does,
    each beat)."""
    from app.core.db import session_scope

    with session_scope() as session:
        found = problems_here(live(session))
    _latest[:] = found
    return found


def latest_problems() -> list[str]:
    """The problems the last heartbeat found (none before the first one)."""
    return list(_latest)
