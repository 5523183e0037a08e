"""Every door reaches the worker, through the real processes: `skd serve` (uvicorn and its
thread pool) and `skd worker` run as subprocesses on their own database and queue; staff sign
in through the login form over HTTP. Runs on SQLite (embedded broker) and PostgreSQL (Redis).

Before the queueing fix, work sent from the server's request threads went to Celery's
built-in default app (amqp://localhost) and these jobs stayed "queued" for ever.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.accessibility import assert_accessible
from tests.live_stack import live_stack, succeeded, wait_for_job

GOOD = ["to eat dinner", "to sleep well", "to thank them", "to rest", "to call a friend"]
BAD = ["purple rocket volcano", "seventeen spoons", "the moon melts", "a banana cloud"]


# Fast training of the tiny test model (the same values as tests/critic_helpers.py). Three
# epochs, not two: over 40 random starting weights, two epochs at this rate left one model
# ranking the held-out triples backwards (AUC 0.0, so it was rightly not activated); three
# epochs gave 1.0 for all 40.
def critic_env(tiny_base: Path, **overrides: str) -> dict[str, str]:
    return {
        "critic_base_model": str(tiny_base),
        "critic_preset": "fast",
        "critic_epochs": "3",
        "critic_learning_rate": "2e-3",
        "critic_batch_size": "16",
        "critic_score_chunk_size": "50",
        "critic_held_out_fraction": "0.25",
        "critic_freeze_embeddings": "0",
        "critic_retrain_labels": "0",
        **overrides,
    }


def labelled_file(folder: Path, index: int, heads: int = 5, per_head: int = 4) -> Path:
    """A JSONL file of triples a tiny model can learn, each with a human label (valid)."""
    rng = random.Random(index)
    path = folder / f"labelled-{index}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for h in range(heads):
            for k in range(per_head):
                good = rng.random() < 0.6
                record = {
                    "head": f"PersonX does task {index}-{h}",
                    "relation": "xWant",
                    "tail": f"{rng.choice(GOOD if good else BAD)} {k}",
                    "valid": 2 if good else -2,
                }
                out.write(json.dumps(record) + "\n")
    return path


def upload(client: httpx.Client, path: Path) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post(
            "/api/corpus/import", files=[("files", (path.name, handle, "application/jsonl"))]
        )


def test_jobs_started_over_http_and_the_cli_all_run_on_the_worker(  # type: ignore[no-untyped-def]
    tmp_path, tiny_base
) -> None:
    files = [labelled_file(tmp_path, i) for i in range(8)]
    with live_stack(tmp_path, **critic_env(tiny_base)) as stack:
        client = stack.login()
        # Eight uploads at the same moment: every request thread sends to the one broker.
        with ThreadPoolExecutor(len(files)) as pool:
            answers = list(pool.map(lambda path: upload(client, path), files))
        assert [a.status_code for a in answers] == [202] * len(files), [a.text for a in answers]
        for answer in answers:
            job = succeeded(client, answer.json()["job_id"])
            assert job["result"]["totals"]["imported"] == 20
        assert client.get("/api/corpus").json()["triples"] == 8 * 20

        # The critic: train → evaluate → score, started over the JSON API.
        training = client.post("/api/critic/train", json={})
        assert training.status_code == 202, training.text
        chain = [
            succeeded(client, job_id, timeout=180) for job_id in training.json()["jobs"].values()
        ]
        version = client.get(f"/api/critic/versions/{training.json()['version_id']}").json()
        why = [job.get("result") for job in chain], version.get("metrics", {}).get("roc_auc")
        assert version["state"] == "active" and version["threshold"] is not None, why

        # A score started by hand (the chain's score already did the corpus: nothing left).
        scoring = client.post("/api/critic/score", json={})
        assert scoring.status_code in (200, 202), scoring.text
        if scoring.json()["job_id"] is not None:
            succeeded(client, scoring.json()["job_id"])

        # An export with the default threshold: the version's own.
        export = client.post("/api/exports", json={})
        assert export.status_code == 202, export.text
        succeeded(client, export.json()["job_id"])
        written = client.get(f"/api/exports/{export.json()['export_id']}").json()
        assert written["state"] == "succeeded" and written["threshold"] == version["threshold"]

        # The CLI's --background door sends to the same broker and queue.
        more = labelled_file(tmp_path, 99, heads=2)
        done = stack.skd("import", "--background", str(more))
        assert done.returncode == 0, done.stdout + done.stderr
        assert client.get("/api/corpus").json()["triples"] == 8 * 20 + 8
        # ...and the import task starts a score job of its own (a task that starts a task):
        # the active version scores what arrived.
        deadline = time.monotonic() + 90
        url = f"/api/critic/versions/{version['id']}"
        while client.get(url).json()["unscored"]:
            assert time.monotonic() < deadline, client.get("/api/jobs").json()[:3]
            time.sleep(0.5)

        # The data dir moves (a bigger disk, a mount at another path): the server and the
        # worker started on the new path find the critic and the export there. (Before,
        # every model and export path was absolute: scoring failed on the old folder.)
        client.close()
        stack.stop("worker")
        stack.stop("serve")
        moved = tmp_path / "moved-data"
        stack.data_dir.rename(moved)
        stack.data_dir, stack.env["SKD_DATA_DIR"] = moved, str(moved)
        stack.start("serve", "serve")
        stack.start_worker()
        stack.wait_until_serving()
        client = stack.login()
        assert succeeded(client, upload(client, labelled_file(tmp_path, 98)).json()["job_id"])
        while client.get(url).json()["unscored"]:  # scored by the critic in its new place
            jobs = client.get("/api/jobs", params={"kind": "critic_score"}).json()
            assert not [job for job in jobs if job["state"] == "failed"], jobs[:2]
            assert time.monotonic() < deadline + 90, jobs[:2]
            time.sleep(0.5)
        archive = client.get(f"/exports/{written['id']}/download")
        assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"  # gzip


def test_a_job_no_worker_takes_is_failed_with_the_reason_and_can_be_retried(  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    path = labelled_file(tmp_path, 1, heads=2)
    with live_stack(tmp_path, worker=False, job_queued_seconds="2", job_sweep_seconds="1") as stack:
        client = stack.login()
        started = upload(client, path)
        assert started.status_code == 202
        job_id = started.json()["job_id"]
        # No worker: the web server's own sweep fails it, saying why.
        job = wait_for_job(client, job_id, timeout=30)
        assert job["state"] == "failed", job
        assert "no worker took it within 2 s" in job["error"]
        assert "is a worker running against this broker" in job["error"]
        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 409  # already ended

        # A worker that comes late does not run the failed job behind the user's back...
        stack.start_worker()
        stack.wait_for_worker()
        retried = client.post(f"/api/jobs/{job_id}/retry")
        assert retried.status_code == 202, retried.text
        new_id = retried.json()["job_id"]
        assert new_id != job_id
        # ...but the retry, with the same files, runs.
        assert succeeded(client, new_id)["result"]["totals"]["imported"] == 8
        assert client.get(f"/api/jobs/{job_id}").json()["state"] == "failed"
        assert client.get("/api/corpus").json()["triples"] == 8
        assert client.post(f"/api/jobs/{new_id}/retry").status_code == 409  # it succeeded


def test_broker_down_answers_503_and_leaves_no_queued_job(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = labelled_file(tmp_path, 1, heads=2)
    # Nothing listens on port 1: the broker is down.
    with live_stack(tmp_path, worker=False, broker_url="redis://127.0.0.1:1/0") as stack:
        client = stack.login()
        answer = upload(client, path)
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert "broker" in detail and "redis://127.0.0.1:1" in detail
        jobs = client.get("/api/jobs").json()
        assert jobs and all(job["state"] == "failed" for job in jobs), jobs
        assert "did not answer" in jobs[0]["error"]


def _running(client: httpx.Client, job_id: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] == "running" and job["done"] > 0:
            return
        assert not job["finished"], job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never started: {job}")


def test_cancel_a_running_training_releases_the_lock_and_retry_starts_again(  # type: ignore[no-untyped-def]
    tmp_path, tiny_base
) -> None:
    path = labelled_file(tmp_path, 1)
    slow = critic_env(tiny_base, critic_epochs="1000", critic_patience="1000")
    with live_stack(tmp_path, **slow) as stack:
        client = stack.login()
        succeeded(client, upload(client, path).json()["job_id"])
        chain = client.post("/api/critic/train", json={}).json()
        train_id = chain["jobs"]["train"]
        _running(client, train_id)

        cancelled = client.post(f"/api/jobs/{train_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        assert "cancelled by root" in cancelled.json()["message"]
        for link in ("evaluate", "score"):
            assert client.get(f"/api/jobs/{chain['jobs'][link]}").json()["state"] == "cancelled"
        version = client.get(f"/api/critic/versions/{chain['version_id']}").json()
        assert version["state"] == "failed"  # the training lock is free again
        # The worker notices at its next progress report and stops: the row stays cancelled.
        time.sleep(3)
        assert client.get(f"/api/jobs/{train_id}").json()["state"] == "cancelled"

        # Retry: a new chain (a new version) with the same base model.
        retried = client.post(f"/api/jobs/{train_id}/retry")
        assert retried.status_code == 202, retried.text
        new_train = retried.json()["job_id"]
        assert retried.json()["job"]["kind"] == "critic_train"
        # The CLI cancels too.
        done = stack.skd("jobs", "cancel", str(new_train))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "cancelled" in done.stdout
        assert client.get(f"/api/jobs/{new_train}").json()["state"] == "cancelled"
        # And the page's form: back to where it was posted from.
        again = stack.skd("jobs", "retry", str(new_train))
        assert again.returncode == 0, again.stdout + again.stderr
        third = int(again.stdout.split("job #")[-1].split()[0])
        form = client.post(
            f"/jobs/{third}/cancel",
            data={"csrf_token": client.headers["X-CSRF-Token"], "next": "/critic"},
        )
        assert form.status_code == 303 and form.headers["location"] == "/critic"
        assert client.get(f"/api/jobs/{third}").json()["state"] == "cancelled"


def test_a_time_limited_training_ends_within_its_limit_on_the_worker(  # type: ignore[no-untyped-def]
    tmp_path, tiny_base
) -> None:
    """``critic_max_minutes`` through the real processes: far more epochs are planned than
    15 s allow; the worker's job shortens the schedule, ends within the limit counted from
    the job's start, and the version says what ran."""
    from datetime import datetime

    path = labelled_file(tmp_path, 1, heads=12)
    limited = critic_env(
        tiny_base, critic_epochs="5000", critic_patience="5000", critic_max_minutes="0.25"
    )
    with live_stack(tmp_path, **limited) as stack:
        client = stack.login()
        succeeded(client, upload(client, path).json()["job_id"])
        chain = client.post("/api/critic/train", json={"full": True})
        assert chain.status_code == 202, chain.text
        job = succeeded(client, chain.json()["jobs"]["train"], timeout=120)
        ran = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
        # Within the limit, give or take the first step, saving and the database's writes
        # (on a loaded 2-core machine those took 6 s); a job that ignored the limit would run
        # its 5,000 epochs for many minutes.
        assert 5 < ran.total_seconds() < 15 + 15, ran
        version = client.get(f"/api/critic/versions/{chain.json()['version_id']}").json()
        schedule = version["metrics"]["schedule"]
        assert schedule["time_limited"] and schedule["max_minutes"] == 0.25, schedule
        assert 0 < schedule["steps"] < schedule["planned_steps"], schedule
        assert version["hyperparameters"]["max_minutes"] == 0.25
        page = client.get("/critic").text
        assert "shortened to fit 0.25 min" in page


