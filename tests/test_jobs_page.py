"""The jobs page (/jobs) and a job's page, through the app: what each job works on, who started
it from which door, progress with rate and time left, filters, live updates, cancel/retry
buttons; and one number per export on the export pages."""

from __future__ import annotations

import html
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.core.db import session_scope
from app.core.jobs import create_job
from app.core.models import Job, JobState, utcnow
from app.core.origin import origin
from tests.conftest import ROOT
from tests.test_web import wait_for_job


def _job(kind: str, params: dict, state: JobState = JobState.queued, **fields) -> int:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        job = create_job(session, kind, params)
        job.state = state
        for name, value in fields.items():
            setattr(job, name, value)
        return job.id


def _row(page: str, job_id: int) -> str:
    match = re.search(rf'<tr id="jobrow-{job_id}".*?</tr>', page, re.S)
    assert match, f"job {job_id} is not in the table"
    return match.group(0)


def test_jobs_page_needs_staff(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/jobs", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/jobs"
    assert client.get("/jobs/table", follow_redirects=False).status_code == 303


def test_jobs_page_shows_what_who_progress_rate_and_time_left(staff_client) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    running = _job(
        "critic_score",
        {"version_id": 3},
        JobState.running,
        started_at=now - timedelta(seconds=20),
        done=100,
        total=300,
        message="scoring",
    )
    with origin("beat"):
        automatic = _job("critic_train", {"version_id": 4})
    failed = _job(
        "export",
        {"export_id": 7},
        JobState.failed,
        started_at=now - timedelta(seconds=90),
        finished_at=now - timedelta(seconds=30),
        error="disk full while writing jsonl/train.jsonl",
    )
    page = staff_client.get("/jobs")
    assert page.status_code == 200
    row = _row(page.text, running)
    assert "critic v3 · score" in row and "100 / 300 triples" in row
    assert "5.0/s" in row and "triples</span>" in row  # 100 done in 20 s
    assert "40 s" in row  # 200 left at 5/s
    assert "badge-running" in row
    row = _row(page.text, automatic)
    assert "beat" in row and "critic v4 · train" in row
    row = _row(page.text, failed)
    assert 'href="/exports/7"' in row and "Export #7" in row
    assert "disk full while writing jsonl/train.jsonl" in row
    assert "1 min 00 s" in row  # duration: started 90 s ago, ended 30 s ago
    # An export's steps mix rows and archive bytes: a fraction, no rate in made-up units.
    halfway = _job(
        "export",
        {"export_id": 8},
        JobState.running,
        started_at=utcnow() - timedelta(minutes=10),
        done=500_000,
        total=1_000_000,
    )
    row = _row(staff_client.get("/jobs").text, halfway)
    assert "50%" in row and "500,000" not in row and 'data-label="Rate">–</td>' in row
    # time left still comes from its pace: half done in ten minutes, about ten to go
    assert re.search(r'data-label="Time left">10 min \d\d s</td>', row), row
    assert staff_client.get(f"/api/jobs/{halfway}").json()["unit"] is None
    assert staff_client.get(f"/api/jobs/{running}").json()["unit"] == "triples"
    # Live: the table re-fetches itself quickly while a job in it runs.
    assert 'hx-get="/jobs/table?kind=&state="' in page.text and "every 2s" in page.text
    # The staff navigation links it.
    assert re.search(r'<a href="/jobs"[^>]*>Jobs', page.text)  # (flagged or not)


def test_filters_by_kind_and_state(staff_client) -> None:  # type: ignore[no-untyped-def]
    imported = _job("import", {"names": ["a.tsv"]}, JobState.succeeded)
    failed = _job("import", {"names": ["b.tsv"]}, JobState.failed, error="bad line")
    export = _job("export", {"export_id": 1}, JobState.succeeded)
    page = staff_client.get("/jobs?kind=import").text
    assert f"jobrow-{imported}" in page and f"jobrow-{failed}" in page
    assert f"jobrow-{export}" not in page
    page = staff_client.get("/jobs/table?kind=import&state=failed").text
    assert f"jobrow-{failed}" in page and f"jobrow-{imported}" not in page
    # Nothing unfinished in view: the table still refreshes, slowly (new jobs appear).
    assert "every 10s" in page
    assert "No jobs match" in staff_client.get("/jobs?state=cancelled").text
    bad = staff_client.get("/jobs?state=lost")
    assert bad.status_code == 422 and "'lost' is not one of" in bad.text


def test_upload_records_the_user_and_the_door(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    files = [("files", ("handmade.tsv", b"PersonX a\txNeed\tb\n", "text/plain"))]
    job_id = staff_client.post("/api/corpus/import", files=files).json()["job_id"]
    assert wait_for_job(staff_client, job_id)["state"] == "succeeded"
    page_job = staff_client.post(
        "/corpus/import",
        files=[("files", ("second.tsv", b"PersonX c\txNeed\td\n", "text/plain"))],
        headers={"HX-Request": "true"},
    )
    page_job_id = int(page_job.text.split('id="job-')[1].split('"')[0])
    wait_for_job(staff_client, page_job_id)
    page = staff_client.get("/jobs").text
    row = _row(page, job_id)
    assert "import of handmade.tsv" in row and "ada (api)" in row
    assert "badge-succeeded" in row and "/s" in row  # a rate for a finished job
    assert "ada (web)" in _row(page, page_job_id)


def test_cli_records_who_ran_it(staff_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "cli.tsv"
    corpus.write_text("PersonX runs\txNeed\tshoes\n")
    done = subprocess.run(
        [str(ROOT / ".venv/bin/skd"), "import", str(corpus)],
        env={**os.environ, "USER": "carol", "LOGNAME": "carol"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.kind == "import")).one()
    assert job.started_by == "cli (carol)" and job.created_by_id is None
    assert "cli (carol)" in _row(staff_client.get("/jobs").text, job.id)
    _job("export", {"export_id": 3}, JobState.failed)
    listed = subprocess.run(
        [str(ROOT / ".venv/bin/skd"), "jobs", "list", "--kind", "import"],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "import of cli.tsv" in listed.stdout and "cli (carol)" in listed.stdout
    assert "Export #3" not in listed.stdout
    bad = subprocess.run(
        [str(ROOT / ".venv/bin/skd"), "jobs", "list", "--state", "lost"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--state: use one of" in bad.stderr


def test_tasks_record_beat_or_worker(settings, engine) -> None:  # type: ignore[no-untyped-def]
    """A job created inside a scheduled task (what beat sends) says "beat"; inside any other
    task, "worker". The worker's own signal (task_prerun) is what sets it."""
    import contextvars

    from celery.signals import task_prerun

    from workers.celery_app import celery_app

    celery_app.loader.import_default_modules()
    scheduled = next(iter(celery_app.conf.beat_schedule.values()))["task"]

    def job_made_inside(task_name: str) -> str | None:
        task = celery_app.tasks[task_name]
        task_prerun.send(sender=task, task_id="t", task=task, args=(), kwargs={})
        with session_scope(write=True) as session:
            return create_job(session, "import", {}).started_by

    assert contextvars.copy_context().run(job_made_inside, scheduled) == "beat"
    assert contextvars.copy_context().run(job_made_inside, "skd.export") == "worker"


def test_job_page_has_cancel_and_retry_buttons(staff_client) -> None:  # type: ignore[no-untyped-def]
    running = _job(
        "critic_score", {"version_id": 2}, JobState.running, started_at=utcnow(), total=10
    )
    page = staff_client.get(f"/jobs/{running}")
    assert page.status_code == 200
    assert f'action="/jobs/{running}/cancel"' in page.text and 'name="csrf_token"' in page.text
    assert f'value="/jobs/{running}"' in page.text  # back to this page afterwards
    assert "/retry" not in page.text
    assert '"version_id": 2' in html.unescape(page.text)
    # Cancel through the page's own form.
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = staff_client.post(
        f"/jobs/{running}/cancel",
        data={"csrf_token": token, "next": f"/jobs/{running}"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{running}"
    after = staff_client.get(f"/jobs/{running}").text
    assert "badge-cancelled" in after
    assert f'action="/jobs/{running}/retry"' in after and "/cancel" not in after
    # A failed job shows its error and traceback, and only the retry button.
    failed = _job(
        "export",
        {"export_id": 9},
        JobState.failed,
        error="no space left",
        result={"traceback": "Traceback (most recent call last): ..."},
    )
    text = staff_client.get(f"/jobs/{failed}").text
    assert "no space left" in text and "Traceback (most recent call last)" in text
    assert f'action="/jobs/{failed}/retry"' in text and "/cancel" not in text
    assert staff_client.get("/jobs/999999").status_code == 404


def test_export_pages_show_one_number_per_export(staff_client) -> None:  # type: ignore[no-untyped-def]
    from tests.test_export import build_corpus

    for _ in range(3):  # so that the export's job id differs from the export's id
        _job("import", {})
    build_corpus(heads=20)
    response = staff_client.post(
        "/exports",
        data={"rule": "threshold", "value": "0.5", "formats": "jsonl", "split_by": "head"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.kind == "export")).one()
        export_id, job_id = job.params["export_id"], job.id
    assert export_id != job_id
    for text in (response.text, staff_client.get(f"/exports/{export_id}").text):
        assert f"Export #{export_id}" in text
        # The job's number is never written as if it were an export's number.
        assert not re.search(rf"#{job_id}\b", text), text
        assert f"job {job_id}" in text


def test_retry_from_the_job_page_records_who_retried(staff_client) -> None:  # type: ignore[no-untyped-def]
    failed = _job("import", {"names": ["late.tsv"], "paths": []}, JobState.failed, error="x")
    page = staff_client.get(f"/jobs/{failed}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = staff_client.post(
        f"/jobs/{failed}/retry", data={"csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    new_id = int(answer.headers["location"].rsplit("/", 1)[1])
    assert new_id != failed
    row = _row(staff_client.get("/jobs").text, new_id)
    assert "import of late.tsv" in row and "ada (web)" in row
    assert f'<a href="/jobs/{failed}">job {failed}</a>' in staff_client.get(f"/jobs/{new_id}").text


def test_json_api_lists_the_same_rows_with_filters(staff_client) -> None:  # type: ignore[no-untyped-def]
    with origin("cli (carol)"):
        failed = _job("import", {"names": ["x.tsv"]}, JobState.failed, error="bad line 3")
    _job("import", {"names": ["y.tsv"]}, JobState.succeeded)
    _job("export", {"export_id": 2}, JobState.failed)
    rows = staff_client.get("/api/jobs?kind=import&state=failed").json()
    assert [row["id"] for row in rows] == [failed]
    assert rows[0]["label"] == "import of x.tsv" and rows[0]["started_by"] == "cli (carol)"
    assert rows[0]["error"] == "bad line 3" and "duration_s" in rows[0]
    one = staff_client.get(f"/api/jobs/{failed}").json()
    assert one["label"] == "import of x.tsv" and one["state"] == "failed"
    assert staff_client.get("/api/jobs?state=lost").status_code == 422
    assert len(staff_client.get("/api/jobs").json()) == 3


def test_each_kind_is_named_by_its_own_number() -> None:
    from app.core.job_list import Subject, job_subject

    assert job_subject("export", {"export_id": 5}) == Subject("Export #5", "/exports/5")
    assert job_subject("critic_evaluate", {"version_id": 2}).label == "critic v2 · evaluate"
    assert job_subject("teacher", {"run_id": 4}) == Subject("teacher run #4", "/teacher/runs/4")
    assert job_subject("student_train", {"student_model_id": 3, "export_id": 5}) == Subject(
        "student #3 from Export #5",
        "/student/runs/3",
    )
    names = {"names": ["a/x.tsv", "b.tsv", "c.tsv", "d.tsv", "e.tsv"]}
    assert job_subject("import", names).label == "import of x.tsv, b.tsv, c.tsv and 2 more"
    assert job_subject("something_new", {}).label == "something new"
