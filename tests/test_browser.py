"""End to end in a real browser (Debian's chromium driven by Playwright): log in, see the corpus,
upload a file through the form and watch its progress bar finish. Screenshots go to
test-output/."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import BACKEND, OUTPUT, make_staff

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

    upload = tmp_path / "handmade.tsv"
    upload.write_text(
        "".join(f"PersonX plants tree {i}\txWant\tto water it\n" for i in range(2000))
    )
    page.set_input_files("input[name=files]", str(upload))
    page.click("form.row-form button.primary")
    job = page.locator(".job").first
    job.wait_for()
    page.wait_for_selector(".job .badge-succeeded", timeout=60_000)
    assert "2,000 imported" in job.inner_text()
    assert page.url == f"{live_server}/"  # htmx swapped the fragment in, no page load

    # The counts refresh by themselves when the job ends, no reload needed.
    page.wait_for_function(
        "document.querySelector('.stat .num').textContent.trim() === '2,000'", timeout=10_000
    )
    assert "handmade" in page.locator("table.counts").nth(1).inner_text()
    assert page.locator("#jobs").inner_text().count("No jobs yet") == 0
    page.screenshot(path=str(OUTPUT / f"home-after-import-{BACKEND}.png"), full_page=True)

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.context.add_cookies(page.context.cookies())
    narrow.goto(f"{live_server}/")
    overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
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
    page.screenshot(path=str(OUTPUT / f"login-{BACKEND}.png"))
