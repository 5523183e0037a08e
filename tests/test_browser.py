"""End to end in a real browser (Debian's chromium driven by Playwright): log in, see the corpus,
upload a file through the form and watch its progress bar finish. Screenshots go to
test-output/."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT, add_triples, make_staff

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def live_server(app):  # type: ignore[no-untyped-def]
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        if os.environ.get("SKD_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def signed_in_page(  # type: ignore[no-untyped-def]
    browser,
    live_server: str,
    start: str = "/",
    *,
    username: str = "ada",
    password: str = "correct horse",
    width: int = 1280,
    height: int = 900,
):
    """A new page signed in through the login form (as a person does), landed on ``start``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{live_server}/login?next={start}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button.primary")
    page.wait_for_url(f"{live_server}{start}")
    return page


def test_staff_logs_in_uploads_and_watches_the_job(
    live_server, browser, celery_worker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    OUTPUT.mkdir(exist_ok=True)
    make_staff("ada", "correct horse")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{live_server}/")
    assert page.url.startswith(f"{live_server}/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "correct horse")
    page.click("button.primary")
    page.wait_for_url(f"{live_server}/")
    assert page.locator(".stat .num").first.inner_text() == "0"
    # An empty jobs list says so (the stylesheet's :empty text; whitespace in it defeated that).
    empty = page.eval_on_selector("#jobs", "e => getComputedStyle(e, '::before').content")
    assert empty == '"No jobs yet."'

    upload = tmp_path / "handmade.tsv"
    upload.write_text(
        "".join(f"PersonX plants tree {i}\txWant\tto water it\n" for i in range(2000))
    )
    page.set_input_files("input[name=files]", str(upload))
    # A source name kept for the teacher is refused under the form, the form kept as filled in
    # and no job made; the next, corrected try clears it.
    page.fill("input[name=source]", "teacher-run-2")
    page.click("form.row-form button.primary")
    refusal = page.locator("#import-problem [role=alert]")
    refusal.wait_for()
    assert "source 'teacher-run-2': kept for a teacher run's own triples" in refusal.inner_text()
    assert page.input_value("input[name=source]") == "teacher-run-2"
    assert page.locator(".job").count() == 0
    assert_accessible(page)
    page.fill("input[name=source]", "")
    page.click("form.row-form button.primary")
    job = page.locator(".job").first
    job.wait_for()
    page.wait_for_selector(".job .badge-succeeded", timeout=60_000)
    assert "2,000 imported" in job.inner_text()
    assert page.url == f"{live_server}/"  # htmx swapped the fragment in, no page load
    assert page.locator("#import-problem").inner_text() == ""

    # The counts refresh by themselves when the job ends, no reload needed.
    page.wait_for_function(
        "document.querySelector('.stat .num').textContent.trim() === '2,000'", timeout=10_000
    )
    assert "handmade" in page.locator("table.counts").nth(1).inner_text()
    assert page.locator("#jobs").inner_text().count("No jobs yet") == 0
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"home-after-import-{BACKEND}.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(page.context.cookies())
    narrow.goto(f"{live_server}/")
    overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert_accessible(narrow)
    narrow.screenshot(path=str(OUTPUT / f"home-360px-{BACKEND}.png"), full_page=True)
    assert overflow <= 0, f"page is {overflow}px wider than a 360px screen"


def test_login_page_renders(live_server, browser) -> None:  # type: ignore[no-untyped-def]
    OUTPUT.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto(f"{live_server}/login")
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "wrong-password")
    page.click("button.primary")
    assert "Wrong username or password" in page.locator(".alert").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"login-{BACKEND}.png"))


def wait_for_item(page, position: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "n => { const p = document.querySelector('.progress-text');"
        " return p && p.innerText.includes(`Item ${n} of`); }",
        arg=position,
    )


