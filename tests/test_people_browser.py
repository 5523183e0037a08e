"""The jobs page and the people page in a real browser (chromium via Playwright): the table
updates itself, filters swap it in place, a job's page has its buttons; an admin invites
someone, copies the link and deactivates a researcher. Screenshots go to test-output/."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.db import session_scope
from app.core.jobs import create_job
from app.core.models import Job, JobState, utcnow
from app.core.origin import origin
from tests.accessibility import assert_accessible
from tests.conftest import OUTPUT, make_staff
from tests.test_browser import browser, live_server  # noqa: F401 - fixtures

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


def _jobs() -> dict[str, int]:
    now = utcnow()
    with session_scope(write=True) as session:
        with origin("web", None):
            done = create_job(session, "import", {"names": ["atomic-sample.tsv"]})
        done.state, done.started_at, done.finished_at = JobState.succeeded, now, now
        done.done = done.total = 2000
        with origin("beat"):
            running = create_job(session, "critic_score", {"version_id": 2})
        running.state, running.started_at = JobState.running, now - timedelta(seconds=30)
        running.done, running.total, running.message = 300, 1200, "scoring chunk 2 of 8"
        failed = create_job(session, "export", {"export_id": 4})
        failed.state, failed.started_at, failed.finished_at = (
            JobState.failed,
            now - timedelta(seconds=70),
            now - timedelta(seconds=10),
        )
        failed.error = "no critic scores for version 2: score the corpus first"
        return {"done": done.id, "running": running.id, "failed": failed.id}


def test_jobs_and_people_pages(live_server, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    OUTPUT.mkdir(exist_ok=True)
    make_staff("root", "a long password", "admin")
    make_staff("ada", "correct horse", "researcher")
    ids = _jobs()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server}/login")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "a long password")
    page.click("button.primary")
    page.wait_for_url(f"{live_server}/")

    # The staff navigation leads to the jobs page.
    page.click("nav >> text=Jobs")
    page.wait_for_url(f"{live_server}/jobs")
    running = page.locator(f"#jobrow-{ids['running']}")
    assert "critic v2 · score" in running.inner_text()
    assert "300 / 1,200" in running.inner_text() and "beat" in running.inner_text()
    assert "no critic scores" in page.locator(f"#jobrow-{ids['failed']}").inner_text()
    # No worker runs beside this server: the processes panel says so, above the table.
    assert "No worker is running" in page.locator("#processes .process-problem").first.inner_text()
    assert "web" in page.locator("#processes .process-web").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "jobs-page.png"), full_page=True)

    # Live: the worker reports progress, the table shows it without a reload.
    with session_scope(write=True) as session:
        job = session.get(Job, ids["running"])
        job.done = 900
    page.wait_for_function(
        f"document.querySelector('#jobrow-{ids['running']}').innerText.includes('900 / 1,200')",
        timeout=15_000,
    )

    # The state filter swaps the table in place.
    page.select_option("select[name=state]", "failed")
    page.wait_for_selector(f"#jobrow-{ids['running']}", state="detached", timeout=10_000)
    assert page.locator(".job-row").count() == 1
    assert page.url == f"{live_server}/jobs"

    # A job's page: its bar, its parameters, and the right button.
    page.click(f"#jobrow-{ids['failed']} >> text=job {ids['failed']}")
    page.wait_for_url(f"{live_server}/jobs/{ids['failed']}")
    assert page.locator("#retry-job").is_visible()
    assert page.locator("#cancel-job").count() == 0
    assert "Export #4" in page.locator(".job-head").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "job-detail.png"), full_page=True)

    # People: invite someone, copy the link, deactivate a researcher.
    page.click("nav >> text=People")
    page.wait_for_url(f"{live_server}/admin/users")
    page.fill("#invitations input[name=name]", "Grace Hopper")
    page.click("#invitations button:has-text('Create invitation')")
    page.wait_for_selector("text=Invited Grace Hopper")
    link_field = page.locator("#invitations input.invite-link").first
    link = link_field.input_value()
    assert "/i/" in link
    page.click("#invitations button.copy-link")
    page.wait_for_selector("#invitations button.copy-link:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == link

    ada_row = page.locator("#staff tr", has_text="ada")
    ada_row.locator("button:has-text('Deactivate')").click()
    page.wait_for_selector("text=ada is deactivated")
    assert "deactivated" in page.locator("#staff tr", has_text="ada").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "people-page.png"), full_page=True)

    # The invitation link signs Grace in, in a browser of her own.
    other = browser.new_context()
    grace = other.new_page()
    grace.goto(live_server + "/i/" + link.split("/i/", 1)[1])  # the link names SKD_PUBLIC_URL
    assert "/login" not in grace.url
    other.close()
    context.close()
