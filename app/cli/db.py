"""`skd db`: create, migrate and inspect the schema (Alembic)."""

from __future__ import annotations

import typer

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


# --- corpus ---------------------------------------------------------------------------------
