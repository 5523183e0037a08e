"""The ``skd`` command: thin doors onto the same functions the web app and the workers use.

One module per command group; this one only assembles them."""

from __future__ import annotations

import sys

import typer

from app.cli import corpus, processes
from app.cli.campaigns import campaign_app
from app.cli.critic import critic_app
from app.cli.db import db_app
from app.cli.export import export_app
from app.cli.generate import generate_app
from app.cli.jobs import jobs_app, processes_command
from app.cli.labels import labels_app, ratings_app
from app.cli.student import student_app
from app.cli.users import users_app

app = typer.Typer(
    help="SKD Studio: human-in-the-loop Symbolic Knowledge Distillation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("import")(corpus.import_command)
app.command("stats")(corpus.stats_command)
app.command("processes")(processes_command)
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(users_app, name="users")
app.add_typer(campaign_app, name="campaign")
app.add_typer(export_app, name="export")
app.add_typer(generate_app, name="generate")
app.add_typer(critic_app, name="critic")
app.add_typer(ratings_app, name="ratings")
app.add_typer(labels_app, name="labels")
app.add_typer(student_app, name="student")
app.command("serve")(processes.serve)
app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    processes.worker
)
app.command("beat")(processes.beat)
app.command("demo")(processes.demo)


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "unknown"


def main() -> None:
    from app.core.origin import set_process_origin

    # Jobs started by this command say so; `skd worker` overrides it per task.
    set_process_origin(f"cli ({_who()})")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
