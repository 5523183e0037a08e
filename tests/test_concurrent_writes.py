"""Concurrent web writes never fail with "database is locked" (SQLite's single writer): 20
clients at once, each uploading an import (a job), creating a campaign and rating an item,
against a real `skd serve`. On PostgreSQL the same test checks the same promise."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.live_stack import KEEP_ALIVE, live_stack, same_user

CLIENTS = 20


def test_twenty_clients_create_jobs_campaigns_and_ratings_at_once(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text(
        "".join(f"PersonX reads book {i}\txWant\tto learn thing {i}\n" for i in range(60))
    )
    with live_stack(tmp_path, worker=False, crowd_accounts_per_address="0") as stack:
        done = stack.skd("import", str(corpus))  # in-process: no worker needed
        assert done.returncode == 0, done.stdout + done.stderr
        staff = stack.login()
        made = staff.post(
            "/api/campaigns",
            json={"name": "shared", "sample_size": 40, "ratings_per_item": 3},
        )
        assert made.status_code == 201, made.text
        campaign = made.json()
        opened = staff.post(f"/api/campaigns/{campaign['id']}/state", json={"state": "open"})
        assert opened.status_code == 200, opened.text
        share = campaign["share_url"].split("/c/", 1)[1]
        start = threading.Barrier(CLIENTS)

        def one_client(i: int) -> list[tuple[str, int, str]]:
            worker = httpx.Client(base_url=stack.url, timeout=60, limits=KEEP_ALIVE)
            entered = worker.get(f"/c/{share}?PROLIFIC_PID=crowd-{i}")
            assert entered.status_code in (200, 303), entered.text
            start.wait(timeout=60)
            # Each thread its own staff connection: the login's pooled connections sat idle past
            # the server's keep-alive while the threads gathered, and reusing one that the server
            # is closing resets it (a client-side race, not what this test is about).
            admin = same_user(staff)
            answers = []
            upload = admin.post(
                "/api/corpus/import",
                files=[("files", (f"f{i}.tsv", f"PersonX runs {i}\txWant\tto win\n".encode()))],
            )
            answers.append(("import", upload.status_code, upload.text))
            created = admin.post(
                "/api/campaigns", json={"name": f"c{i}", "sample_size": 5, "ratings_per_item": 1}
            )
            answers.append(("campaign", created.status_code, created.text))
            served = worker.get(f"/api/annotate/{campaign['id']}/next")
            answers.append(("next", served.status_code, served.text))
            if served.status_code == 200 and served.json().get("item"):
                rated = worker.post(
                    f"/api/annotate/{campaign['id']}/submit",
                    json={
                        "item_id": served.json()["item"]["item_id"],
                        "answer": 2,
                        "submission_id": uuid.uuid4().hex,
                        "next": False,
                    },
                )
                answers.append(("rating", rated.status_code, rated.text))
            worker.close()
            admin.close()
            return answers

        def client_or_error(i: int) -> list[tuple[str, int, str]]:
            # A dropped connection fails the test with the server's own log beside it.
            try:
                return one_client(i)
            except httpx.TransportError as exc:
                return [("transport", 599, f"{exc!r}\n--- skd serve:\n{stack.log('serve')}")]

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [
                answer
                for answers in pool.map(client_or_error, range(CLIENTS))
                for answer in answers
            ]
        failures = [r for r in results if r[1] >= 400]
        assert not failures, failures[:5]
        kinds = [kind for kind, _status, _text in results]
        assert kinds.count("import") == kinds.count("campaign") == kinds.count("rating") == CLIENTS
        jobs = staff.get("/api/jobs", params={"limit": 100}).json()
        assert sum(job["kind"] == "import" for job in jobs) == CLIENTS + 1  # + the CLI's
        assert len(staff.get("/api/campaigns").json()) == CLIENTS + 1
        shared = staff.get(f"/api/campaigns/{campaign['id']}").json()
        assert shared["progress"]["ratings_done"] == CLIENTS, shared["progress"]
        assert shared["progress"]["annotators"] == CLIENTS


READERS = 40


def test_forty_staff_pages_at_once_all_answer(tmp_path: Path) -> None:
    """Five times as many requests as `skd serve` has threads, on pages that read through the
    request's session: each finished route still holds its connection until the session is
    closed, so closing must never queue behind routes that wait for a connection."""
    with live_stack(tmp_path, worker=False) as stack:
        staff = stack.login()
        start = threading.Barrier(READERS)

        def reader(_i: int) -> list[tuple[str, int, str]]:
            with same_user(staff, timeout=120) as client:
                start.wait(timeout=60)
                answers = []
                for path in ("/api/campaigns", "/campaigns", "/api/jobs", "/critic") * 2:
                    try:
                        answer = client.get(path)
                        answers.append((path, answer.status_code, answer.text[:300]))
                    except httpx.TransportError as exc:
                        answers.append((path, 599, repr(exc)))
                return answers

        with ThreadPoolExecutor(READERS) as pool:
            results = [answer for answers in pool.map(reader, range(READERS)) for answer in answers]
        failures = [r for r in results if r[1] != 200]
        assert not failures, (failures[:3], stack.log("serve")[-3000:])
        assert len(results) == READERS * 8