def test_prolific_worker_rates_with_the_keyboard_and_changes_an_answer(  # type: ignore[no-untyped-def]
    live_server, browser, engine
) -> None:
    from sqlalchemy import select

    from app.annotation.campaigns import CampaignSpec, create_campaign
    from app.core.db import session_scope
    from app.core.models import Rating, Triple, User

    OUTPUT.mkdir(exist_ok=True)
    add_triples(8, head="PersonX bakes loaf {i}", tail="to share slice {i}")
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session,
            CampaignSpec(
                name="e2e",
                ratings_per_item=1,
                quota_per_annotator=5,
                completion_code="C0DE5",
                guidelines="Rate whether the **inference** is plausible.",
            ),
        )
        share = campaign.share_token
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto(f"{live_server}/c/{share}?PROLIFIC_PID=pp123&STUDY_ID=st&SESSION_ID=se")
    page.wait_for_selector("#rater .sentence")
    assert "Item 1 of 5" in page.locator(".progress-text").inner_text()
    assert "As a result, PersonX wants" in page.locator(".sentence").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"rating-page-{BACKEND}.png"))
    keys = ["1", "2", "3", "4"]
    seen = []
    for position, key in enumerate(keys, start=1):
        seen.append(page.locator(".sentence .tail").inner_text())
        page.keyboard.press(key)
        wait_for_item(page, position + 1)
    assert page.url.endswith(f"/annotate/{campaign.id}")  # no page loads: htmx swaps
    page.keyboard.press("u")  # back to item 4, answered "invalid" (4)
    page.wait_for_selector("#rater .badge")
    assert page.locator(".sentence .tail").inner_text() == seen[3]
    assert "chosen" in page.locator('button[data-key="4"]').get_attribute("class")
    page.keyboard.press("2")  # change it to sometimes/likely
    wait_for_item(page, 5)
    seen.append(page.locator(".sentence .tail").inner_text())
    page.keyboard.press("1")
    page.wait_for_selector("#completion-code")
    assert page.locator("#completion-code").inner_text() == "C0DE5"
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"rating-done-{BACKEND}.png"))

    with session_scope() as session:
        worker = session.scalars(select(User).where(User.external_id == "pp123")).one()
        stored = dict(
            session.execute(
                select(Triple.tail, Rating.answer)
                .join(Rating, Rating.triple_id == Triple.id)
                .where(Rating.annotator_id == worker.id)
            ).all()
        )
        seconds = session.scalars(
            select(Rating.seconds).where(Rating.annotator_id == worker.id)
        ).all()
    assert stored == {seen[0]: 2, seen[1]: 1, seen[2]: -1, seen[3]: 1, seen[4]: 2}
    assert all(s is not None and 0 <= s < 60 for s in seconds)


