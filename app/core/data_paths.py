"""Point stored model and export paths at this machine's data dir after a move or a restore.

New rows keep their files relative to the data dir (``app.core.models.DataPath``), so they
follow the folder wherever it is. Rows written before that, or by another machine, hold
absolute paths: a backup of production (``/data/models/critic-3``) restored on a laptop
(``~/skd-data``), or a data dir moved to a bigger disk, leaves them pointing at nothing, and
the critic, the students and the export downloads fail on a missing folder.

``relocate`` looks at each absolute path that is not there: when the data dir here has the
same thing under its ``models/`` or ``exports/`` folder (you copied the folders across), the
row is rewritten to the relative path; what is in neither place is reported, so the restore
can say which folders to put back. A path from before that lies in this data dir is made
relative (so the next move needs nothing); others that exist are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from app.core.config import Settings

# The tables whose ``path`` column names a folder the app made, and what to call a row.
TABLES = {
    "critic_versions": "critic v{id}",
    "student_models": "student #{id}",
    "exports": "Export #{id}",
}
FOLDERS = ("models", "exports")  # the data dir's folders those paths live in


@dataclass
class Relocated:
    moved: list[str] = field(default_factory=list)  # "critic v3: models/critic-3"
    missing: list[str] = field(default_factory=list)  # "critic v4: /data/models/critic-4"


def inside_data_dir(stored: str, root: Path) -> Path | None:
    """Where an absolute path from elsewhere would be under ``root``: the part from its last
    ``models/`` or ``exports/`` folder on (None if it has neither)."""
    parts = PurePosixPath(stored).parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in FOLDERS:
            return root.joinpath(*parts[index:])
    return None


def relocate_engine(engine: Engine, root: Path) -> Relocated:
    """``relocate`` on an engine (the restore and ``skd db upgrade`` open their own)."""
    found = Relocated()
    present = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        for table, label in TABLES.items():
            if table not in present:
                continue
            rows = conn.execute(text(f"SELECT id, path FROM {table} WHERE path IS NOT NULL"))
            for row_id, stored in rows.all():
                name = label.format(id=row_id)
                if not Path(stored).is_absolute():  # kept relative: it is here, or it is not
                    if not (root / stored).exists():
                        found.missing.append(f"{name}: {root / stored}")
                    continue
                if Path(stored).exists():
                    if Path(stored).resolve().is_relative_to(root):  # from before: keep it
                        relative = Path(stored).resolve().relative_to(root).as_posix()
                        conn.execute(  # relative, so it follows the data dir from now on
                            text(f"UPDATE {table} SET path = :path WHERE id = :id"),
                            {"path": relative, "id": row_id},
                        )
                    continue
                here = inside_data_dir(stored, root)
                if here is None or not here.exists():
                    found.missing.append(f"{name}: {stored}")
                    continue
                relative = here.relative_to(root).as_posix()
                conn.execute(
                    text(f"UPDATE {table} SET path = :path WHERE id = :id"),
                    {"path": relative, "id": row_id},
                )
                found.moved.append(f"{name}: {relative}")
    return found


def relocate(settings: Settings) -> Relocated:
    """Rewrite the stored paths that point at a data dir that is not this one (see above)."""
    engine = create_engine(settings.database, poolclass=NullPool)
    try:
        return relocate_engine(engine, Path(settings.data_dir).resolve())
    finally:
        engine.dispose()
