"""Helpers every command group shares: a clear failure, a schema check, following a job."""

from __future__ import annotations

import time

import typer
from sqlalchemy.orm import Session

from app.core.config import get_settings


def fail(message: str, code: int = 1) -> typer.Exit:
    from app.cli.console import console

    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def require_data_dir() -> None:
    """Outside a set-up folder, say where we looked instead of creating ``./skd-data``.

    Only the implicit default is checked: a data dir named by ``SKD_DATA_DIR``, or a server
    database in ``SKD_DATABASE_URL``, is a deliberate choice and is created when missing.
    ``skd demo`` and ``skd db upgrade`` set a folder up and do not ask.
    """
    settings = get_settings()
    if "data_dir" in settings.model_fields_set or settings.database_url:
        return
    folder = settings.data_dir.resolve()
    if folder.is_dir():
        return
    raise fail(
        f"no SKD Studio data dir here: looked at {folder} (the default, ./skd-data in the "
        "current folder, because SKD_DATA_DIR is not set). Run this from the folder you set "
        "up, point to it with `export SKD_DATA_DIR=/path/to/skd-data` (or a line in .env), or "
        "set up a new one here with `skd demo` or `skd db upgrade`."
    )


def schema_ready() -> None:
    """Commands that need tables say so clearly on an empty database."""
    from app.core import migrate
    from app.core.db import configure

    require_data_dir()
    settings = get_settings()
    settings.ensure_dirs()
    configure(settings)
    if migrate.current() is None:
        raise fail(f"the database at {settings.database} has no schema; run `skd db upgrade` first")


def follow(job_id: int) -> dict:
    """Show a job's progress from its row until it finishes (any worker may be running it)."""
    from app.cli.console import RichProgress
    from app.core.db import session_scope
    from app.core.models import Job, JobState

    warned = False
    with RichProgress(f"job #{job_id}") as bar:
        while True:
            with session_scope() as session:
                job = session.get(Job, job_id)
                if job is None:
                    raise fail(f"no job {job_id}")
                bar.update(job.done, job.total, job.message)
                if job.state == JobState.queued and not warned:
                    warned = _say_why_it_waits(session)
                if job.state.finished:
                    if job.state != JobState.succeeded:
                        raise fail(f"job #{job_id} {job.state.value}: {job.error}")
                    return dict(job.result or {})
            time.sleep(0.5)


def _say_why_it_waits(session: Session) -> bool:
    """Under a queued job's bar, once: no worker takes the queue it was sent to (returns
    whether it said something)."""
    from app.cli.console import console
    from app.core import processes

    reasons = processes.why_jobs_wait(session)
    for reason in reasons:
        console.print(f"[bold yellow]waiting:[/] {reason}", highlight=False)
    return bool(reasons)
