"""The student pages in a real browser: train from the form and watch the job end on the
model's page, then read an evaluation's table. Screenshots go to test-output/."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.core.jobs import run_job
from app.core.models import CampaignItem, Rating
from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT, make_staff
from tests.test_browser import browser, live_server, signed_in_page  # noqa: F401 - fixtures
from tests.test_export import build_corpus, export
from tests.test_student import TRAIN, _export_id, _real_hashes, tiny_causal  # noqa: F401

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


def test_train_from_the_page_and_read_the_table(  # type: ignore[no-untyped-def]
    live_server,  # noqa: F811
    browser,  # noqa: F811
    celery_worker,
    tiny_causal,  # noqa: F811
    tmp_path,
) -> None:
    from app.student.evaluation import EvaluationSpec

    OUTPUT.mkdir(exist_ok=True)
    build_corpus(heads=30)
    _real_hashes()
    export({"threshold": 0.0, "formats": ["student"]}, tmp_path / "graph")
    export_id = _export_id()
    make_staff("ada", "correct horse")
    page = signed_in_page(browser, live_server, "/student")
    assert "No student yet" in page.locator("#models").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"student-empty-{BACKEND}.png"), full_page=True)

    page.fill("#train-form input[name=base_model]", str(tiny_causal))
    page.fill("#train-form input[name=epochs]", str(TRAIN["epochs"]))
    page.fill("#train-form input[name=learning_rate]", str(TRAIN["learning_rate"]))
    page.fill("#train-form input[name=batch_size]", str(TRAIN["batch_size"]))
    page.click("#train-form button.primary")
    page.wait_for_url(f"{live_server}/student/runs/*")
    page.wait_for_selector(".job .bar, h1 .badge-ready", timeout=30_000)  # a live bar, or done
    page.wait_for_selector("h1 .badge-ready", timeout=180_000)  # then the page refreshes itself
    assert page.locator("#dev-loss tbody tr").count() == TRAIN["epochs"]
    assert f"export #{export_id}" in page.locator(".prose").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"student-model-{BACKEND}.png"), full_page=True)
    model_id = int(page.url.rsplit("/", 1)[1])

    spec = EvaluationSpec(
        name="Student vs teacher (demo)",
        export_id=export_id,
        student_model_ids=[model_id],
        heads=4,
        teacher_sources=["teacher"],
        reference_sources=["human"],
        ratings_per_item=3,
    )
    from app.core.jobs import new_job
    from app.student.evaluation import run_evaluation_job

    job_id = new_job("student_evaluate", {"spec": spec.as_dict()})
    campaign_id = run_job(job_id, run_evaluation_job)["campaign_id"]
    with session_scope(write=True) as session:
        items = session.execute(
            select(CampaignItem.id, CampaignItem.triple_id).where(
                CampaignItem.campaign_id == campaign_id
            )
        ).all()
        for n, (item_id, triple_id) in enumerate(items):
            session.add(
                Rating(
                    triple_id=triple_id,
                    item_id=item_id,
                    answer=(2, 1, -1, -2)[n % 4],
                    submission_id=uuid.uuid4().hex,
                )
            )
    page.goto(f"{live_server}/student/evaluations/{campaign_id}")
    rows = page.locator("#per-system tbody tr")
    assert rows.count() == 3
    assert "%" in page.locator("#per-system .acceptability").first.inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"student-evaluation-{BACKEND}.png"), full_page=True)
    page.goto(f"{live_server}/campaigns/{campaign_id}")
    page.wait_for_selector("#evaluation-table #per-system")
    assert_accessible(page)
    page.locator("#evaluation-table").screenshot(
        path=str(OUTPUT / f"student-campaign-table-{BACKEND}.png")
    )
    page.goto(f"{live_server}/student")
    assert f"#{campaign_id}" in page.locator("#evaluations").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"student-page-{BACKEND}.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(page.context.cookies())
    narrow.goto(f"{live_server}/student/evaluations/{campaign_id}")
    assert_accessible(narrow)
    narrow.screenshot(path=str(OUTPUT / f"student-evaluation-360px-{BACKEND}.png"), full_page=True)
    overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a 360px screen"