def test_beat_starts_a_retraining_that_the_worker_runs(tmp_path, tiny_base) -> None:  # type: ignore[no-untyped-def]
    """The scheduler's door: `skd beat` sends critic ticks; enough fresh labels start a
    training chain (sent from inside a task), which the worker runs to an active version."""
    path = labelled_file(tmp_path, 1, heads=12)
    settings = critic_env(tiny_base, critic_retrain_labels="10", critic_check_seconds="2")
    with live_stack(tmp_path, **settings) as stack:
        client = stack.login()
        succeeded(client, upload(client, path).json()["job_id"])
        stack.start_beat()
        deadline = time.monotonic() + 150
        while True:
            versions = client.get("/api/critic/versions").json()
            if versions and versions[0]["state"] != "training":
                break
            assert time.monotonic() < deadline, (versions, stack.log("beat"))
            time.sleep(1)
        # Trained and evaluated (activated or kept for review, as the policy decides).
        assert versions[0]["state"] in ("active", "ready"), versions
        jobs = client.get("/api/jobs").json()
        train = next(job for job in jobs if job["kind"] == "critic_train")
        assert train["state"] == "succeeded"  # nobody asked: beat did

        # The three processes say they run, on the same queue and broker: no problem. A
        # second beat is one, from the page, the API and the terminal alike.
        listed = client.get("/api/processes").json()
        pids = {p["kind"]: p["pid"] for p in listed["processes"]}
        assert pids == {name: stack.processes[key].pid for name, key in RUNNING.items()}
        assert listed["problems"] == [] and "a worker takes it" in stack.skd("processes").stdout
        stack.start("beat2", "beat")
        deadline = time.monotonic() + 60
        while not (problems := client.get("/api/processes").json()["problems"]):
            assert time.monotonic() < deadline, stack.log("beat2")
            time.sleep(0.5)
        assert problems[0].startswith("2 beat processes are running"), problems
        assert "2 beat processes are running" in client.get("/jobs").text
        checked = stack.skd("processes", "--check", "--json")
        assert checked.returncode == 1 and "2 beat processes" in checked.stdout
        stack.stop("beat2")  # it says it is gone as it stops
        assert client.get("/api/processes").json()["problems"] == []


