"""The teacher page in a real browser: a bad base URL is named next to the form; a run against
an OpenAI-compatible server on a loopback port is started from the form, its page shows the
progress, the filter counts and a sample, and one click opens a campaign on its triples.
Screenshots go to test-output/."""

from __future__ import annotations

from typing import Any

import pytest

from tests.accessibility import assert_accessible
from tests.conftest import OUTPUT, make_staff
from tests.teacher_helpers import FakeOpenAI
from tests.test_browser import browser, live_server, signed_in_page  # noqa: F401 - fixtures

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


def test_researcher_configures_starts_watches_and_opens_a_campaign(
    live_server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    celery_worker: Any,
) -> None:
    OUTPUT.mkdir(exist_ok=True)
    make_staff("ada", "correct horse")
    page = signed_in_page(browser, live_server, height=1000)
    page.click("nav a[href='/teacher']")
    page.wait_for_url(f"{live_server}/teacher")
    # The plan of the form's defaults (four prompts, five events each), shown on arrival.
    plan = page.locator("#plan-summary")
    plan.wait_for()
    assert "20 generations" in plan.inner_text()
    assert "No finished run of this model" in plan.inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "teacher-form.png"), full_page=True)

    page.check("input[name=backend][value=openai]")
    page.fill("input[name=base_url]", "localhost:9/v1")
    page.fill("input[name=model]", "fake")
    page.click("#teacher-form button.primary")
    error = page.locator("#teacher-errors")
    error.wait_for()
    assert "is not an http:// or https:// URL" in error.inner_text()
    assert page.input_value("input[name=model]") == "fake"  # the form keeps what was typed

    with FakeOpenAI() as server:
        page.fill("input[name=base_url]", server.base_url)
        page.fill("input[name=prompts]", "4")
        page.fill("input[name=n]", "2")
        page.fill("input[name=inference_n]", "2")
        page.check("input[name=relations][value=xWant]")
        page.fill("input[name=name]", "browser run")
        # The plan follows the form as it is filled in: 4 x 2 events, then at most 8 x 2.
        page.wait_for_function(
            "document.querySelector('#plan-summary')?.innerText.includes('24 generations')"
        )
        base_url = server.base_url
        page.click("#teacher-form button.primary")
        page.wait_for_url(f"{live_server}/teacher/runs/*")
        page.wait_for_selector("#teacher-panel[data-state=succeeded]", timeout=90_000)
    counts = page.locator("#teacher-counts").inner_text()
    assert "already in the corpus" in counts and "not starting with PersonX" in counts
    sample = page.locator("#teacher-sample").inner_text()
    assert "PersonX tries hobby" in sample and "to phone PersonX's friend" in sample
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "teacher-run.png"), full_page=True)

    page.click("text=Open a campaign on this run's triples")
    page.wait_for_url(f"{live_server}/campaigns/*")
    assert "Rate browser run" in page.content()

    # The next run of the same model on the same server is timed by this one.
    page.goto(f"{live_server}/teacher")
    page.check("input[name=backend][value=openai]")
    page.fill("input[name=base_url]", base_url)
    page.fill("input[name=model]", "fake")
    page.fill("input[name=prompts]", "40")
    page.locator("input[name=prompts]").dispatch_event("change")
    # The panel answers each change in turn: wait for the one with every field filled in.
    page.wait_for_function(
        "(s => s && s.includes('200 generations') && s.includes('at the pace of run #'))"
        "(document.querySelector('#plan-summary')?.innerText)"
    )
    assert_accessible(page)
    page.locator("#teacher-plan").screenshot(path=str(OUTPUT / "teacher-plan.png"))

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(page.context.cookies())
    narrow.goto(f"{live_server}/teacher")
    narrow.locator("#plan-summary").wait_for()
    assert_accessible(narrow)
    narrow.locator("#teacher-plan").screenshot(path=str(OUTPUT / "teacher-plan-360px.png"))
    overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"/teacher is {overflow}px wider than a 360px screen"


def test_an_events_only_run_leads_on_to_writing_their_inferences(
    live_server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    celery_worker: Any,
) -> None:
    """The paper's two steps from the page: events first (no relation ticked), then, from that
    run's page, inferences for exactly those events. The campaign button waits, visibly
    disabled, until there are triples to rate."""
    make_staff("ada", "correct horse")
    page = signed_in_page(browser, live_server, height=1000)
    with FakeOpenAI() as server:
        page.goto(f"{live_server}/teacher")
        page.check("input[name=backend][value=openai]")
        page.fill("input[name=base_url]", server.base_url)
        page.fill("input[name=model]", "fake")
        page.fill("input[name=prompts]", "2")
        page.fill("input[name=n]", "2")
        page.click("#teacher-form button.primary")
        page.wait_for_url(f"{live_server}/teacher/runs/*")
        page.wait_for_selector("#teacher-panel[data-state=succeeded]", timeout=90_000)
        events_run = page.url.rsplit("/", 1)[1]
        campaign = page.locator("text=Open a campaign on this run's triples")
        assert campaign.is_disabled()
        assert (
            page.eval_on_selector(
                "#teacher-actions button.primary", "b => getComputedStyle(b).opacity"
            )
            == "0.45"
        )
        assert "wrote events only" in page.inner_text("#teacher-actions")
        assert_accessible(page)
        page.screenshot(path=str(OUTPUT / "teacher-events-only.png"), full_page=True)

        page.click("#write-inferences")
        page.wait_for_url(f"{live_server}/teacher?events_of_run={events_run}")
        assert page.is_checked("input[name=kind][value=inferences]")
        assert page.input_value("select[name=heads_kind]") == "run"
        assert page.input_value("input[name=heads_value]") == events_run
        assert page.locator("input[name=relations]:checked").count() == 7  # every relation
        for box in page.locator("input[name=relations]").all():
            box.uncheck()
        page.check("input[name=relations][value=xWant]")
        # The server and model that wrote the events are filled in again.
        assert page.is_checked("input[name=backend][value=openai]")
        assert page.input_value("input[name=base_url]") == server.base_url
        assert page.input_value("input[name=model]") == "fake"
        page.fill("input[name=inference_n]", "2")
        page.click("#teacher-form button.primary")
        page.wait_for_url(f"{live_server}/teacher/runs/*")
        page.wait_for_selector("#teacher-panel[data-state=succeeded]", timeout=90_000)
    assert page.url.rsplit("/", 1)[1] != events_run
    assert "Triples (" in page.inner_text("#teacher-sample")
    page.click("text=Open a campaign on this run's triples")
    page.wait_for_url(f"{live_server}/campaigns/*")
