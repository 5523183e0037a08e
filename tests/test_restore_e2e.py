"""`skd db restore` and beat's scheduled backups, through real processes on both backends.

Restore: a backup taken from a terminal, more data written, then the backup put back with the
server stopped; the server started again serves exactly what the backup held, the database as
it was before is kept and restores in its turn. What cannot be restored (not a backup, a
damaged one, an answer of "no", and on PostgreSQL a restore that fails half way) changes
nothing. Scheduled backups: `skd beat` and `skd worker` take one every few seconds as jobs the
jobs API lists, and only the newest `SKD_BACKUP_KEEP` of them stay.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import BACKEND, PG_ADMIN_URL
from tests.live_stack import Stack, live_stack


@pytest.fixture(autouse=True)
def _client_programs() -> None:
    if BACKEND == "postgres" and not all(
        shutil.which(p) for p in ("pg_dump", "pg_restore", "psql")
    ):
        pytest.skip("the PostgreSQL client programs are not installed")


def _tsv(path: Path, heads: list[str]) -> Path:
    path.write_text("".join(f"{head}\txWant\tto rest {n}\n" for n, head in enumerate(heads)))
    return path


def _sources(stack: Stack) -> dict[str, int]:
    client = stack.login()
    try:
        reply = client.get("/api/corpus")
        assert reply.status_code == 200, reply.text
        return dict(reply.json()["by_source"])
    finally:
        client.close()


def _restart(stack: Stack) -> None:
    stack.start("serve", "serve")
    stack.wait_until_serving()


def test_restore_puts_a_backup_back_all_or_nothing(tmp_path: Path) -> None:
    with live_stack(tmp_path, worker=False) as stack:
        first = _tsv(tmp_path / "first.tsv", [f"PersonX plants tree {i}" for i in range(12)])
        later = _tsv(tmp_path / "later.tsv", [f"PersonX paints wall {i}" for i in range(5)])
        assert stack.skd("import", str(first), "--source", "before").returncode == 0
        taken = stack.skd("db", "backup")
        assert taken.returncode == 0, taken.stderr
        backup = Path(taken.stdout.strip())
        assert stack.skd("import", str(later), "--source", "after").returncode == 0
        assert _sources(stack) == {"after": 5, "before": 12}

        # Refused before anything is touched: the database still has both sources.
        not_a_backup = stack.skd("db", "restore", str(first), "--yes")
        assert not_a_backup.returncode == 2
        assert "neither a SQLite database nor a pg_dump" in not_a_backup.stderr
        damaged = tmp_path / f"damaged{backup.suffix}"
        damaged.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
        refused = stack.skd("db", "restore", str(damaged), "--yes")
        assert refused.returncode == 2 and "nothing restored" in refused.stderr, refused.stderr
        # The server is running on the database: refused, naming it, before the question.
        running = stack.skd("db", "restore", str(backup), "--yes")
        assert running.returncode == 2, running.stdout + running.stderr
        said = " ".join(running.stderr.split())
        pid = stack.processes["serve"].pid
        assert "1 SKD Studio process(es) are using this database: web (" in said, said
        assert f":{pid})" in said and "Stop them first" in said
        assert _sources(stack) == {"after": 5, "before": 12}

        stack.stop("serve")  # a clean stop says it is gone: no waiting for its row to age
        declined = subprocess_input(stack, ["db", "restore", str(backup)], "n\n")
        assert declined.returncode == 1 and "nothing restored" in declined.stderr
        assert "The database now holds 17 triples" in declined.stderr, declined.stderr
        backups = backup.parent
        assert sorted(p.name for p in backups.iterdir()) == [backup.name]  # no copy was made

        restored = stack.skd("db", "restore", str(backup), "--yes")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        said = " ".join((restored.stdout + restored.stderr).split())
        assert "Restored the" in said and "triples │ 12" in said
        saved = [p for p in backups.iterdir() if p.name.startswith("skd-before-restore-")]
        assert len(saved) == 1
        _restart(stack)
        assert _sources(stack) == {"before": 12}  # what the backup held, served again

        # The copy saved first undoes the restore.
        stack.stop("serve")
        undone = stack.skd("db", "restore", str(saved[0]), "--yes", "--no-safety-copy")
        assert undone.returncode == 0, undone.stderr
        _restart(stack)
        assert _sources(stack) == {"after": 5, "before": 12}


def subprocess_input(stack: Stack, args: list[str], answer: str):  # type: ignore[no-untyped-def]
    """``skd ARGS`` with ``answer`` typed at its question."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT, env={**stack.env, "COLUMNS": "200"}, input=answer,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(BACKEND != "postgres", reason="a PostgreSQL restore is one psql transaction")
