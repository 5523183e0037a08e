"""Crowd platforms: Prolific's and MTurk's ids are kept and downloaded, MTurk's preview and
hand-back work, and annotators meet pages (not JSON) when something is wrong."""

from __future__ import annotations

import csv
import io
import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.annotation.campaigns import CampaignSpec, create_campaign, set_campaign_state
from app.core.db import session_scope
from app.core.models import Campaign, User
from tests.conftest import add_triples, login, make_staff

HTML = {"accept": "text/html,application/xhtml+xml"}


def _campaign(n: int = 2, **spec) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    add_triples(n)
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session,
            CampaignSpec(name="crowd", ratings_per_item=1, completion_code="C0DE42", **spec),
        )
        return campaign.id, campaign.share_token


def _rate_all(client: TestClient, campaign_id: int) -> dict:  # type: ignore[type-arg]
    body = client.get(f"/api/annotate/{campaign_id}/next").json()
    while body.get("item"):
        body = client.post(
            f"/api/annotate/{campaign_id}/submit",
            json={
                "item_id": body["item"]["item_id"],
                "answer": 2,
                "submission_id": uuid.uuid4().hex,
            },
        ).json()
    return body


def test_prolific_and_mturk_ids_are_in_the_ratings_download(app, staff_client) -> None:  # type: ignore[no-untyped-def]
    campaign_id, share = _campaign(4, quota_per_annotator=2)
    with TestClient(app) as prolific, TestClient(app) as mturk:
        prolific.get(f"/c/{share}?PROLIFIC_PID=p1&STUDY_ID=study9&SESSION_ID=sess7")
        assert _rate_all(prolific, campaign_id)["done"] is True
        mturk.get(
            f"/c/{share}?workerId=W9&assignmentId=A1&hitId=H1&turkSubmitTo=https://www.mturk.com"
        )
        assert _rate_all(mturk, campaign_id)["done"] is True
    download = staff_client.get(f"/campaigns/{campaign_id}/ratings.csv").text
    rows = list(csv.DictReader(io.StringIO(download)))
    ids = {
        (r["external_id"], r["study_id"], r["session_id"], r["assignment_id"], r["hit_id"])
        for r in rows
    }
    assert len(rows) == 4
    assert ids == {("p1", "study9", "sess7", "", ""), ("W9", "", "", "A1", "H1")}


def test_mturk_preview_is_read_only_and_the_end_posts_back(app) -> None:  # type: ignore[no-untyped-def]
    campaign_id, share = _campaign(2, guidelines="Rate **plausibility**.")
    with TestClient(app) as worker:
        users_before = _users()
        preview = worker.get(
            f"/c/{share}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1", headers=HTML
        )
        assert preview.status_code == 200
        assert (
            'id="mturk-preview"' in preview.text and "<strong>plausibility</strong>" in preview.text
        )
        assert "PersonX does thing" in preview.text and "disabled" in preview.text
        assert _users() == users_before  # nobody was made, nothing leased
        worker.get(
            f"/c/{share}?workerId=W1&assignmentId=A77&hitId=H1"
            "&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
        )
        _rate_all(worker, campaign_id)
        done = worker.get(f"/annotate/{campaign_id}", headers=HTML).text
        form = re.search(
            r'<form method="post" action="([^"]+)" id="mturk-submit">(.*?)</form>', done, re.S
        )
        assert form is not None, done
        assert form.group(1) == "https://workersandbox.mturk.com/mturk/externalSubmit"
        assert 'name="assignmentId" value="A77"' in form.group(2)
        assert 'id="copy-code"' in done and "C0DE42" in done
    with TestClient(app) as forger:
        # a turkSubmitTo that is not MTurk's gives no form to post anywhere
        forger.get(
            f"/c/{share}?workerId=W2&assignmentId=A78&turkSubmitTo=https%3A%2F%2Fevil.example"
        )
        page = forger.get(f"/annotate/{campaign_id}", headers=HTML).text
        assert "evil.example" not in page and 'id="mturk-submit"' not in page


def _users() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


def test_annotators_get_pages_and_api_clients_json(app) -> None:  # type: ignore[no-untyped-def]
    campaign_id, share = _campaign(1)
    with TestClient(app) as browser:
        unknown = browser.get("/c/no-such-link", headers=HTML)
        assert unknown.status_code == 404 and "Study not found" in unknown.text
        assert browser.get("/c/no-such-link").json() == {"detail": "this study link is not open"}
        anonymous = browser.get(f"/annotate/{campaign_id}", headers=HTML)
        assert anonymous.status_code == 401 and "Please open your study link" in anonymous.text
        api = browser.get(f"/api/annotate/{campaign_id}/next", headers=HTML)
        assert api.status_code == 401 and api.json()["detail"]
        browser.get(f"/c/{share}?PROLIFIC_PID=p5")
        with session_scope(write=True) as session:
            set_campaign_state(session, campaign_id, "paused")
        paused = browser.get(f"/annotate/{campaign_id}", headers=HTML).text
        assert "This study is paused" in paused
        with session_scope(write=True) as session:
            set_campaign_state(session, campaign_id, "closed")
            assert session.get(Campaign, campaign_id).state.value == "closed"
        closed = browser.get(f"/annotate/{campaign_id}", headers=HTML).text
        assert "This study has ended" in closed
        gone = browser.get(f"/c/{share}?PROLIFIC_PID=p5", headers=HTML)
        assert gone.status_code == 404 and "Study not found" in gone.text


def test_staff_who_mistype_an_address_read_page_not_found_not_the_study_text(app) -> None:  # type: ignore[no-untyped-def]
    """ "Study not found ... contact the researchers" is for crowdworkers; a researcher following
    an old link to a deleted campaign is told the page is gone and where to start again."""
    make_staff()
    with TestClient(app) as browser:
        login(browser)
        for path in ("/campaigns/987654", "/no-such-page"):
            page = browser.get(path, headers=HTML)
            assert page.status_code == 404, path
            assert "Page not found" in page.text and "Study not found" not in page.text, path
            assert '<a href="/">Go to the start page</a>' in page.text, path
        assert browser.get("/campaigns/987654").json()["detail"]  # API clients: JSON as before
        study = browser.get("/c/no-such-link", headers=HTML)
        assert "Study not found" in study.text and "start page" not in study.text
