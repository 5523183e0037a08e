"""`skd db backup` while people rate: `skd serve` runs as a subprocess, raters submit over
loopback HTTP from several threads, and the backup is taken from a terminal in the middle of
it. Every rating the server confirmed before the backup started is in the copy, the copy is
whole, and it restores: on SQLite by putting the file in place of the database (the README's
steps, then `skd stats` reads it), on PostgreSQL with pg_restore into a new database."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, PG_ADMIN_URL
from tests.live_stack import KEEP_ALIVE, Stack, live_stack
from tests.test_e2e_jobs import labelled_file

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _rater(stack: Stack, share_url: str, campaign_id: int, confirmed: list[tuple[float, str]],
           stop: threading.Event) -> int:  # fmt: skip
    """One crowdworker: rates until the campaign has nothing left for them; each rating the
    server answered 200 is recorded with the moment the answer arrived."""
    with httpx.Client(base_url=stack.url, timeout=60, limits=KEEP_ALIVE) as client:
        client.get(f"{share_url}?PROLIFIC_PID=backup-{uuid.uuid4().hex[:8]}")
        csrf = _CSRF.search(client.get(f"/annotate/{campaign_id}").text)
        assert csrf
        served = client.get(f"/api/annotate/{campaign_id}/next").json()
        rated = 0
        while served.get("item") and not stop.is_set():
            submission = uuid.uuid4().hex
            answer = client.post(
                f"/api/annotate/{campaign_id}/submit",
                json={
                    "item_id": served["item"]["item_id"],
                    "answer": 2,
                    "seconds": 3.0,
                    "submission_id": submission,
                },  # fmt: skip
                headers={"X-CSRF-Token": csrf.group(1)},
            )
            assert answer.status_code == 200, answer.text
            confirmed.append((time.monotonic(), submission))
            served = answer.json()
            rated += 1
            time.sleep(0.03)  # a brisk crowdworker; the backup must not wait for them to finish
        return rated


def _in_postgres_copy(dump: Path) -> tuple[set[str], int]:
    """Restore the dump into a new database: its submission ids and its triple count."""
    import psycopg

    name = f"skd_restored_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        restored = subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={url}", str(dump)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert restored.returncode == 0, restored.stderr
        with psycopg.connect(url) as conn:
            ids = {row[0] for row in conn.execute("SELECT submission_id FROM ratings")}
            triples = conn.execute("SELECT count(*) FROM triples").fetchone()[0]
        return ids, triples
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_backup_taken_while_people_rate_holds_every_confirmed_rating(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if BACKEND == "postgres" and shutil.which("pg_restore") is None:
        pytest.skip("the PostgreSQL client (pg_dump, pg_restore) is not installed")
    with live_stack(tmp_path, worker=False) as stack:
        corpus = labelled_file(tmp_path, 1, heads=20, per_head=6)
        imported = stack.skd("import", str(corpus))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        admin = stack.login()
        made = admin.post("/api/campaigns", json={"name": "backup", "ratings_per_item": 4})
        assert made.status_code == 201, made.text
        campaign_id = made.json()["id"]
        share_path = "/" + made.json()["share_url"].split("://", 1)[1].split("/", 1)[1]

        confirmed: list[tuple[float, str]] = []
        stop = threading.Event()
        out = tmp_path / "copies" / ("skd.sqlite" if BACKEND == "sqlite" else "skd.dump")
        with ThreadPoolExecutor(4) as pool:
            raters = [
                pool.submit(_rater, stack, share_path, campaign_id, confirmed, stop)
                for _ in range(4)
            ]
            while len(confirmed) < 40:  # the backup starts in the middle of the rating
                time.sleep(0.05)
                assert not any(r.done() for r in raters), [r.result() for r in raters]
            started = time.monotonic()
            backup = stack.skd("db", "backup", "--out", str(out))
            ended = time.monotonic()
            total = sum(r.result() for r in raters)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert backup.stdout.strip() == str(out.resolve())  # the path alone on stdout
        assert "Backup of the" in backup.stderr and "ratings" in backup.stderr
        assert not list(out.parent.glob("*.partial"))
        before = {submission for moment, submission in confirmed if moment < started}
        during = [submission for moment, submission in confirmed if started <= moment <= ended]
        after = {submission for moment, submission in confirmed if moment > ended}
        assert len(before) >= 40 and total == len(confirmed)
        assert during and after, "the raters were not writing while the backup ran"

        if BACKEND == "sqlite":
            with sqlite3.connect(out) as copy:
                assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                ids = {row[0] for row in copy.execute("SELECT submission_id FROM ratings")}
                triples = copy.execute("SELECT count(*) FROM triples").fetchone()[0]
        else:
            ids, triples = _in_postgres_copy(out)
        assert before <= ids, f"{len(before - ids)} confirmed ratings missing from the backup"
        assert not (after & ids)  # a snapshot: nothing confirmed after it ended
        assert triples == 120
        # A second backup to the same name is refused, and leaves the first one alone.
        again = stack.skd("db", "backup", "--out", str(out))
        assert again.returncode != 0 and "already exists" in again.stderr
        assert out.stat().st_size > 0

    if BACKEND == "sqlite":
        # The README's restore: the copy in place of the database file, then any command.
        restored = tmp_path / "restored"
        restored.mkdir()
        shutil.copy(out, restored / "skd.sqlite")
        stats = subprocess.run(
            [str(Path(__file__).resolve().parents[1] / ".venv/bin/skd"), "stats"],
            env={**stack.env, "SKD_DATA_DIR": str(restored), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stats.returncode == 0, stats.stderr
        assert "120" in stats.stdout
