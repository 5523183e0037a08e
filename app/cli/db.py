"""`skd db`: create, migrate and inspect the schema (Alembic); back the database up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import fail
from app.core.config import get_settings
from app.core.data_paths import Relocated

db_app = typer.Typer(
    help="The database: its schema (Alembic), backups, text indexes.", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema to REVISION (default: the newest)."""
    from app.core import migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.database, revision)
    typer.echo(f"database at revision {migrate.current(settings.database)}")
    if revision == "head":
        from app.core.data_paths import relocate

        say_relocated(relocate(settings))


def say_relocated(found: Relocated) -> None:
    """What ``relocate`` did: the folders found under this data dir, and the ones missing."""
    from app.cli.console import console

    if found.moved:
        console.print(
            f"found under this data dir and pointed there: {', '.join(found.moved)}",
            highlight=False,
        )
    if found.missing:
        console.print(
            f"[bold yellow]missing:[/] {'; '.join(found.missing)}. Copy the models/ and "
            f"exports/ folders of the data dir they came from into {get_settings().data_dir} "
            "(then run `skd db upgrade` to point at them); until then the critic, students "
            "or exports named here cannot load.",
            highlight=False,
        )


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


@db_app.command("backup")
def db_backup(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write it (default: DATA_DIR/backups/skd-<UTC time>.sqlite|.dump).",
        ),
    ] = None,
) -> None:
    """A consistent copy of the database, taken while the server, the workers and the raters
    keep writing (SQLite's online backup; pg_dump on PostgreSQL). The path alone goes to
    stdout (`BACKUP=$(skd db backup)`), the summary to stderr."""
    from rich.table import Table

    from app.cli.common import schema_ready
    from app.cli.console import console
    from app.cli.console import out as stdout
    from app.core.backup import BackupError, backup_database

    schema_ready()
    settings = get_settings()
    try:
        with console.status("copying the database (one snapshot; writers carry on)"):
            result = backup_database(settings, out)
    except BackupError as exc:
        raise fail(f"no backup: {exc}") from None
    table = Table(
        title=f"Backup of the {result.backend} database", title_justify="left", show_header=False
    )
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("file", str(result.path))
    table.add_row("size", f"{result.size_bytes / 1e6:,.1f} MB")
    table.add_row("time", f"{result.seconds:.1f} s")
    for name, count in result.counts.items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    if result.tables is not None:
        table.add_row("tables with data", f"{result.tables:,}")
    console.print(table)
    console.print(
        "Models and exports are files under the data dir, not in this copy. "
        "To restore, see README.md, 'Backups'.",
        highlight=False,
    )
    stdout.print(str(result.path), highlight=False, soft_wrap=True)


@db_app.command("backups")
def db_backups() -> None:
    """The backups in DATA_DIR/backups, newest first: kind, size, time (the Backups page's
    list; a file named with --out elsewhere is not there)."""
    from rich.table import Table

    from app.cli.common import require_data_dir
    from app.cli.console import out
    from app.core.backup_files import backups_folder, list_backups

    require_data_dir()
    settings = get_settings()
    found = list_backups(settings)
    if not found:
        out.print(
            f"no backups in {backups_folder(settings)} yet (`skd db backup`)", highlight=False
        )
        return
    table = Table(title=f"Backups in {backups_folder(settings)}", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("kind")
    table.add_column("size", justify="right")
    table.add_column("written (UTC)")
    for backup in found:
        table.add_row(
            backup.name,
            backup.kind,
            f"{backup.size_bytes / 1e6:,.1f} MB",
            backup.modified.isoformat()[:19].replace("T", " "),
        )
    out.print(table)
    every = settings.backup_every_hours
    out.print(
        f"beat backs up every {every:g} h and keeps the newest {settings.backup_keep} rotating "
        "copies"
        if every
        else "scheduled backups are off (SKD_BACKUP_EVERY_HOURS=0)",
        highlight=False,
    )


@db_app.command("restore")
def db_restore(
    backup: Annotated[Path, typer.Argument(help="A file `skd db backup` wrote.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before replacing.")] = False,
    no_safety_copy: Annotated[
        bool,
        typer.Option(
            "--no-safety-copy", help="Do not back the current database up first (not advised)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Restore even though web, worker or beat processes seem alive on the database "
            "(only for processes you know are gone).",
        ),
    ] = False,
) -> None:
    """Replace the database with a backup, all or nothing: the file is checked first, the
    current database is backed up (DATA_DIR/backups/skd-before-restore-<time>), the copy goes
    in as one transaction and an older copy is migrated. Stop web, worker and beat first: it
    refuses while any of them is alive on the database."""
    from rich.table import Table

    from app.cli.common import require_data_dir
    from app.cli.console import console
    from app.core.restore import (
        RestoreError,
        check_restorable,
        database_counts,
        read_backup,
        refuse_while_running,
        restore_database,
    )

    require_data_dir()  # an explicit SKD_DATA_DIR (a new machine) is set up; ./skd-data is not
    settings = get_settings()
    settings.ensure_dirs()
    try:
        facts = read_backup(backup)
        check_restorable(settings, facts, backup.resolve())
        if not force:
            refuse_while_running(settings)
    except RestoreError as exc:
        raise fail(f"nothing restored: {exc}", 2) from None
    if not yes:
        try:
            now = database_counts(settings)
        except Exception:  # noqa: BLE001 - an empty or unreachable database has no counts
            now = {}
        held = (
            ", ".join(f"{now.get(t, 0):,} {t}" for t in ("triples", "ratings"))
            if now
            else ("nothing yet")
        )
        incoming = (
            ", ".join(f"{facts.counts.get(t, 0):,} {t}" for t in ("triples", "ratings"))
            if facts.counts
            else f"schema revision {facts.revision}"
        )
        typer.echo(f"The database now holds {held}; {backup} holds {incoming}.", err=True)
        if not typer.confirm(
            "Replace the database with the backup? Stop web, worker and beat first",
            default=False,
            err=True,
        ):
            raise fail("nothing restored", 1)
    try:
        with console.status("restoring (one transaction)"):
            result = restore_database(settings, backup, safety_copy=not no_safety_copy, force=force)
    except RestoreError as exc:
        raise fail(f"nothing restored: {exc}") from None
    table = Table(
        title=f"Restored the {result.backend} database", title_justify="left", show_header=False
    )
    table.add_column("")
    table.add_column("", justify="right", overflow="fold")
    table.add_row("from", str(result.source))
    if result.safety_copy is not None:
        table.add_row("the database before", str(result.safety_copy))
    revision = result.revision
    if result.current_revision != revision:
        revision += f" → {result.current_revision} (migrated)"
    table.add_row("schema revision", revision)
    table.add_row("time", f"{result.seconds:.1f} s")
    for name, count in result.counts.items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    console.print(table)
    say_relocated(result.relocated)
    console.print(
        "Models and exports are files under the data dir: put back their folders too if the "
        "backup is older than them. Start web, worker and beat again.",
        highlight=False,
    )
