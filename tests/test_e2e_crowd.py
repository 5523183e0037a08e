"""A crowdworker's door through the real server: an MTurk HIT shows the study link inside an
iframe on MTurk's own site. Against `skd serve` (its own process, settings from the
environment, proxy headers on) rather than an in-process server, because whether the page may
be framed and whether the session cookie survives as a third-party cookie are decided by the
server's headers and settings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT
from tests.live_stack import live_stack
from tests.test_browser import browser  # noqa: F401 (fixture)

MTURK = "https://workersandbox.mturk.com"


def test_mturk_hit_in_mturks_iframe_rates_and_hands_back(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The study link loads in MTurk's iframe (framing allowed for MTurk's origins only), the
    worker's session survives from item to item as a third-party cookie, the hand-back posts
    the assignment to MTurk, and the ratings download names the assignment and HIT."""
    OUTPUT.mkdir(exist_ok=True)
    corpus = tmp_path / "corpus.tsv"
    lines = (f"PersonX paints wall {i}\txWant\tto be done {i}\n" for i in range(2))
    corpus.write_text("".join(lines))
    with live_stack(tmp_path, worker=False) as stack:
        assert stack.skd("import", str(corpus)).returncode == 0
        staff = stack.login()
        made = staff.post(
            "/api/campaigns",
            json={"name": "framed", "ratings_per_item": 1, "completion_code": "TURK-2"},
        )
        assert made.status_code == 201, made.text
        campaign = made.json()
        opened = staff.post(f"/api/campaigns/{campaign['id']}/state", json={"state": "open"})
        assert opened.status_code == 200, opened.text
        share = campaign["share_url"].split("/c/", 1)[1]
        app_url = stack.url.replace("127.0.0.1", "localhost")  # a secure context over http
        link = (
            f"{app_url}/c/{share}?workerId=WF1&assignmentId=ASGF&hitId=HF"
            "&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
        )
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        posted: list[str] = []

        def mturk(route):  # type: ignore[no-untyped-def]
            if "externalSubmit" in route.request.url:
                posted.append(route.request.post_data or "")
                route.fulfill(status=200, body="<p>MTurk got it</p>", content_type="text/html")
            else:  # MTurk's HIT page: the study link in an iframe
                frame = f'<iframe id="hit" src="{link}" width="900" height="700"></iframe>'
                body = f"<h1>HIT</h1>{frame}"
                route.fulfill(status=200, body=body, content_type="text/html")

        context.route(f"{MTURK}/**", mturk)
        # The app is on localhost here, which Chromium walls off from public sites (Local
        # Network Access) unless allowed; a real deployment is public, as MTurk requires.
        context.grant_permissions(["local-network-access"], origin=MTURK)
        page = context.new_page()
        page.goto(f"{MTURK}/mturk/preview?groupId=G", wait_until="commit")
        frame = page.frame_locator("#hit")
        for _ in range(2):
            frame.locator("#rater .sentence").wait_for()
            frame.locator("#rater button.answer").first.click()
            page.wait_for_timeout(400)
        frame.locator("#mturk-submit").wait_for()
        # The page around the frame stands in for MTurk's; the audit is of ours, inside it.
        hit = page.query_selector("#hit")
        assert hit is not None
        assert_accessible(hit.content_frame())
        page.screenshot(path=str(OUTPUT / f"mturk-framed-{BACKEND}.png"))
        cookies = [c for c in context.cookies() if c["name"] == "skd_session"]
        assert cookies and all(c["sameSite"] == "None" and c["secure"] for c in cookies), cookies
        frame.locator("#mturk-submit button").click()
        frame.locator("text=MTurk got it").wait_for()
        assert "assignmentId=ASGF" in posted[0]
        # A staff page refuses to be framed, even by MTurk.
        answer = context.new_page().goto(f"{app_url}/login")
        assert answer is not None
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
        context.close()
        ratings = staff.get(f"/campaigns/{campaign['id']}/ratings.csv")
        rows = list(csv.DictReader(io.StringIO(ratings.text)))
        assert [(r["external_id"], r["assignment_id"], r["hit_id"]) for r in rows] == [
            ("WF1", "ASGF", "HF")
        ] * 2
