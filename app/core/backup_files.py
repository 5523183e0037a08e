"""The backups folder as the admin page and the API see it: what is there, and a backup now.

``skd db backup``, beat's schedule and the copy a restore saves first all write into
``DATA_DIR/backups``; on a docker-compose install that folder is inside a volume, and the
simplest way to get a copy off the machine is to download it from the browser. Only files
listed here can be downloaded (a name, never a path), and a backup started from a door is the
same job beat runs (``skd.backup_database``), so it shows on the jobs page with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from app.core import queue
from app.core.backup import SCHEDULED_NAME, default_path
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.job_control import dispatch
from app.core.jobs import new_job
from app.core.models import Job, JobState

# Files beside a database that are not backups: SQLite's journal files, unfinished copies.
_NOT_BACKUPS = ("-wal", "-shm", "-journal", ".partial")


@dataclass(frozen=True)
class BackupFile:
    name: str
    path: Path
    size_bytes: int
    modified: datetime
    # "rotating" (a default name: beat's, "Back up now"'s, a plain `skd db backup`; only the
    # newest SKD_BACKUP_KEEP stay), "before restore" or "named" (`--out`: never deleted).
    kind: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "modified": self.modified.isoformat(),
            "kind": self.kind,
            "download_url": f"/api/backups/{self.name}",
        }


def backups_folder(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "backups"


def _kind(name: str) -> str:
    if SCHEDULED_NAME.match(name):
        return "rotating"
    if name.startswith("skd-before-restore-"):
        return "before restore"
    return "named"


def list_backups(settings: Settings | None = None) -> list[BackupFile]:
    """The backups in the folder, newest first (a backup written elsewhere with ``--out``
    is not here: it is wherever it was put)."""
    folder = backups_folder(settings)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if not path.is_file() or path.name.endswith(_NOT_BACKUPS) or path.name.startswith("."):
            continue
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        found.append(BackupFile(path.name, path, stat.st_size, modified, _kind(path.name)))
    return sorted(found, key=lambda backup: (backup.modified, backup.name), reverse=True)


def find_backup(name: str, settings: Settings | None = None) -> BackupFile | None:
    """The listed backup called exactly ``name``; None for anything else (a path, a journal
    file, a name that is not there)."""
    return next((backup for backup in list_backups(settings) if backup.name == name), None)


class BackupInProgress(RuntimeError):
    """A backup job is already queued or running; ``job_id`` says which."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"a backup is already under way: job {job_id}")
        self.job_id = job_id


def backup_in_progress() -> int | None:
    """The id of a backup job that is queued or running, if any."""
    with session_scope() as session:
        return session.scalar(
            select(Job.id).where(
                Job.kind == "backup", Job.state.in_([JobState.queued, JobState.running])
            )
        )


def queue_backup(user_id: int | None = None) -> int:
    """Start a backup now (the page's button, ``POST /api/backups``): the job beat's schedule
    runs, handed to a worker. One at a time (``BackupInProgress``); raises
    ``BrokerUnavailable`` when the broker does not take it (the job is then failed)."""
    running = backup_in_progress()
    if running is not None:
        raise BackupInProgress(running)
    path = default_path(get_settings())
    job_id = new_job("backup", {"path": str(path)}, created_by_id=user_id)
    dispatch(job_id, queue.BACKUP_DATABASE)
    return job_id
