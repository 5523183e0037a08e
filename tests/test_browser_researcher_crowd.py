# ruff: noqa: F811 - the browser fixtures come from tests.test_browser
"""#16 in a real browser: the corpus browser and gold picking, a campaign's items, the rating
page at 360x740 (guidelines, keys, skips), annotator error pages, MTurk preview and hand-back,
the copy button, and exclusion refreshing the campaign page. Screens go to test-output/."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.annotation.campaigns import CampaignSpec, create_campaign, set_campaign_state
from app.core.db import session_scope
from app.core.models import Rating, RatingOrigin, Role, User
from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT, add_triples, make_staff
from tests.test_browser import browser, live_server  # noqa: F401 - fixtures

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


GUIDELINES = "\n\n".join(
    f"**Rule {n}.** Judge whether the inference is plausible for most people in most "
    "situations; do not look it up."
    for n in range(1, 9)
)


def _log_in(page, base: str, username: str = "ada") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct horse")
    page.click("form button[type=submit], form button")
    page.wait_for_url(f"{base}/")


def test_researcher_browses_filters_pages_and_picks_gold(live_server, browser, engine) -> None:  # type: ignore[no-untyped-def]
    OUTPUT.mkdir(exist_ok=True)
    ids = add_triples(60, head="PersonX paints fence {i}", source="gpt3")
    ids += add_triples(5, head="PersonX bakes bread {i}", relation="xNeed", source="human")
    with session_scope(write=True) as session:
        session.add(
            Rating(
                triple_id=ids[0],
                answer=2,
                origin=RatingOrigin.imported,
                submission_id=uuid.uuid4().hex,
            )
        )
        campaign_id = create_campaign(
            session, CampaignSpec(name="fences", ratings_per_item=2, sample_size=10, seed=1)
        ).id
    make_staff("ada", "correct horse", role="researcher")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, live_server)
    page.click("nav >> text=Browse")
    page.wait_for_selector("#browse-table")
    assert page.locator("#browse-table tbody tr").count() == 50
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"browse-{BACKEND}.png"), full_page=True)
    page.click("#next-page")
    page.wait_for_selector("#browse-table")
    assert page.locator("#browse-table tbody tr").count() == 15
    page.select_option("select[name=source]", "human")
    page.click("#browse-filters button")
    assert page.locator("#browse-table tbody tr").count() == 5
    page.goto(f"{live_server}/corpus/browse?label=accepted")
    assert page.locator("#browse-table tbody tr").count() == 1
    assert "accepted" in page.locator(f"#triple-{ids[0]} .people").inner_text()
    page.select_option(f"#triple-{ids[0]} select.gold-pick", f"{ids[0]} 2")
    page.click("text=Use the chosen gold items in a new campaign")
    page.wait_for_url("**/campaigns/new?**")
    assert page.locator("textarea[name=gold_items]").input_value() == f"{ids[0]} 2"
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"browse-gold-to-form-{BACKEND}.png"))
    page.goto(f"{live_server}/campaigns/{campaign_id}")
    page.click("#items-link")
    page.wait_for_selector("#items-table")
    assert page.locator("#items-table tbody tr").count() == 10
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"campaign-items-{BACKEND}.png"), full_page=True)


def _in_view(page, selector: str) -> bool:  # type: ignore[no-untyped-def]
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 740


def test_rating_page_at_360_guidelines_keys_and_skips(live_server, browser, engine) -> None:  # type: ignore[no-untyped-def]
    OUTPUT.mkdir(exist_ok=True)
    add_triples(6, head="PersonX waters plant {i}", tail="to help it grow {i}", relation="xIntent")
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session,
            CampaignSpec(
                name="narrow",
                ratings_per_item=1,
                quota_per_annotator=3,
                guidelines=GUIDELINES,
                completion_code="PAID-77",
            ),
        )
        campaign_id, share = campaign.id, campaign.share_token
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{live_server}/c/{share}?PROLIFIC_PID=narrow1&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("#rater .sentence")
    assert page.locator("#guidelines").get_attribute("open") is not None  # first item: open
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"rate-360-first-{BACKEND}.png"))
    assert _in_view(page, "#rater .sentence") and _in_view(page, 'button[data-key="5"]')
    page.keyboard.press("1")
    page.wait_for_function("document.querySelector('.progress-text').innerText.includes('Item 2')")
    page.wait_for_function("!document.getElementById('guidelines').open")  # folded after
    page.keyboard.press("s")  # a skip: still item 2, the quota is 3 answers
    page.wait_for_function("document.querySelectorAll('.sentence .tail').length === 1")
    page.wait_for_timeout(300)
    assert "Item 2 of 3" in page.locator(".progress-text").inner_text()
    assert _in_view(page, "#rater .sentence") and _in_view(page, 'button[data-key="s"]')
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"rate-360-folded-{BACKEND}.png"))
    page.keyboard.press("u")  # change the previous answer: only the keys that work there
    page.wait_for_selector("#keep-and-continue")
    keys = page.locator("#keys").inner_text()
    assert "keep it and continue" in keys and "skip" not in keys
    assert page.locator('[data-key="s"]').count() == 0
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"rate-360-change-{BACKEND}.png"))
    page.keyboard.press("c")  # keep it and continue
    page.wait_for_selector(".progress-text")
    assert "Item 2 of 3" in page.locator(".progress-text").inner_text()
    page.reload()  # folded stays folded (remembered), not reopened
    page.wait_for_selector("#rater .sentence")
    page.click("#guidelines summary")  # the reader opens them: that is remembered too
    page.reload()
    page.wait_for_selector("#rater .sentence")
    assert page.locator("#guidelines").get_attribute("open") is not None
    page.keyboard.press("2")
    page.wait_for_function("document.querySelector('.progress-text').innerText.includes('Item 3')")
    page.keyboard.press("3")
    page.wait_for_selector("#completion-code")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page.click("#copy-code")
    page.wait_for_selector("#copy-done:not([hidden])")
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"rate-360-done-{BACKEND}.png"))
    with session_scope() as session:
        worker = session.scalars(select(User).where(User.external_id == "narrow1")).one()
        answers = session.scalars(select(Rating.answer).where(Rating.annotator_id == worker.id))
        assert len(list(answers)) == 3  # three answers, and the skip on top
    context.close()
    # paused, then closed: pages that say so
    with session_scope(write=True) as session:
        set_campaign_state(session, campaign_id, "paused")
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.goto(f"{live_server}/c/{share}?PROLIFIC_PID=narrow2")
    assert "This study is paused" in page.inner_text("main")
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"annotator-paused-{BACKEND}.png"))
    page.goto(f"{live_server}/c/not-a-link")
    assert "Study not found" in page.inner_text("main")
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"annotator-unknown-{BACKEND}.png"))


def test_mturk_preview_and_hand_back(live_server, browser, engine) -> None:  # type: ignore[no-untyped-def]
    OUTPUT.mkdir(exist_ok=True)
    add_triples(2, head="PersonX rides bike {i}", tail="to get there {i}")
    with session_scope(write=True) as session:
        share = create_campaign(
            session,
            CampaignSpec(
                name="turk",
                ratings_per_item=1,
                guidelines="Be **quick**.",
                completion_code="TURK-1",
            ),
        ).share_token
    context = browser.new_context(viewport={"width": 900, "height": 800})
    posted: list[str] = []

    def mturk(route):  # type: ignore[no-untyped-def]
        posted.append(route.request.post_data or "")
        route.fulfill(status=200, body="<p>MTurk got it</p>", content_type="text/html")

    context.route("https://workersandbox.mturk.com/**", mturk)
    page = context.new_page()
    page.goto(f"{live_server}/c/{share}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H9")
    assert "This is a preview" in page.inner_text("main")
    assert page.locator("#mturk-preview button.answer[disabled]").count() == 5
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"mturk-preview-{BACKEND}.png"))
    page.goto(
        f"{live_server}/c/{share}?workerId=WT1&assignmentId=ASG1&hitId=H9"
        "&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    )
    for _ in range(2):
        page.wait_for_selector("#rater .sentence")
        page.keyboard.press("1")
        page.wait_for_timeout(400)
    page.wait_for_selector("#mturk-submit")
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"mturk-done-{BACKEND}.png"))
    page.click("#mturk-submit button")
    page.wait_for_selector("text=MTurk got it")
    assert "assignmentId=ASG1" in posted[0]
    context.close()


def test_excluding_an_annotator_refreshes_flags_and_agreement(live_server, browser, engine) -> None:  # type: ignore[no-untyped-def]
    from app.annotation.access import admit
    from app.annotation.assign import next_item, submit_rating

    OUTPUT.mkdir(exist_ok=True)
    add_triples(4, head="PersonX sings song {i}")
    with session_scope(write=True) as session:
        campaign_id = create_campaign(session, CampaignSpec(name="agree", ratings_per_item=3)).id
        people = [
            User(role=Role.annotator, platform="prolific", external_id=f"a{i}") for i in range(3)
        ]
        session.add_all(people)
        session.flush()
        people_ids = [p.id for p in people]
        for person in people_ids:
            admit(session, campaign_id, person, "link")
    # two agree on everything, the third disagrees on everything
    for person, answers in zip(
        people_ids, ([2, 2, -2, -2], [2, 2, -2, -2], [-2, -2, 2, 2]), strict=True
    ):
        for answer in answers:
            with session_scope(write=True) as session:
                served = next_item(session, campaign_id, person)
                order = served.item_id
            with session_scope(write=True) as session:
                submit_rating(session, campaign_id, person, order, answer, uuid.uuid4().hex, 5.0)
    make_staff("root", "correct horse", role="admin")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, live_server, "root")
    page.goto(f"{live_server}/campaigns/{campaign_id}")
    before = page.locator("#annotators .stats").inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"#exclude-{people_ids[2]}")
    # the badge and the alpha change without a reload: the table was fetched again
    page.wait_for_function(
        "(before) => { const s = document.querySelector('#annotators .stats');"
        " const badge = document.querySelector('#annotators .badge-closed');"
        " return s && badge && s.innerText !== before; }",
        arg=before,
    )
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exclude-refresh-{BACKEND}.png"), full_page=True)


def test_critic_page_pr_click_previews_that_threshold_and_thin_numbers_say_so(
    live_server, browser, engine
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_export import build_corpus

    OUTPUT.mkdir(exist_ok=True)
    corpus = build_corpus(heads=40, calibration=2)
    with session_scope(write=True) as session:
        from app.core.models import CriticVersion

        version = session.get(CriticVersion, corpus.version_id)
        version.metrics = {**version.metrics, "roc_auc": 0.5}  # no better than chance
    make_staff("ada", "correct horse", role="researcher")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _log_in(page, live_server)
    page.goto(f"{live_server}/critic?version={corpus.version_id}")
    assert page.locator(".badge-weak").count() >= 1
    page.locator("svg.pr-plot circle.pr-pick").nth(4).click()  # threshold 0.1 on PR_CURVE
    page.wait_for_function("document.querySelector('#preview-threshold')?.innerText === '0.1000'")
    assert page.locator("select[name=rule]").input_value() == "score"
    assert "too few calibration labels (n = " in page.locator("#critic-preview").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"critic-pr-click-{BACKEND}.png"), full_page=True)


def test_retrain_now_updates_the_head_of_the_critic_page(  # type: ignore[no-untyped-def]
    live_server, browser, engine, monkeypatch
) -> None:
    """Clicking "Retrain now" says so in the message and in the page's head ("Version N is
    training"), without a reload: the head is refreshed with the versions table.

    The chain is held back from the queue, as when every worker is busy: the session's worker
    (running if an earlier test started it) would otherwise train, or fail, this small corpus
    before the head is fetched, and the head would rightly no longer say "is training". The
    chain through a real worker is tests/test_e2e_jobs.py's."""
    from app.critic import queueing
    from tests.test_export import build_corpus

    held: list[object] = []
    monkeypatch.setattr(queueing, "dispatch_training", held.append)
    OUTPUT.mkdir(exist_ok=True)
    corpus = build_corpus(heads=40)
    make_staff("ada", "correct horse", role="admin")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, live_server)
    page.goto(f"{live_server}/critic")
    status = page.locator("#critic-status")
    assert f"Version {corpus.version_id} is active" in status.inner_text()
    assert "is training" not in status.inner_text()
    page.click("#retrain")
    page.wait_for_function("document.querySelector('#critic-message')?.innerText.trim()")
    message = page.locator("#critic-message").inner_text()
    assert "Started training version" in message, message
    assert len(held) == 1
    page.wait_for_function(
        "document.querySelector('#critic-status')?.innerText.includes('is training')"
    )
    training = int(message.split("Started training version ", 1)[1].split(":", 1)[0])
    assert f"Version {training} is training." in status.inner_text()
    assert page.locator(f"#version-{training}").count() == 1
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"critic-retrain-{BACKEND}.png"), full_page=True)