RUNNING = {"web": "serve", "worker": "worker", "beat": "beat"}


def test_a_job_started_with_no_worker_says_so_until_one_takes_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Before, a job sent with no worker running showed "queued" and nothing else until the
    sweep failed it ten minutes later. Its bar now says no worker is running; a worker that
    starts takes it, and the bar runs to the end."""
    path = labelled_file(tmp_path, 1, heads=2)
    with live_stack(tmp_path, worker=False, process_heartbeat_seconds="1") as stack:
        client = stack.login()
        job_id = upload(client, path).json()["job_id"]
        bar = client.get(f"/jobs/{job_id}/progress")
        assert bar.status_code == 200 and "queued" in bar.text
        assert "No worker is running" in bar.text and "skd worker" in bar.text
        worker = stack.start_worker()
        assert succeeded(client, job_id)["result"]["totals"]["imported"] == 8
        bar = client.get(f"/jobs/{job_id}/progress")
        assert "succeeded" in bar.text and "No worker" not in bar.text

        # The worker is killed (out of memory, say): within three heartbeats the page says
        # no worker runs, and names the one that stopped without saying so.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 30
        while not (listed := client.get("/api/processes").json())["gone_silently"]:
            assert time.monotonic() < deadline, listed
            time.sleep(0.5)
        assert [(p["kind"], p["pid"]) for p in listed["gone_silently"]] == [("worker", worker.pid)]
        assert listed["problems"][0].startswith("No worker is running")
        page = client.get("/jobs").text
        assert "Stopped without saying so" in page and f":{worker.pid}</code>" in page


@pytest.fixture
def chromium():  # type: ignore[no-untyped-def]
    from tests.test_browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def test_retrain_now_in_the_browser_runs_to_the_end(tmp_path, tiny_base, chromium) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import OUTPUT
    from tests.live_stack import ADMIN, PASSWORD

    path = labelled_file(tmp_path, 1, heads=12)
    with live_stack(tmp_path, **critic_env(tiny_base)) as stack:
        client = stack.login()
        succeeded(client, upload(client, path).json()["job_id"])
        page = chromium.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(f"{stack.url}/login")
        page.fill("input[name=username]", ADMIN)
        page.fill("input[name=password]", PASSWORD)
        page.click("button.primary")
        page.wait_for_url(f"{stack.url}/")
        page.goto(f"{stack.url}/critic")
        page.click("#retrain")
        # The chain's three bars appear and each runs to 100 %.
        bars = page.locator("#critic-jobs .job-succeeded .bar[aria-valuenow='100']")
        deadline = time.monotonic() + 180
        while bars.count() < 3:
            assert time.monotonic() < deadline, page.inner_text("#critic-jobs")
            assert page.locator("#critic-jobs .job-failed").count() == 0, page.inner_text(
                "#critic-jobs"
            )
            time.sleep(0.5)
        OUTPUT.mkdir(exist_ok=True)
        assert_accessible(page)
        page.screenshot(path=str(OUTPUT / "e2e-retrain-now.png"), full_page=True)
        versions = client.get("/api/critic/versions").json()
        assert [v["state"] for v in versions] == ["active"], versions


def test_work_started_from_the_import_and_export_forms_runs_on_the_worker(  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    """The home page's upload form and the export page's form are doors of their own (a
    multipart form as htmx sends it, a plain form post and its redirect): what they start must
    reach a real worker. Two uploads from the form at once, then an export from its form."""
    files = [labelled_file(tmp_path, i) for i in range(2)]
    with live_stack(tmp_path) as stack:
        client = stack.login()
        token = client.headers["X-CSRF-Token"]
        home = client.get("/")
        assert 'action="/corpus/import"' in home.text and 'name="files"' in home.text

        def from_form(path: Path) -> httpx.Response:
            with path.open("rb") as handle:
                return client.post(
                    "/corpus/import",
                    files=[("files", (path.name, handle, "application/jsonl"))],
                    data={"source": path.stem, "csrf_token": token},
                    headers={"HX-Request": "true"},  # as htmx posts it: the job's bar comes back
                )

        with ThreadPoolExecutor(len(files)) as pool:
            answers = list(pool.map(from_form, files))
        job_ids = []
        for answer in answers:
            assert answer.status_code == 200, answer.text
            found = re.search(r'id="job-(\d+)"', answer.text)
            assert found, answer.text  # the job's live bar, swapped into the page
            job_ids.append(int(found.group(1)))
        for job_id in job_ids:
            job = succeeded(client, job_id)
            assert job["result"]["totals"]["imported"] == 20
        assert client.get("/api/corpus").json()["triples"] == 2 * 20

        page = client.get("/exports")
        assert 'action="/exports"' in page.text
        form = {"version": "none", "rule": "default", "formats": ["jsonl", "student"],
                "split_by": "head", "seed": "0", "csrf_token": token}  # fmt: skip
        started = client.post("/exports", data=form)  # without JavaScript: the export's page
        assert started.status_code == 303, started.text
        export_id = int(started.headers["location"].rsplit("/", 1)[1])
        export = client.get(f"/api/exports/{export_id}").json()
        job = succeeded(client, export["job"]["id"])
        # No critic chosen on the form: every triple but those people rejected (the default
        # human-label rule).
        accepted = [json.loads(line)["valid"] > 0 for p in files for line in p.open()]
        assert job["result"]["total"] == sum(accepted) < 40
        export = client.get(f"/api/exports/{export_id}").json()
        assert export["state"] == "succeeded" and export["no_critic"], export
        assert {"jsonl/train.jsonl", "student/train.jsonl"} <= set(export["files"]), export["files"]
