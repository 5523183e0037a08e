"""`skd jobs`: list and follow long-running jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import fail, follow, schema_ready

jobs_app = typer.Typer(help="Long-running jobs.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    limit: int = 20,
    kind: Annotated[
        str | None, typer.Option(help="Only jobs of this kind (import, export...).")
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state (queued, running, failed...).")
    ] = None,
) -> None:
    """Recent jobs: what each works on, who started it, state and progress (as /jobs shows)."""
    from rich.table import Table

    from app.cli.console import out
    from app.core.db import session_scope
    from app.core.job_list import STATES, list_jobs

    if state is not None and state not in STATES:
        raise fail(f"--state: use one of {', '.join(STATES)}", 2)
    schema_ready()
    table = Table()
    for column in ("id", "works on", "started by", "state", "progress", "message"):
        table.add_column(column, overflow="fold")
    with session_scope() as session:
        for job in list_jobs(session, kind=kind, state=state, limit=limit):
            fraction = job["fraction"]
            table.add_row(
                str(job["id"]),
                job["label"],
                job["started_by"],
                job["state"],
                "" if fraction is None else f"{fraction:.0%}",
                job["error"] or job["message"],
            )
    out.print(table)


@jobs_app.command("watch")
def jobs_watch(job_id: int) -> None:
    """Follow a job's progress bar until it ends."""
    schema_ready()
    follow(job_id)


def _register_kinds() -> None:
    # The steps say what their jobs hold (the training lock, a half-written export) and how
    # a training is retried.
    from app.critic import queueing  # noqa: F401
    from app.export import run  # noqa: F401
    from app.teacher import runs as _teacher  # noqa: F401


@jobs_app.command("cancel")
def jobs_cancel(job_id: int) -> None:
    """Cancel a queued or running job: its task is revoked and what it held is released."""
    from app.cli.console import out
    from app.core.job_control import JobStateError, cancel_job
    from app.core.origin import current_origin

    schema_ready()
    _register_kinds()
    origin = current_origin()
    try:
        job = cancel_job(job_id, by=origin.door if origin else "cli")
    except (LookupError, JobStateError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    out.print(f"job #{job['id']} ({job['kind']}) {job['state']}: {job['message']}")


@jobs_app.command("retry")
def jobs_retry(
    job_id: int,
    follow_it: bool = typer.Option(
        False, "--follow", help="Follow the new job's progress until it ends."
    ),
) -> None:
    """Run a failed or cancelled job again with the same parameters (a new job)."""
    from app.cli.console import out
    from app.core.job_control import JobStateError, retry_job
    from app.core.queue import BrokerUnavailable

    schema_ready()
    _register_kinds()
    try:
        new_id = retry_job(job_id)
    except (LookupError, JobStateError, BrokerUnavailable) as exc:
        raise fail(str(exc).strip("'\"")) from None
    out.print(f"job #{job_id} retried as job #{new_id}")
    if follow_it:
        follow(new_id)


@jobs_app.command("sweep")
def jobs_sweep() -> None:
    """Fail jobs that hang unseen now (running without heartbeats, queued with no worker
    taking them) and release what they held; beat and the web server also do it."""
    from app.cli.console import out
    from app.core.job_control import sweep_jobs

    schema_ready()
    _register_kinds()
    report = sweep_jobs()
    out.print(
        f"failed {report.stale} job(s) whose worker stopped responding and "
        f"{report.unstarted} that no worker took"
    )


def processes_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when there is a problem (for monitoring).")
    ] = False,
) -> None:
    """The web servers, workers and beats running against this database (each says so every
    SKD_PROCESS_HEARTBEAT_SECONDS), and what will go wrong: no worker taking the queue that
    jobs are sent to on this broker, more than one beat. As the jobs page shows them."""
    import json

    from rich.table import Table

    from app.cli.console import console, out
    from app.core import processes
    from app.core.config import get_settings
    from app.core.db import session_scope

    schema_ready()
    settings = get_settings()
    with session_scope() as session:
        alive, gone = processes.census(session)
    problems = processes.problems_here(alive, settings)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "processes": [p.as_dict() for p in alive],
                    "problems": problems,
                    "gone_silently": [p.as_dict() for p in gone],
                }
            )
        )
    else:
        table = Table(title=f"Processes ({len(alive)} running)", title_justify="left")
        for column in ("process", "host:pid", "queues", "broker", "up since", "last seen"):
            table.add_column(column, overflow="fold")
        for p in alive:
            table.add_row(
                p.kind,
                p.where,
                "–" if p.kind == "beat" else ", ".join(p.queues),
                p.broker,
                p.started_at.strftime("%Y-%m-%d %H:%M"),
                p.seen_ago,
            )
        out.print(table)
        for problem in problems:
            console.print(f"[bold yellow]problem:[/] {problem}", highlight=False)
        if gone:
            named = "; ".join(
                f"{p.kind} {p.where}, last seen {p.seen_at:%Y-%m-%d %H:%M} UTC" for p in gone
            )
            out.print(
                f"stopped without saying so (killed, out of memory, machine lost) in the last "
                f"day: {named}",
                highlight=False,
            )
        if settings.process_heartbeat_seconds <= 0:
            out.print("processes do not say they run here (SKD_PROCESS_HEARTBEAT_SECONDS=0)")
        elif not problems:
            out.print(
                f"jobs go to the queue '{settings.celery_queue}' on "
                f"{processes.safe_broker(settings.broker)}: a worker takes it"
            )
    if check and problems:
        raise typer.Exit(1)


# --- accounts -------------------------------------------------------------------------------
