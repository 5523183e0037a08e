"""`skd db backup`'s rules that need no running server: a failed backup leaves nothing that
looks like one, an existing file is never overwritten, a missing PostgreSQL client is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import backup
from tests.conftest import BACKEND, add_triples


def test_a_backup_counts_what_it_copied_and_never_overwrites(settings, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if BACKEND == "postgres" and backup.shutil.which("pg_dump") is None:
        pytest.skip("the PostgreSQL client is not installed")
    add_triples(7)
    out = tmp_path / "copy.bak"
    result = backup.backup_database(settings, out)
    assert result.path == out.resolve() and result.size_bytes == out.stat().st_size > 0
    assert result.counts["triples"] == 7 and result.counts["ratings"] == 0
    with pytest.raises(backup.BackupError, match="already exists"):
        backup.backup_database(settings, out)
    assert out.stat().st_size == result.size_bytes


def test_a_failed_backup_leaves_no_file(settings, engine, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def half_written(url: str, partial: Path, destination: Path) -> backup.BackupResult:
        partial.write_bytes(b"half a database")
        raise backup.BackupError("the disk is full")

    monkeypatch.setattr(backup, "_sqlite", half_written)
    monkeypatch.setattr(backup, "_postgres", half_written)
    out = tmp_path / "copies" / "copy.bak"
    with pytest.raises(backup.BackupError, match="the disk is full"):
        backup.backup_database(settings, out)
    assert list(out.parent.iterdir()) == []


def test_without_pg_dump_the_error_says_how_to_get_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(backup.shutil, "which", lambda name: None)
    with pytest.raises(backup.BackupError, match="apt-get install postgresql-client"):
        backup._postgres("postgresql+psycopg://u@127.0.0.1/x", tmp_path / "p", tmp_path / "d")
    assert not (tmp_path / "p").exists()


def test_the_default_name_says_when_and_which_backend(settings) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    path = backup.default_path(settings, datetime(2026, 12, 5, 21, 30, tzinfo=UTC))
    assert path.parent == settings.data_dir / "backups"
    suffix = "sqlite" if BACKEND == "sqlite" else "dump"
    assert path.name == f"skd-20261205-213000.{suffix}"
