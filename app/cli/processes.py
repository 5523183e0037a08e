"""`skd serve`, `skd worker`, `skd beat` and `skd demo`: the long-running processes."""

from __future__ import annotations

import os
from functools import partial
from typing import Annotated

import typer

from app.cli.common import fail, require_data_dir
from app.core.config import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Default: SKD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SKD_PORT.")] = None,
    workers: Annotated[int, typer.Option(help="Web worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the web server (uvicorn)."""
    import uvicorn

    require_data_dir()
    settings = get_settings()
    try:
        settings.session_secret()
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        log_level=settings.log_level,
        access_log=settings.access_log,
    )


def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues. Default: SKD_CELERY_QUEUE.")
    ] = None,
) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    from workers.celery_app import celery_app

    require_data_dir()
    queues = queues or get_settings().celery_queue
    celery_app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            *ctx.args,
        ]
    )


def beat() -> None:
    """Run Celery beat (the periodic tasks, scheduled in app/core/queue.py)."""
    from workers.celery_app import celery_app

    require_data_dir()
    settings = get_settings()
    settings.ensure_dirs()
    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app.start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


def demo(
    port: Annotated[int | None, typer.Option(help="Default: SKD_PORT (8000).")] = None,
    start: Annotated[bool, typer.Option(help="Start the services after setting up.")] = True,
    teacher: Annotated[
        bool,
        typer.Option(
            help="Also queue a small teacher run with the packaged SmolLM2 (the worker "
            "writes a few events and their inferences after start-up; the first one "
            "converts the model, about a minute)."
        ),
    ] = False,
) -> None:
    """Set up the embedded demo (SQLite + Celery on SQLite) and run web, worker and beat."""
    from app.cli.console import RichProgress, console
    from app.cli.demo_setup import prepare_demo, run_services

    os.environ["SKD_DEMO"] = "1"
    get_settings.cache_clear()
    settings = get_settings()
    if port is not None:
        settings.port = port
    with RichProgress("demo corpus") as bar:
        accounts = prepare_demo(settings, progress=bar)
    url = settings.public_url
    teacher_run = None
    if teacher:
        from app.cli.demo_setup import queue_demo_teacher_run

        teacher_run = queue_demo_teacher_run()

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
        if teacher_run is not None:
            say(f"  teacher run    {url}/teacher/runs/{teacher_run}  (the worker writes it now)")
        say(f"  data           {settings.data_dir.resolve()}")
        say(f"  scripts        an API token on {url}/account (docs: {url}/docs)")
        say("  Ctrl-C stops the web server, the worker and beat.")
        console.rule()

    if not start:
        announce()
        return
    code = run_services(settings, on_ready=announce)
    raise typer.Exit(code)
