"""A consistent copy of the database, taken while the server and the workers keep writing.

Crowd ratings are paid for, and the embedded default keeps all of them in one SQLite file
that a plain ``cp`` copies torn while the rating loop writes (a page of the main file and the
newest pages still in ``-wal``). ``skd db backup`` is the safe way:

- **SQLite**: SQLite's online backup API (``sqlite3.Connection.backup``) in a single step,
  which reads the whole database inside one read transaction: a snapshot as of its start.
  In WAL mode (``app.core.db``) that read blocks no writer, so raters carry on. (A backup
  in several steps restarts whenever another connection writes between steps, which under
  a busy rating loop can mean never finishing.) The copy is checked with
  ``PRAGMA integrity_check`` and its rows counted before it takes its final name.
- **PostgreSQL**: ``pg_dump --format=custom`` of a snapshot this module exports (and counts
  rows in) first, checked with ``pg_restore --list``; the password goes through
  ``PGPASSWORD``, never the command line.

Either way the file is written as ``NAME.partial`` and renamed when complete and checked, so
a backup that fails leaves nothing that looks like a backup. Only the database is copied:
critic and student weights (``models/``) and exports (``exports/``) are files in the data dir.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.core.config import Settings

if TYPE_CHECKING:
    from app.core.jobs import Progress

# What the summary counts: the rows a team would miss most.
COUNTED = ("triples", "ratings", "campaigns", "users", "critic_versions", "teacher_runs",
           "student_models", "exports", "jobs")  # fmt: skip


class BackupError(RuntimeError):
    """The backup could not be taken or did not check out; nothing was left behind."""


@dataclass
class BackupResult:
    path: Path
    backend: str
    size_bytes: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)  # rows per table in the copy
    tables: int | None = None  # PostgreSQL: table data entries in the dump


def default_path(settings: Settings, now: datetime | None = None, prefix: str = "skd") -> Path:
    """``DATA_DIR/backups/skd-20261205-213000.sqlite`` (``.dump`` for PostgreSQL)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    suffix = "sqlite" if settings.database.startswith("sqlite") else "dump"
    return settings.data_dir / "backups" / f"{prefix}-{stamp}.{suffix}"


def backup_database(settings: Settings, out: Path | None = None) -> BackupResult:
    """Copy the configured database to ``out`` (default: ``default_path``); never overwrites."""
    destination = (out or default_path(settings)).resolve()
    if destination.exists():
        raise BackupError(f"{destination} already exists; give another --out")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    started = time.perf_counter()
    try:
        if settings.database.startswith("sqlite"):
            result = _sqlite(settings.database, partial, destination)
        else:
            result = _postgres(settings.database, partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(destination)
    result.size_bytes = destination.stat().st_size
    result.seconds = time.perf_counter() - started
    return result


def _sqlite(url: str, partial: Path, destination: Path) -> BackupResult:
    database = make_url(url).database
    if not database or database == ":memory:" or not Path(database).exists():
        raise BackupError(f"no SQLite database file at {database!r} (from {url})")
    source = sqlite3.connect(database, timeout=30)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)  # one step: one read transaction, a snapshot (see above)
        verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"the copy failed SQLite's integrity check: {verdict}")
        counts = count_rows(target)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy {database}: {exc}") from None
    finally:
        target.close()
        source.close()
    return BackupResult(destination, "sqlite", 0, 0.0, counts)


def postgres_client(program: str) -> str:
    """The path of a PostgreSQL client program (pg_dump, pg_restore, psql), or a message that
    says how to install it."""
    found = shutil.which(program)
    if found is None:
        raise BackupError(
            f"{program} is not installed here: install the PostgreSQL client (Debian: apt-get "
            "install postgresql-client), at least the server's version"
        )
    return found


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The database URL as the PostgreSQL client programs take it, and their environment:
    the password goes in ``PGPASSWORD``, never on a command line others can read."""
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    dsn = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return dsn, env


def count_rows(connection: sqlite3.Connection) -> dict[str, int]:
    """Rows of the ``COUNTED`` tables in an SQLite database (the ones it has)."""
    present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    return {
        table: int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        for table in COUNTED
        if table in present
    }


def _postgres(url: str, partial: Path, destination: Path) -> BackupResult:
    """pg_dump of a snapshot that this connection exports and counts rows in first, so the
    summary's counts are exactly what the dump holds, however busy the database is."""
    pg_dump, pg_restore = postgres_client("pg_dump"), postgres_client("pg_restore")
    dsn, env = libpq_target(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with connection as conn, conn.begin():
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            present = set(inspect(conn).get_table_names())
            counts = {
                table: int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
                for table in COUNTED
                if table in present
            }
            # The snapshot lives as long as this transaction: pg_dump runs inside it.
            dumped = subprocess.run(
                [pg_dump, "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                 f"--file={partial}", dsn],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
    finally:
        engine.dispose()
    if dumped.returncode != 0:
        raise BackupError(f"pg_dump failed: {dumped.stderr.strip()[-500:]}")
    listed = subprocess.run(
        [pg_restore, "--list", str(partial)], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        raise BackupError(f"pg_restore cannot read the dump: {listed.stderr.strip()[-500:]}")
    tables = sum(1 for line in listed.stdout.splitlines() if " TABLE DATA " in line)
    return BackupResult(destination, "postgresql", 0, 0.0, counts, tables)


# What ``default_path`` names a backup: only these are pruned (not a --out file, not the copy
# a restore saves first).
SCHEDULED_NAME = re.compile(r"^skd-\d{8}-\d{6}\.(sqlite|dump)$")


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups named by ``default_path`` in ``folder``;
    returns what was deleted. Their names sort by time, so the newest are the last."""
    named = sorted(path for path in folder.glob("skd-*") if SCHEDULED_NAME.match(path.name))
    removed = named[: max(0, len(named) - keep)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def run_backup_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The scheduled backup (beat, through the worker): a backup at the path the job names
    (``default_path`` when it was queued), then the oldest scheduled ones beyond
    ``SKD_BACKUP_KEEP`` deleted. One step with no count to show, so no rate either."""
    from app.core.config import get_settings

    settings = get_settings()
    progress.update(0, None, "copying the database (one snapshot; writers carry on)")
    result = backup_database(settings, Path(params["path"]) if params.get("path") else None)
    removed = prune_backups(result.path.parent, settings.backup_keep)
    return {
        "path": str(result.path),
        "size_bytes": result.size_bytes,
        "seconds": round(result.seconds, 3),
        "counts": result.counts,
        "removed": [path.name for path in removed],
        "message": f"{result.path.name}, {result.size_bytes / 1e6:,.1f} MB"
        + (f"; {len(removed)} older removed" if removed else ""),
    }
