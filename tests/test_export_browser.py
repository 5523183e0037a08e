"""The exports page in a real browser (Debian's chromium via Playwright): preview, a refused
value, an export with its live progress bar, the list, the export's page with its card, and
the page at 360 px. Screenshots go to test-output/."""

from __future__ import annotations

import pytest

from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT, make_staff
from tests.test_browser import browser, live_server, signed_in_page  # noqa: F401 (fixtures)
from tests.test_export import build_corpus

# What a person sees and does in the browser is the same on any database: run once, in
# the SQLite pass (the routes under these pages are tested over HTTP on both backends).
pytestmark = pytest.mark.one_backend


def test_researcher_previews_exports_and_downloads(live_server, browser, celery_worker) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    OUTPUT.mkdir(exist_ok=True)
    build_corpus(heads=120, calibration=80)
    make_staff("ada", "correct horse")
    page = signed_in_page(browser, live_server, "/exports", width=1200)
    assert page.locator("nav a[href='/exports']").count() == 1

    # Choosing "target recall" fills in the paper's 0.8; Preview shows what would be kept.
    page.check("input[name=rule][value=target_recall]")
    assert page.input_value("input[name=value]") == "0.8"
    page.click("button:has-text('Preview')")
    plan = page.locator("#export-plan")
    plan.wait_for()
    assert "triples kept" in plan.inner_text()
    assert "est. precision" in plan.inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exports-preview-{BACKEND}.png"), full_page=True)

    # A value outside [0, 1] is refused with its field named, and nothing starts.
    page.fill("input[name=value]", "1.5")
    page.click("button:has-text('Preview')")
    page.locator("#export-errors").wait_for()
    assert "outside [0, 1]" in page.locator("#export-errors").inner_text()
    assert page.get_attribute("input[name=value]", "aria-invalid") == "true"
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exports-error-{BACKEND}.png"), full_page=True)

    # Export: the progress bar runs in place, then the list shows the finished export.
    page.fill("input[name=value]", "0.8")
    page.click("form#export-form button.primary")
    page.locator(".export-started .job").wait_for()
    page.wait_for_selector(".export-started .badge-succeeded", timeout=60_000)
    row = page.locator("#export-list tr[id^=export-]").first
    row.locator(".badge-succeeded").wait_for(timeout=10_000)
    assert ".tar.gz" in row.inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exports-done-{BACKEND}.png"), full_page=True)

    # The archive downloads from the list.
    with page.expect_download() as download:
        row.locator("a[download]").click()
    assert download.value.suggested_filename.endswith(".tar.gz")

    # The export's own page: numbers, parameters, files and the card.
    row.locator("td.name a").click()
    page.wait_for_selector(".dataset-card")
    text = page.locator("main").inner_text()
    assert "Counts per relation" in text and "skd export --version" in text
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"export-detail-{BACKEND}.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(page.context.cookies())
    for url in ("/exports", page.url.replace(live_server, "")):
        narrow.goto(f"{live_server}{url}")
        overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        name = "exports" if url == "/exports" else "export-detail"
        assert_accessible(narrow)
        narrow.screenshot(path=str(OUTPUT / f"{name}-360px-{BACKEND}.png"), full_page=True)
        assert overflow <= 0, f"{url} is {overflow}px wider than a 360px screen"

    # Delete, after the browser's confirmation: back on the list, which says what was freed.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#export-page button.danger")
    page.wait_for_url(f"{live_server}/exports")
    notice = page.locator("p.notice-ok")
    notice.wait_for()
    assert "deleted" in notice.inner_text() and "freed" in notice.inner_text()
    assert page.locator("#export-list tr[id^=export-]").count() == 0
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exports-deleted-{BACKEND}.png"), full_page=True)
