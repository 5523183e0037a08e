"""`skd db`: create, migrate and inspect the schema (Alembic)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import fail
from app.core.config import get_settings

db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema to REVISION (default: the newest)."""
    from app.core import migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.database, revision)
    typer.echo(f"database at revision {migrate.current(settings.database)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = "-1") -> None:
    """Step the schema back (default: one revision; `base` drops everything)."""
    from app.core import migrate

    settings = get_settings()
    migrate.downgrade(settings.database, revision)
    typer.echo(f"database at revision {migrate.current(settings.database)}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the configured database."""
    from app.core import migrate

    typer.echo(migrate.current(get_settings().database) or "empty (run `skd db upgrade`)")


@db_app.command("text-index")
def db_text_index(
    drop: Annotated[bool, typer.Option("--drop", help="Remove the indexes instead.")] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Only say whether they are there.")
    ] = False,
) -> None:
    """Trigram indexes for the corpus browser's text search (PostgreSQL): a rare word in a
    million triples is then found in tens of milliseconds instead of a second. They make
    imports slower (bench/README.md), so they are opt in. Built without blocking the corpus."""
    from app.cli.console import RichProgress
    from app.core.db import get_engine
    from app.core.text_index import (
        TextIndexError,
        create_text_indexes,
        drop_text_indexes,
        require_postgres,
        text_index_state,
    )

    engine = get_engine()
    try:
        require_postgres(engine)
        if status:
            for name, state in text_index_state(engine).items():
                typer.echo(f"{name}: {state}")
            return
        if drop:
            dropped = drop_text_indexes(engine)
            typer.echo(f"dropped {', '.join(dropped)}" if dropped else "no text indexes to drop")
            return
        with RichProgress("text indexes") as bar:
            built = create_text_indexes(
                engine, lambda phase, done, total: bar.update(done, total, phase)
            )
    except TextIndexError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"built {', '.join(built)}" if built else "the text indexes are already there")


# --- corpus ---------------------------------------------------------------------------------