def test_a_postgres_restore_that_fails_half_way_leaves_the_database_as_it_was(
    tmp_path: Path,
) -> None:
    """An event trigger refuses to create the ratings table: the restore has by then dropped
    the schema and created other tables, and all of it is rolled back."""
    import psycopg

    with live_stack(tmp_path, worker=False) as stack:
        first = _tsv(tmp_path / "first.tsv", [f"PersonX bakes bread {i}" for i in range(7)])
        later = _tsv(tmp_path / "later.tsv", [f"PersonX fixes bike {i}" for i in range(3)])
        assert stack.skd("import", str(first), "--source", "before").returncode == 0
        backup = Path(stack.skd("db", "backup").stdout.strip())
        assert stack.skd("import", str(later), "--source", "after").returncode == 0
        url = stack.env["SKD_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        assert url.rsplit("/", 1)[0] == PG_ADMIN_URL.rsplit("/", 1)[0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA guard")
            conn.execute(
                "CREATE FUNCTION guard.no_ratings() RETURNS event_trigger LANGUAGE plpgsql AS $$"
                " BEGIN IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()"
                " WHERE object_identity = 'public.ratings') THEN"
                " RAISE EXCEPTION 'ratings may not be created now'; END IF; END $$"
            )
            conn.execute(
                "CREATE EVENT TRIGGER no_ratings ON ddl_command_end "
                "EXECUTE FUNCTION guard.no_ratings()"
            )
        # --force: the server stays up to show the database is untouched afterwards
        failed = stack.skd("db", "restore", str(backup), "--yes", "--force")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        said = " ".join(failed.stderr.split())
        assert "rolled back, the database is as it was" in said
        assert "ratings may not be created now" in said
        assert _sources(stack) == {"after": 3, "before": 7}
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP EVENT TRIGGER no_ratings")
        stack.stop("serve")
        assert stack.skd("db", "restore", str(backup), "--yes").returncode == 0
        _restart(stack)
        assert _sources(stack) == {"before": 7}


def test_beat_backs_up_on_schedule_and_keeps_the_newest(tmp_path: Path) -> None:
    every = 2.5  # seconds
    with live_stack(tmp_path, backup_every_hours=str(every / 3600), backup_keep="2") as stack:
        mine = stack.skd("db", "backup", "--out", str(stack.data_dir / "backups" / "mine.bak"))
        assert mine.returncode == 0, mine.stderr
        stack.wait_for_worker()
        stack.start_beat()
        client = stack.login()
        deadline = time.monotonic() + 90
        while True:
            jobs = client.get("/api/jobs", params={"kind": "backup"}).json()
            done = [job for job in jobs if job["state"] == "succeeded"]
            if len(done) >= 3:
                break
            assert not [job for job in jobs if job["state"] == "failed"], jobs
            assert time.monotonic() < deadline, (jobs, stack.log("beat"), stack.log("worker"))
            time.sleep(0.5)
        assert all(job["door"] == "beat" for job in done), done
        stack.stop("beat")
        time.sleep(1)  # a backup already sent finishes
        jobs = client.get("/api/jobs", params={"kind": "backup"}).json()
        newest = sorted(
            Path(job["result"]["path"]).name for job in jobs if job["state"] == "succeeded"
        )[-2:]
        kept = sorted(p.name for p in (stack.data_dir / "backups").iterdir())
        # The two newest scheduled ones, and the file a person made, which is never pruned.
        assert kept == sorted([*newest, "mine.bak"]), (kept, jobs)
        assert any(job["result"]["removed"] for job in jobs if job["state"] == "succeeded")
        listed = stack.skd("db", "backups")  # the same list from a terminal, newest first
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines() if "skd-" in line or "mine" in line]
        assert [row.split()[1] for row in rows] == [*reversed(newest), "mine.bak"], listed.stdout
        assert "rotating" in rows[0] and "named" in rows[-1]
        assert "keeps the newest 2 rotating copies" in listed.stdout
        # A scheduled backup is a real one: it restores.
        stack.stop("worker")
        stack.stop("serve")
        newest_path = stack.data_dir / "backups" / newest[-1]
        assert stack.skd("db", "restore", str(newest_path), "--yes").returncode == 0


def test_an_admin_backs_up_from_the_page_and_downloads_it(tmp_path: Path) -> None:
    """The page's button queues the job, `skd worker` runs it, the page lists the file and
    the download is a whole backup that `skd db restore` accepts."""
    from app.core.restore import read_backup

    with live_stack(tmp_path) as stack:
        triples = _tsv(tmp_path / "t.tsv", [f"PersonX reads book {i}" for i in range(9)])
        assert stack.skd("import", str(triples), "--source", "library").returncode == 0
        stack.wait_for_worker()
        client = stack.login()
        page = client.get("/admin/backups")
        assert page.status_code == 200 and "No backups yet" in page.text
        token = client.headers["X-CSRF-Token"]
        started = client.post("/admin/backups", data={"csrf_token": token})
        assert started.status_code == 303 and started.headers["location"] == "/admin/backups"
        deadline = time.monotonic() + 90
        while True:
            jobs = client.get("/api/jobs", params={"kind": "backup"}).json()
            if jobs and jobs[0]["finished"]:
                break
            assert time.monotonic() < deadline, (jobs, stack.log("worker"))
            time.sleep(0.3)
        job = jobs[0]
        assert job["state"] == "succeeded", job
        assert job["door"] == "web" and job["started_by"] == "root (web)"
        name = Path(job["result"]["path"]).name
        assert name in client.get("/admin/backups").text
        listed = client.get("/api/backups").json()
        assert [b["name"] for b in listed] == [name]
        downloaded = tmp_path / name
        downloaded.write_bytes(client.get(listed[0]["download_url"]).content)
        assert downloaded.stat().st_size == listed[0]["size_bytes"]
        facts = read_backup(downloaded)
        assert facts.backend == ("sqlite" if BACKEND == "sqlite" else "postgresql")
        if facts.counts:
            assert facts.counts["triples"] == 9
        client.close()
