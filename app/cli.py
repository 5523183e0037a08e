"""The ``skd`` command: thin doors onto the same functions the web app and the workers use."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from app.cli_campaigns import campaign_app
from app.cli_critic import critic_app
from app.cli_export import export_app
from app.config import get_settings

app = typer.Typer(
    help="SKD Studio: human-in-the-loop Symbolic Knowledge Distillation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
jobs_app = typer.Typer(help="Long-running jobs.", no_args_is_help=True)
users_app = typer.Typer(help="Staff and annotator accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(users_app, name="users")
app.add_typer(campaign_app, name="campaign")
app.add_typer(export_app, name="export")
app.add_typer(critic_app, name="critic")
ratings_app = typer.Typer(help="Campaign ratings.", no_args_is_help=True)
labels_app = typer.Typer(
    help="Aggregated human labels (what the critic trains on).", no_args_is_help=True
)
app.add_typer(ratings_app, name="ratings")
app.add_typer(labels_app, name="labels")


def _fail(message: str, code: int = 1) -> typer.Exit:
    from app.console import console

    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _schema_ready() -> None:
    """Commands that need tables say so clearly on an empty database."""
    from app import migrate
    from app.db import configure

    settings = get_settings()
    settings.ensure_dirs()
    configure(settings)
    if migrate.current() is None:
        raise _fail(
            f"the database at {settings.database} has no schema; run `skd db upgrade` first"
        )


# --- database -------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema to REVISION (default: the newest)."""
    from app import migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.database, revision)
    typer.echo(f"database at revision {migrate.current(settings.database)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = "-1") -> None:
    """Step the schema back (default: one revision; `base` drops everything)."""
    from app import migrate

    settings = get_settings()
    migrate.downgrade(settings.database, revision)
    typer.echo(f"database at revision {migrate.current(settings.database)}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the configured database."""
    from app import migrate

    typer.echo(migrate.current(get_settings().database) or "empty (run `skd db upgrade`)")


# --- corpus ---------------------------------------------------------------------------------


@app.command("import")
def import_command(
    files: Annotated[
        list[Path], typer.Argument(help="Triple files (.tsv, .jsonl, .csv; .gz ok; .parquet).")
    ],
    source: Annotated[
        str | None, typer.Option(help="Source name for all files (default: each file's name).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="atomic-tsv, comet-tsv, jsonl or csv.")
    ] = None,
    background: Annotated[
        bool, typer.Option(help="Queue the job for a Celery worker and follow its progress.")
    ] = False,
) -> None:
    """Import triples into the corpus: all or nothing, duplicates dropped, a summary at the end."""
    from app.console import RichProgress, import_summary_table, out
    from app.corpus.formats import FORMATS, CorpusFormatError
    from app.corpus.importer import run_import_job
    from app.jobs import new_job, run_job

    if format is not None and format not in FORMATS:
        raise _fail(f"--format: {format!r} is not one of {', '.join(FORMATS)}", 2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise _fail(f"no such file: {', '.join(missing)}", 2)
    _schema_ready()
    params = {
        "paths": [str(f.resolve()) for f in files],
        "names": [str(f) for f in files],
        "source": source,
        "format": format,
    }
    job_id = new_job("import", params, message="starting" if not background else "queued")
    if background:
        from app.jobs import set_celery_id
        from workers.tasks import import_corpus

        set_celery_id(job_id, import_corpus.delay(job_id).id)
        result = _follow(job_id)
    else:
        try:
            with RichProgress(f"import #{job_id}") as bar:
                result = run_job(job_id, run_import_job, extra=bar)
        except CorpusFormatError as exc:
            raise _fail(f"{exc}\nnothing was imported (job #{job_id} failed)") from None
        except KeyboardInterrupt:
            raise _fail(f"interrupted; nothing was imported (job #{job_id})", 130) from None
    out.print(import_summary_table(result))


def _follow(job_id: int) -> dict:
    """Show a job's progress from its row until it finishes (any worker may be running it)."""
    from app.console import RichProgress
    from app.db import session_scope
    from app.models import Job, JobState

    with RichProgress(f"job #{job_id}") as bar:
        while True:
            with session_scope() as session:
                job = session.get(Job, job_id)
                if job is None:
                    raise _fail(f"no job {job_id}")
                bar.update(job.done, job.total, job.message)
                if job.state.finished:
                    if job.state != JobState.succeeded:
                        raise _fail(f"job #{job_id} {job.state.value}: {job.error}")
                    return dict(job.result or {})
            time.sleep(0.5)


@app.command("stats")
def stats_command() -> None:
    """Corpus counts by relation and by source."""
    from rich.table import Table

    from app.console import out
    from app.corpus.stats import corpus_counts
    from app.db import session_scope

    _schema_ready()
    with session_scope() as session:
        counts = corpus_counts(session)
    table = Table(title=f"{counts['triples']:,} triples", title_justify="left")
    table.add_column("relation")
    table.add_column("triples", justify="right")
    for relation, n in counts["by_relation"].items():
        table.add_row(relation, f"{n:,}")
    out.print(table)
    sources = Table(title="by source", title_justify="left")
    sources.add_column("source")
    sources.add_column("triples", justify="right")
    for source_name, n in counts["by_source"].items():
        sources.add_row(source_name, f"{n:,}")
    out.print(sources)
    out.print(
        f"imported human labels: {counts['imported_labels']:,}; ratings: {counts['ratings']:,}"
    )


# --- jobs -----------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(limit: int = 20) -> None:
    """Recent jobs with their state and progress."""
    from rich.table import Table

    from app.console import out
    from app.db import session_scope
    from app.jobs import job_as_dict, recent_jobs

    _schema_ready()
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
    _schema_ready()
    _follow(job_id)


# --- accounts -------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin or researcher")] = "researcher",
    password: Annotated[
        str | None, typer.Option(help="Default: prompt (or SKD_NEW_PASSWORD).")
    ] = None,
) -> None:
    """Create a staff account."""
    from app.accounts import create_staff
    from app.db import session_scope
    from app.models import Role

    if role not in ("admin", "researcher"):
        raise _fail("--role: use admin or researcher", 2)
    _schema_ready()
    password = password or os.environ.get("SKD_NEW_PASSWORD")
    if not password:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with session_scope(write=True) as session:
            create_staff(session, username, password, Role(role))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"created {role} {username!r}")


@users_app.command("invite")
def users_invite(
    name: Annotated[str | None, typer.Option(help="A label for the person.")] = None,
) -> None:
    """Create an annotator and print their personal sign-in link (shown only once)."""
    from app.accounts import create_invited_annotator
    from app.db import session_scope

    _schema_ready()
    with session_scope(write=True) as session:
        _user, token = create_invited_annotator(session, name)
    typer.echo(f"{get_settings().public_url}/i/{token}")


# --- ratings and labels ---------------------------------------------------------------------


def _export_format(fmt: str | None, out: Path) -> str:
    """--format, or guessed from the file name (.jsonl/.ndjson: jsonl; anything else: csv)."""
    from app.downloads import FORMATS

    if fmt is None:
        fmt = "jsonl" if out.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    if fmt not in FORMATS:
        raise _fail(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}", 2)
    return fmt


def _write_export(out: Path, fmt: str, fields: list[str], rows: Iterator[dict]) -> int:
    """Write rows as FORMAT to OUT ('-': stdout); a file appears only once it is complete."""
    from app.downloads import encode

    count = 0

    def counted() -> Iterator[dict]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    if str(out) == "-":
        for chunk in encode(fmt, fields, counted()):
            sys.stdout.write(chunk)
        return count
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            for chunk in encode(fmt, fields, counted()):
                handle.write(chunk)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return count


@ratings_app.command("export")
def ratings_export(
    campaign_id: int,
    out: Annotated[Path, typer.Option("--out", help="Output file ('-' for stdout).")],
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from --out).")
    ] = None,
) -> None:
    """Every rating of a campaign, gold and excluded annotators included (and flagged)."""
    from app.db import session_scope
    from app.models import Campaign
    from app.quality import RATING_FIELDS, iter_campaign_ratings

    fmt = _export_format(format, out)
    _schema_ready()
    with session_scope() as session:
        if session.get(Campaign, campaign_id) is None:
            raise _fail(f"no campaign {campaign_id}")
        count = _write_export(out, fmt, RATING_FIELDS, iter_campaign_ratings(session, campaign_id))
    typer.echo(f"wrote {count:,} ratings to {out}", err=True)


