"""`skd jobs`: list and follow long-running jobs."""

from __future__ import annotations

import typer

from app.cli.common import follow, schema_ready

jobs_app = typer.Typer(help="Long-running jobs.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(limit: int = 20) -> None:
    """Recent jobs with their state and progress."""
    from rich.table import Table

    from app.cli.console import out
    from app.core.db import session_scope
    from app.core.jobs import job_as_dict, recent_jobs

    schema_ready()
    table = Table()
    for column in ("id", "kind", "state", "progress", "message"):
        table.add_column(column)
    with session_scope() as session:
        for job in map(job_as_dict, recent_jobs(session, limit)):
            fraction = job["fraction"]
            table.add_row(
                str(job["id"]),
                job["kind"],
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


# --- accounts -------------------------------------------------------------------------------