def test_rating_page_works_without_javascript_and_at_360px(live_server, browser, engine) -> None:  # type: ignore[no-untyped-def]
    from app.annotation.campaigns import CampaignSpec, create_campaign
    from app.core.db import session_scope

    add_triples(3, head="PersonX waters plant {i}", tail="to help it grow", relation="xIntent")
    with session_scope(write=True) as session:
        share = create_campaign(session, CampaignSpec(name="nojs", ratings_per_item=1)).share_token
    context = browser.new_context(java_script_enabled=False, viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{live_server}/c/{share}?workerId=mt1&assignmentId=a1")
    assert "Item 1 of 3" in page.locator(".progress-text").inner_text()
    page.click('button[data-key="1"]')
    assert "Item 2 of 3" in page.locator(".progress-text").inner_text()
    page.click('button[data-key="s"]')
    # a skip is no answer: the next item is still the second one answered
    assert "Item 2 of 3" in page.locator(".progress-text").inner_text()
    context.close()
    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.goto(f"{live_server}/c/{share}?workerId=mt2&assignmentId=a2")
    narrow.wait_for_selector("#rater .sentence")
    assert_accessible(narrow)
    narrow.screenshot(path=str(OUTPUT / f"rating-360px-{BACKEND}.png"), full_page=True)
    assert narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def test_researcher_creates_a_campaign_and_manages_it(live_server, browser, engine) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from app.annotation.access import admit
    from app.annotation.assign import next_item, submit_rating
    from app.core.db import session_scope
    from app.core.models import Role, Triple, User

    OUTPUT.mkdir(exist_ok=True)
    make_staff("ada", "correct horse", role="admin")
    with session_scope(write=True) as session:
        session.add_all(
            Triple(
                head=f"PersonX plants tree {i}",
                relation=relation,
                tail=f"to water it {i}",
                norm_hash=uuid.uuid4().hex,
                source=source,
            )
            for i in range(12)
            for relation, source in (("xWant", "atomic2020"), ("xNeed", "atomic10x"))
        )
    page = signed_in_page(browser, live_server, "/campaigns/new", width=1200)

    page.fill("input[name=name]", "Tree planting pilot")
    page.check("input[name=purpose][value=calibration]")
    page.fill("input[name=sample_size]", "10")
    page.check("input[name=relations][value=xWant]")
    page.check("input[name=relations][value=xNeed]")
    page.fill("input[name=ratings_per_item]", "2")
    page.fill("input[name=quota_per_annotator]", "8")
    page.fill("input[name=completion_code]", "TREES1")
    page.fill("textarea[name=guidelines]", "## How to rate\nIs it **plausible**?\n\n- yes\n- no")
    # htmx previews the Markdown while it is typed.
    page.wait_for_selector("#guidelines-preview strong", timeout=10_000)
    # The plan follows the form: 10 of the 24 triples, 2 ratings each, 8 per annotator.
    page.wait_for_function(
        r"/Annotators \(places\)\s+3 at 8/.test(document.querySelector('#plan-facts')?.innerText)"
    )
    facts = page.locator("#plan-facts").inner_text()
    assert "24" in facts and "20" in facts  # matched, ratings needed
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"campaign-new-{BACKEND}.png"), full_page=True)
    page.click("form.campaign-form .form-actions button.primary")
    page.wait_for_url(re.compile(rf"{re.escape(live_server)}/campaigns/\d+$"))
    campaign_id = int(page.url.rsplit("/", 1)[1])
    share = page.input_value("#share-url")
    assert share.startswith(f"{live_server}/c/")
    assert "10 items" in page.locator("#campaign-head").inner_text()
    assert "How to rate" in page.locator(".guidelines-html").inner_text()

    # Some ratings, so the progress bar and the annotator table have something to show.
    with session_scope(write=True) as session:
        workers = [
            User(role=Role.annotator, platform="prolific", external_id=f"PID{i:03d}")
            for i in range(3)
        ]
        session.add_all(workers)
        session.flush()
        worker_ids = [w.id for w in workers]
    for n, worker in enumerate(worker_ids):
        for k in range(3 + n):
            with session_scope(write=True) as session:
                admit(session, campaign_id, worker, "link")  # entered by its link
                item = next_item(session, campaign_id, worker)
                assert item is not None
                submit_rating(
                    session,
                    campaign_id,
                    worker,
                    item.item_id,
                    [2, 1, -1][(k + n) % 3],
                    f"b-{worker}-{k}",
                    3.0 + k,
                )
    page.reload()
    assert "12 / 20 ratings" in page.locator("#campaign-head").inner_text()
    assert page.locator("table.annotator-table tbody tr").count() == 3

    # The copy button: the clipboard where allowed, else the text is selected for Ctrl+C.
    page.click("button[data-copy=share-url]")
    page.wait_for_function(
        "['Copied', 'Press Ctrl+C'].includes(document.querySelector('[data-copy=share-url]')"
        ".textContent)",
        timeout=5_000,
    )

    # Pause and resume swap the header in place (htmx), no page load.
    page.evaluate("window.__same_page = true")
    page.click("#campaign-head button:has-text('Pause')")
    page.wait_for_selector("#campaign-head .badge-paused")
    page.click("#campaign-head button:has-text('Resume')")
    page.wait_for_selector("#campaign-head .badge-open")
    assert page.evaluate("window.__same_page") is True
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"campaign-detail-{BACKEND}.png"), full_page=True)

    page.goto(f"{live_server}/campaigns")
    row = page.locator(f"#campaign-{campaign_id}")
    assert "12 / 20 ratings · 60%" in row.inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"campaign-list-{BACKEND}.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(page.context.cookies())
    for path, name in (
        (f"/campaigns/{campaign_id}", "campaign-detail"),
        ("/campaigns", "campaign-list"),
        ("/campaigns/new", "campaign-new"),
    ):
        narrow.goto(f"{live_server}{path}")
        assert_accessible(narrow)
        narrow.screenshot(path=str(OUTPUT / f"{name}-360px-{BACKEND}.png"), full_page=True)
        overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a 360px screen"