@labels_app.command("export")
def labels_export(
    out: Annotated[Path, typer.Option("--out", help="Output file ('-' for stdout).")],
    campaign: Annotated[
        int | None, typer.Option("--campaign", help="One campaign's items (default: all).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from --out).")
    ] = None,
) -> None:
    """The majority label of each item (ties and no usable votes: empty), see app.quality."""
    from app.db import session_scope
    from app.models import Campaign
    from app.quality import LABEL_FIELDS, iter_item_labels

    fmt = _export_format(format, out)
    _schema_ready()
    with session_scope() as session:
        if campaign is not None and session.get(Campaign, campaign) is None:
            raise _fail(f"no campaign {campaign}")
        rows = (label.as_dict() for label in iter_item_labels(session, campaign))
        count = _write_export(out, fmt, LABEL_FIELDS, rows)
    typer.echo(f"wrote {count:,} labels to {out}", err=True)


# --- processes ------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Default: SKD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SKD_PORT.")] = None,
    workers: Annotated[int, typer.Option(help="Web worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the web server (uvicorn)."""
    import uvicorn

    settings = get_settings()
    try:
        settings.session_secret()
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        log_level="info",
    )


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = "celery",
) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    from workers.celery_app import celery_app

    celery_app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            *ctx.args,
        ]
    )


