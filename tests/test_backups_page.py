"""The backups page and API are for admins only: they list the backups folder newest first
with each file's kind, download a listed file by its name (never a path or a journal file),
and start one backup at a time."""

from __future__ import annotations

import os
import time

import pytest

from app.core import backup
from app.core.backup_files import list_backups
from app.core.db import session_scope
from app.core.jobs import create_job
from app.core.models import JobState
from tests.conftest import BACKEND, add_triples, login, make_staff

PAGE = "/admin/backups"


@pytest.fixture
def folder(settings):  # type: ignore[no-untyped-def]
    """The test data dir's backups folder, empty before and after."""
    path = settings.data_dir / "backups"
    path.mkdir(parents=True, exist_ok=True)
    for old in path.iterdir():
        old.unlink()
    yield path
    for old in path.iterdir():
        old.unlink()


def test_admins_list_and_download_backups_newest_first(
    settings, engine, admin_client, folder
) -> None:  # type: ignore[no-untyped-def]
    if BACKEND == "postgres" and backup.shutil.which("pg_dump") is None:
        pytest.skip("the PostgreSQL client is not installed")
    add_triples(4)
    made = backup.backup_database(settings, folder / "skd-20261201-080000.bak")
    (folder / "skd-20261201-080000.bak-wal").write_bytes(b"journal")  # never listed
    (folder / "skd-20261202-080000.sqlite.partial").write_bytes(b"half")  # never listed
    before = folder / "skd-before-restore-20261203-080000.sqlite"
    before.write_bytes(made.path.read_bytes())
    scheduled = folder / "skd-20261204-080000.sqlite"
    scheduled.write_bytes(made.path.read_bytes())
    now = time.time()
    for age, path in ((300, made.path), (200, before), (100, scheduled)):
        os.utime(path, (now - age, now - age))
    assert [(b.name, b.kind) for b in list_backups(settings)] == [
        (scheduled.name, "rotating"),
        (before.name, "before restore"),
        (made.path.name, "named"),
    ]

    listed = admin_client.get("/api/backups")
    assert listed.status_code == 200, listed.text
    assert [b["name"] for b in listed.json()] == [scheduled.name, before.name, made.path.name]
    assert listed.json()[0]["size_bytes"] == made.size_bytes
    page = admin_client.get(PAGE)
    assert page.status_code == 200 and scheduled.name in page.text and "before restore" in page.text
    assert ".partial" not in page.text and "-wal" not in page.text
    download = admin_client.get(f"/api/backups/{made.path.name}")
    assert download.status_code == 200 and download.content == made.path.read_bytes()
    assert made.path.name in download.headers["content-disposition"]
    assert admin_client.get(f"{PAGE}/{before.name}").content == before.read_bytes()
    for name in ("skd-20261201-080000.bak-wal", "..%2Fskd.sqlite", "nothing.sqlite"):
        assert admin_client.get(f"/api/backups/{name}").status_code == 404, name


def test_backups_are_for_admins_only(client, engine, folder) -> None:  # type: ignore[no-untyped-def]
    (folder / "skd-20261204-080000.sqlite").write_bytes(b"SQLite format 3\x00")
    assert client.get(PAGE, follow_redirects=False).status_code == 303  # to the login page
    assert client.get("/api/backups").status_code == 401
    make_staff("ada", "correct horse", "researcher")
    client.headers["X-CSRF-Token"] = login(client, "ada", "correct horse")
    for url in (PAGE, "/api/backups", "/api/backups/skd-20261204-080000.sqlite"):
        assert client.get(url).status_code == 403, url
    assert client.post("/api/backups").status_code == 403
    assert "/admin/backups" not in client.get("/").text  # not in a researcher's menu


def test_one_backup_at_a_time(engine, admin_client, folder) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        running = create_job(session, "backup", {"path": str(folder / "x.sqlite")})
        running.state = JobState.running
        running_id = running.id
    answer = admin_client.post("/api/backups")
    assert answer.status_code == 409 and f"job {running_id}" in answer.text
    page = admin_client.post(PAGE, data={"csrf_token": admin_client.headers["X-CSRF-Token"]})
    assert (
        page.status_code == 200
        and f"Not started: a backup is already under way: job {running_id}" in page.text
    )
