"""Put a backup (``skd db backup``) back in place of the database, all or nothing.

A restore is the moment a team is already having a bad day, so it must not make it worse:

- The backup is checked before anything is touched: that it is a SQLite database or a
  ``pg_dump`` custom-format dump matching the configured backend, that it is an SKD Studio
  database (it has an Alembic revision) and that this version knows its revision (a copy from
  a newer SKD Studio is refused rather than half understood). SQLite copies also pass
  ``PRAGMA integrity_check``.
- The current database is backed up first (``backups/skd-before-restore-<time>``), so a
  restore of the wrong file is itself undone by restoring that copy.
- The replacement is one transaction. SQLite: the online backup API copies the file into the
  live database in a single step under its write lock (other connections see the old database
  or the new one, never a mix). PostgreSQL: the dump, as SQL, runs in one ``psql
  --single-transaction`` after ``DROP SCHEMA public CASCADE``; any error rolls all of it back.
- Then the schema is migrated (a copy from an older version is brought up to date) and the
  rows are counted again: the summary says what the database now holds.

Stop web, worker and beat first: a worker writing while its data is swapped out from under it
finishes its job on the old rows' ids.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.core import migrate, processes
from app.core.backup import (
    COUNTED,
    BackupError,
    backup_database,
    count_rows,
    default_path,
    libpq_target,
    postgres_client,
)
from app.core.config import Settings
from app.core.data_paths import Relocated, relocate
from app.core.processes import ProcessView

SQLITE_HEADER = b"SQLite format 3\x00"
PGDUMP_HEADER = b"PGDMP"


class RestoreError(RuntimeError):
    """The backup cannot be restored here; the database was not changed."""


@dataclass
class RestoreResult:
    source: Path
    backend: str
    revision: str  # the backup's schema revision, before migrating
    current_revision: str | None  # the database's revision after the restore
    safety_copy: Path | None  # the database as it was before
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # rows after the restore
    # model and export folders: found under this data dir, or missing (app.core.data_paths)
    relocated: Relocated = field(default_factory=Relocated)


@dataclass
class BackupFacts:
    """What a backup holds, read without restoring it."""

    backend: str  # "sqlite" or "postgresql"
    revision: str
    counts: dict[str, int] = field(default_factory=dict)  # SQLite only


def backend_of(settings: Settings) -> str:
    return "sqlite" if settings.database.startswith("sqlite") else "postgresql"


def read_backup(path: Path) -> BackupFacts:
    """The backend, schema revision (and for SQLite the rows) of a backup file; RestoreError
    for anything that is not a readable SKD Studio backup."""
    if not path.is_file():
        raise RestoreError(f"no such file: {path}")
    with path.open("rb") as handle:
        header = handle.read(16)
    if header.startswith(SQLITE_HEADER):
        return _read_sqlite(path)
    if header.startswith(PGDUMP_HEADER):
        return _read_dump(path)
    raise RestoreError(
        f"{path} is neither a SQLite database nor a pg_dump custom-format dump "
        "(the two kinds of file `skd db backup` writes)"
    )


def _read_sqlite(path: Path) -> BackupFacts:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise RestoreError(f"{path}: SQLite cannot open it: {exc}") from None
    try:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise RestoreError(f"{path} fails SQLite's integrity check: {verdict}")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables:
            raise RestoreError(
                f"{path} is a SQLite database but not SKD Studio's (no schema revision)"
            )
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        if row is None:
            raise RestoreError(f"{path} has an empty schema revision table")
        return BackupFacts("sqlite", str(row[0]), count_rows(connection))
    except sqlite3.Error as exc:
        raise RestoreError(f"{path}: SQLite cannot read it: {exc}") from None
    finally:
        connection.close()


def _read_dump(path: Path) -> BackupFacts:
    pg_restore = _client("pg_restore")
    listed = subprocess.run(
        [pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        raise RestoreError(f"{path}: pg_restore cannot read it: {listed.stderr.strip()[-500:]}")
    match = re.search(r"^COPY \S*alembic_version \(version_num\) FROM stdin;\n([^\n\\]+)\n",
                      listed.stdout, re.MULTILINE)  # fmt: skip
    if match is None:
        raise RestoreError(f"{path} is a pg_dump but not of SKD Studio (no schema revision)")
    return BackupFacts("postgresql", match.group(1).strip())


def _client(program: str) -> str:
    try:
        return postgres_client(program)
    except BackupError as exc:
        raise RestoreError(str(exc)) from None


def check_restorable(settings: Settings, facts: BackupFacts, path: Path) -> None:
    """Refuse a backup of the other backend, or one this version cannot migrate."""
    backend = backend_of(settings)
    if facts.backend != backend:
        raise RestoreError(
            f"{path} is a {facts.backend} backup but the configured database is {backend} "
            f"({make_url(settings.database).render_as_string(hide_password=True)}); restore it "
            "where SKD_DATABASE_URL points at the same kind of database"
        )
    if not migrate.is_known(facts.revision):
        raise RestoreError(
            f"{path} is at schema revision {facts.revision}, which this version of SKD Studio "
            "does not know (a backup from a newer version?): upgrade SKD Studio first"
        )


def running_processes(settings: Settings) -> list[ProcessView]:
    """The web servers, workers and beats alive on the configured database now (none where
    there is no database yet, or one from before processes said so)."""
    if backend_of(settings) == "sqlite" and not _has_database(settings):
        return []  # connecting would create the file
    engine = create_engine(settings.database, poolclass=NullPool)
    try:
        with Session(engine) as session:
            return processes.live(session)
    except SQLAlchemyError:  # a database from before processes said so has no such table
        return []
    finally:
        engine.dispose()


def refuse_while_running(settings: Settings) -> None:
    """A restore under running processes hands them rows that changed meaning (a job id that
    is now another job, a run that never was): refuse, naming them."""
    running = running_processes(settings)
    if not running:
        return
    named = ", ".join(f"{p.kind} ({p.where})" for p in running)
    raise RestoreError(
        f"{len(running)} SKD Studio process(es) are using this database: {named}. Stop them "
        "first (Ctrl-C the demo, or `docker compose stop web worker beat`); one that was "
        f"killed counts as gone {max(processes.alive_window(p.every) for p in running).seconds}"
        " s after its last "
        "word, or pass --force if you know it is gone"
    )


def restore_database(
    settings: Settings, path: Path, *, safety_copy: bool = True, force: bool = False
) -> RestoreResult:
    """Replace the configured database with the backup at ``path`` (see the module's text).
    Refused while a web server, worker or beat is alive on it, unless ``force``."""
    path = path.resolve()
    facts = read_backup(path)
    check_restorable(settings, facts, path)
    if not force:
        refuse_while_running(settings)
    started = time.perf_counter()
    saved: Path | None = None
    if safety_copy and _has_database(settings):
        try:
            before = default_path(settings, prefix="skd-before-restore")
            saved = backup_database(settings, before).path
        except BackupError as exc:
            raise RestoreError(f"could not save the current database first: {exc}") from None
    if facts.backend == "sqlite":
        _replace_sqlite(settings, path)
    else:
        _replace_postgres(settings, path)
    migrate.upgrade(settings.database, "head")
    _forget_processes(settings)
    relocated = relocate(settings)  # a copy from a machine whose data dir was elsewhere
    result = RestoreResult(
        source=path,
        backend=facts.backend,
        revision=facts.revision,
        current_revision=migrate.current(settings.database),
        safety_copy=saved,
        counts=database_counts(settings),
        relocated=relocated,
    )
    result.seconds = time.perf_counter() - started
    return result


def _forget_processes(settings: Settings) -> None:
    """The copy's process rows describe the processes of the day it was taken: a backup made
    while the server ran would bring that server back as a ghost that blocks the next restore.
    The processes running now (after ``--force``) write theirs again at their next heartbeat."""
    engine = create_engine(settings.database, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM server_processes"))
    finally:
        engine.dispose()


def _has_database(settings: Settings) -> bool:
    if backend_of(settings) == "sqlite":
        database = make_url(settings.database).database
        return bool(database) and Path(str(database)).is_file()
    return migrate.current(settings.database) is not None


def _replace_sqlite(settings: Settings, path: Path) -> None:
    database = make_url(settings.database).database
    if not database or database == ":memory:":
        raise RestoreError(f"no SQLite database file in {settings.database}")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    target = sqlite3.connect(database, timeout=60)
    try:
        # One step: the whole copy is one write transaction on the live file.
        source.backup(target)
    except sqlite3.Error as exc:
        raise RestoreError(f"SQLite could not copy {path} into {database}: {exc}") from None
    finally:
        target.close()
        source.close()


def _replace_postgres(settings: Settings, path: Path) -> None:
    pg_restore, psql = _client("pg_restore"), _client("psql")
    dsn, env = libpq_target(settings.database)
    with tempfile.TemporaryDirectory(prefix="skd-restore-") as folder:
        script = Path(folder) / "restore.sql"
        converted = subprocess.run(
            [pg_restore, "--no-owner", "--no-privileges", f"--file={script}", str(path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if converted.returncode != 0:
            raise RestoreError(f"pg_restore cannot read {path}: {converted.stderr[-500:]}")
        ran = subprocess.run(
            [psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction",
             "--command=SET lock_timeout = '60s'",
             "--command=DROP SCHEMA IF EXISTS public CASCADE",
             "--command=CREATE SCHEMA public",
             f"--file={script}", f"--dbname={dsn}"],
            capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
    if ran.returncode != 0:
        raise RestoreError(
            f"the restore was rolled back, the database is as it was: {ran.stderr.strip()[-800:]}"
        )


def database_counts(settings: Settings) -> dict[str, int]:
    """Rows of the ``COUNTED`` tables in the configured database."""
    engine = create_engine(settings.database, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {
                table: int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
                for table in COUNTED
                if table in present
            }
    finally:
        engine.dispose()