@app.command("beat")
def beat() -> None:
    """Run Celery beat (the periodic tasks in workers/celery_app.py)."""
    from workers.celery_app import celery_app

    settings = get_settings()
    settings.ensure_dirs()
    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


@app.command("demo")
def demo(
    port: Annotated[int | None, typer.Option(help="Default: SKD_PORT (8000).")] = None,
    start: Annotated[bool, typer.Option(help="Start the services after setting up.")] = True,
) -> None:
    """Set up the embedded demo (SQLite + Celery on SQLite) and run web, worker and beat."""
    from app.console import RichProgress, console
    from app.demo import prepare_demo, run_services

    os.environ["SKD_DEMO"] = "1"
    get_settings.cache_clear()
    settings = get_settings()
    if port is not None:
        settings.port = port
    with RichProgress("demo corpus") as bar:
        accounts = prepare_demo(settings, progress=bar)
    url = settings.public_url

    def announce() -> None:
        # soft_wrap: long links stay one line, so they can be copied from any terminal width.
        say = partial(console.print, soft_wrap=True)
        console.rule("[bold]SKD Studio is running")
        say(f"  open           {url}/login")
        for account in accounts.staff:
            say(
                f"  {account['role']:<14} user [bold]{account['username']}[/]"
                f"  password [bold]{account['password']}[/]"
            )
        for invite in accounts.invites:
            say(f"  annotator      {url}/i/{invite['token']}")
        if accounts.campaign_share:
            say(
                f"  study link     {url}/c/{accounts.campaign_share}?PROLIFIC_PID=demo-worker-1"
                "  (any PROLIFIC_PID is a new crowdworker)"
            )
        say(f"  data           {settings.data_dir.resolve()}")
        say("  Ctrl-C stops the web server, the worker and beat.")
        console.rule()

    if not start:
        announce()
        return
    code = run_services(settings, on_ready=announce)
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
