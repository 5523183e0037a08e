"""Deleting an export: its folder, its archive and its row, all or nothing.

Exports are large (about 200 MB per million triples in all four formats), so old ones must go
without a shell on the server. The files are first renamed to hidden names beside them (a
rename is atomic and cannot half-happen), then the row is deleted; only when that commit has
succeeded are the renamed files removed. If anything fails before the commit, the names are
put back, so the export is either whole and listed, or gone.

An export whose job is still queued or running is refused: its worker would write into a
folder that no row points at.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.db import session_scope
from app.core.models import Export, Job, JobState
from app.export.run import archive_path


class ExportBusy(Exception):
    """The export's job has not finished yet."""


@dataclass
class DeletedExport:
    export_id: int
    removed: list[str]  # the paths that were on disk and are now gone
    freed_bytes: int


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _trash_name(path: Path, token: str) -> Path:
    return path.with_name(f".{path.name}.deleting-{token}")


def delete_export(export_id: int) -> DeletedExport:
    """Delete export ``export_id``: files first set aside, then the row, then the files.

    Raises LookupError for an unknown id and ExportBusy while its job is unfinished. Files
    already gone (deleted by hand: the page shows such an export as "missing") are not an
    error; the row is deleted all the same."""
    token = secrets.token_hex(4)
    moved: list[tuple[Path, Path]] = []
    try:
        with session_scope(write=True) as session:
            export = session.get(Export, export_id)
            if export is None:
                raise LookupError(f"no export {export_id}")
            job = session.get(Job, export.job_id) if export.job_id is not None else None
            if job is not None and job.state in (JobState.queued, JobState.running):
                raise ExportBusy(
                    f"export {export_id} is still {job.state.value} (job {job.id}); "
                    "delete it when the job has ended"
                )
            if export.path:
                folder = Path(export.path)
                for path in (folder, archive_path(folder)):
                    if path.exists():
                        aside = _trash_name(path, token)
                        path.rename(aside)
                        moved.append((path, aside))
            session.delete(export)
    except BaseException:
        for original, aside in reversed(moved):
            aside.rename(original)
        raise
    freed = 0
    for _original, aside in moved:
        freed += _size(aside)
        if aside.is_dir():
            shutil.rmtree(aside)
        else:
            aside.unlink()
    return DeletedExport(export_id, [str(original) for original, _ in moved], freed)
