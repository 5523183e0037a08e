"""The hardening's pages in a real browser: a full study, too many new participants from one
address, a throttled login. Screenshots go to test-output/."""

from __future__ import annotations

import pytest

from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.db import session_scope
from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT, add_triples, make_staff
from tests.test_browser import browser, live_server  # noqa: F401 - fixtures

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


def test_full_study_crowd_limit_and_login_throttle_pages(
    live_server,  # noqa: F811
    browser,  # noqa: F811
    settings,
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    OUTPUT.mkdir(exist_ok=True)
    add_triples(1)
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session, CampaignSpec(name="Tiny study", ratings_per_item=1, completion_code="C-1")
        )
        share, campaign_id = campaign.share_token, campaign.id
    first = browser.new_page(viewport={"width": 900, "height": 700})
    first.goto(f"{live_server}/c/{share}?PROLIFIC_PID=first")
    first.keyboard.press("1")  # answers the only item from the keyboard
    first.wait_for_selector("#completion-code")
    assert first.inner_text("#completion-code") == "C-1"

    late = browser.new_context().new_page()
    late.set_viewport_size({"width": 900, "height": 700})
    late.goto(f"{live_server}/c/{share}?PROLIFIC_PID=late")
    assert late.url.endswith(f"/annotate/{campaign_id}")
    assert "This study is full" in late.inner_text("#study-full")
    assert "C-1" not in late.content()
    assert_accessible(late)
    late.screenshot(path=str(OUTPUT / f"study-full-{BACKEND}.png"), full_page=True)

    monkeypatch.setattr(settings, "crowd_accounts_per_address", 2)
    crowd = browser.new_context().new_page()
    crowd.goto(f"{live_server}/c/{share}?PROLIFIC_PID=third")
    assert "Too many new participants" in crowd.inner_text("main")
    assert_accessible(crowd)
    crowd.screenshot(path=str(OUTPUT / f"too-many-participants-{BACKEND}.png"), full_page=True)

    monkeypatch.setattr(settings, "login_failures_per_account", 1)
    make_staff("ada", "correct horse")
    staff = browser.new_context().new_page()
    staff.goto(f"{live_server}/login")
    for password in ("wrong", "correct horse"):
        staff.fill("input[name=username]", "ada")
        staff.fill("input[name=password]", password)
        staff.click("button.primary")
        staff.wait_for_load_state()
    assert "Too many failed logins" in staff.inner_text(".alert")
    assert_accessible(staff)
    staff.screenshot(path=str(OUTPUT / f"login-throttled-{BACKEND}.png"))
