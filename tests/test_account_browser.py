"""Your account page in a real browser (chromium via Playwright): from the name in the top bar
to /account, make a read-only token, copy it (shown once), use it from a script, revoke it
after the confirmation, change the password; the page passes the accessibility audit and fits
a 360 px screen. Screenshots go to test-output/."""

from __future__ import annotations

import httpx
import pytest

from tests.accessibility import assert_accessible
from tests.conftest import OUTPUT, make_staff
from tests.test_browser import browser, live_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.one_backend


def test_tokens_and_password_on_the_account_page(live_server, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    OUTPUT.mkdir(exist_ok=True)
    make_staff("ada", "correct horse", "researcher")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = context.new_page()
    page.goto(f"{live_server}/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "correct horse")
    page.click("button.primary")
    page.wait_for_url(f"{live_server}/")

    page.click("a.account-link")
    page.wait_for_url(f"{live_server}/account")
    assert "No tokens yet." in page.inner_text("#tokens")
    assert_accessible(page)

    page.fill("input[name=name]", "notebook")
    page.select_option("select[name=scope]", "read")
    page.select_option("select[name=expires]", "30")
    page.click("button:has-text('Make a token')")
    page.wait_for_selector("#new-token")
    token = page.input_value("#token-value")
    assert token.startswith("skd_")
    assert "read-only" in page.inner_text("#new-token")
    page.click("#new-token button.copy-link")
    assert page.evaluate("navigator.clipboard.readText()") == token
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "account-new-token.png"), full_page=True)

    # The script's side: the copied token is all it needs.
    me = httpx.get(f"{live_server}/api/account", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "ada" and me.json()["token"]["name"] == "notebook"

    # Shown once: the page after a reload lists it by its prefix only.
    page.goto(f"{live_server}/account")
    row = page.locator("tr", has_text="notebook")
    assert token not in page.content() and token[:10] in row.inner_text()
    assert "active" in row.inner_text()

    dialogs: list[str] = []

    def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    row.locator("button:has-text('Revoke')").click()
    page.wait_for_selector("#tokens .notice-ok")
    assert dialogs and "notebook" in dialogs[0]
    assert "revoked" in page.locator("tr", has_text="notebook").inner_text()
    gone = httpx.get(f"{live_server}/api/account", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401

    page.fill("input[name=current_password]", "correct horse")
    page.fill("input[name=new_password]", "a new long password")
    page.fill("input[name=repeat_password]", "a new long password")
    page.click("button:has-text('Change password')")
    page.wait_for_selector("#password .notice-ok")
    assert "Password changed" in page.inner_text("#password")
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "account-page.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(context.cookies())
    narrow.goto(f"{live_server}/account")
    assert narrow.url.endswith("/account")  # still signed in after changing the password
    assert_accessible(narrow)
    narrow.screenshot(path=str(OUTPUT / "account-360px.png"), full_page=True)
    overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"/account is {overflow}px wider than a 360px screen"
