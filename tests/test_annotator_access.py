"""Annotators stay in their campaign (issue #12, points 1-3).

An annotator reaches only the campaigns they entered by link or were invited to; no one gets a
completion code without the work; one client cannot hold a campaign's capacity; and a worker id
alone neither shows nor changes anyone's earlier answers.
"""

from __future__ import annotations

import re
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.annotation.access import admit
from app.annotation.assign import next_item
from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.db import session_scope
from app.core.models import Assignment, AssignmentState, Role, User
from tests.conftest import add_triples


def make_campaign(name: str, **kwargs) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        campaign = create_campaign(session, CampaignSpec(name=name, **kwargs))
        return campaign.id, campaign.share_token


def enter(client, share: str, pid: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(f"/c/{share}?PROLIFIC_PID={pid}", follow_redirects=False)
    assert response.status_code == 303, response.text


def test_annotator_reaches_only_the_campaign_they_entered(client) -> None:  # type: ignore[no-untyped-def]
    add_triples(6)
    mine, my_share = make_campaign("Mine", ratings_per_item=1, sample_size=3)
    other, _ = make_campaign("Other", ratings_per_item=1, sample_size=3, completion_code="SECRET")
    enter(client, my_share, "worker-1")
    assert client.get(f"/api/annotate/{mine}/next").json()["item"] is not None
    # Every annotate door answers 404 for a campaign they did not enter, as for a missing one.
    assert client.get(f"/api/annotate/{other}/next").status_code == 404
    assert client.get(f"/annotate/{other}").status_code == 404
    assert client.get(f"/annotate/{other}/back").status_code == 404
    body = {"item_id": 1, "answer": 2, "submission_id": "s1"}
    assert client.post(f"/api/annotate/{other}/submit", json=body).status_code == 404
    assert client.post(f"/api/annotate/{other}/skip", json={"item_id": 1}).status_code == 404
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/annotate/{mine}").text)
    assert csrf is not None
    answer = client.post(
        f"/annotate/{other}/answer",
        data={"item_id": 1, "answer": 2, "submission_id": "s2", "csrf_token": csrf.group(1)},
    )
    assert answer.status_code == 404
    assert "SECRET" not in client.get(f"/api/annotate/{other}/next").text
    # The home page lists their own campaign only.
    home = client.get("/").text
    assert "Mine" in home and "Other" not in home


def test_an_invitation_admits_to_the_named_campaigns_only(client) -> None:  # type: ignore[no-untyped-def]
    from app.core.accounts import create_invited_annotator

    add_triples(4)
    invited_to, _ = make_campaign("Invited", ratings_per_item=1, sample_size=2)
    elsewhere, _ = make_campaign("Elsewhere", ratings_per_item=1, sample_size=2)
    with session_scope(write=True) as session:
        user, token = create_invited_annotator(session, "ann")
        admit(session, invited_to, user.id, "invite")
    assert client.get(f"/i/{token}", follow_redirects=False).status_code == 303
    assert client.get(f"/api/annotate/{invited_to}/next").json()["item"] is not None
    assert client.get(f"/api/annotate/{elsewhere}/next").status_code == 404


def test_a_full_campaign_gives_no_completion_code(app) -> None:  # type: ignore[no-untyped-def]
    add_triples(1)
    campaign, share = make_campaign("Tiny", ratings_per_item=1, completion_code="CODE-77")
    with TestClient(app) as first, TestClient(app) as second:
        enter(first, share, "early")
        item = first.get(f"/api/annotate/{campaign}/next").json()["item"]
        # While the only slot is leased to someone else: come back later, no code.
        enter(second, share, "late")
        waiting = second.get(f"/api/annotate/{campaign}/next").json()
        assert waiting["done"] is False and waiting["waiting"] is True
        assert "CODE-77" not in str(waiting)
        reply = first.post(
            f"/api/annotate/{campaign}/submit",
            json={"item_id": item["item_id"], "answer": 2, "submission_id": "e1"},
        ).json()
        assert reply["done"] is True and reply["completion_code"] == "CODE-77"
        # Full on arrival: said so, and no code (page and API).
        full = second.get(f"/api/annotate/{campaign}/next").json()
        assert full["done"] is False and full["full"] is True
        assert "completion_code" not in full
        page = second.get(f"/annotate/{campaign}").text
        assert "This study is full" in page and "CODE-77" not in page


def test_at_most_one_live_lease_per_annotator_per_campaign(engine) -> None:  # type: ignore[no-untyped-def]
    add_triples(20)
    campaign, _ = make_campaign("Leases", ratings_per_item=1)
    with session_scope(write=True) as session:
        worker = User(role=Role.annotator, platform="prolific", external_id="greedy")
        session.add(worker)
        session.flush()
        worker_id = worker.id
        admit(session, campaign, worker_id, "link")
    served: list[int] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            with session_scope(write=True) as session:
                item = next_item(session, campaign, worker_id)
                if item is not None:
                    served.append(item.item_id)
        except IntegrityError:
            pass  # the twin request took the one lease; the client asks again
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    with session_scope() as session:
        live = session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.annotator_id == worker_id, Assignment.state == AssignmentState.leased)
        )
    assert live == 1 and len(set(served)) == 1
    # The schema itself refuses a second live lease.
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        held = session.scalars(select(Assignment).where(Assignment.annotator_id == worker_id)).one()
        session.add(
            Assignment(
                item_id=held.item_id + 1 if held.item_id > 1 else 2,
                annotator_id=worker_id,
                campaign_id=campaign,
                leased_until=held.leased_until,
            )
        )
        session.flush()


def test_new_crowd_accounts_from_one_address_are_rate_limited(
    client, settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    add_triples(10)
    campaign, share = make_campaign("Crowd", ratings_per_item=2, completion_code="C")
    monkeypatch.setattr(settings, "crowd_accounts_per_address", 3)
    for n in range(3):
        enter(client, share, f"made-up-{n}")
    refused = client.get(f"/c/{share}?PROLIFIC_PID=made-up-3", follow_redirects=False)
    assert refused.status_code == 429
    assert "Too many new participants" in refused.text and "try the study link again" in (
        refused.text.lower()
    )
    assert int(refused.headers["Retry-After"]) > 0
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 3
    enter(client, share, "made-up-1")  # a known worker id still gets in
    monkeypatch.setattr(settings, "crowd_accounts_per_address", 0)  # off: trusted set-ups
    enter(client, share, "made-up-3")


def test_earlier_answers_only_from_the_browser_session_that_gave_them(app) -> None:  # type: ignore[no-untyped-def]
    add_triples(4)
    campaign, share = make_campaign("Private", ratings_per_item=1)
    with TestClient(app) as owner, TestClient(app) as impostor:
        enter(owner, share, "PID-1")
        first = owner.get(f"/api/annotate/{campaign}/next").json()["item"]
        owner.post(
            f"/api/annotate/{campaign}/submit",
            json={"item_id": first["item_id"], "answer": 2, "submission_id": "o1", "next": False},
        )
        # The same worker id from another browser: the work continues...
        enter(impostor, share, "PID-1")
        following = impostor.get(f"/api/annotate/{campaign}/next").json()["item"]
        assert following is not None and following["item_id"] != first["item_id"]
        # ...but the earlier answer can be neither seen...
        back = impostor.get(f"/annotate/{campaign}/back").text
        assert first["tail"] not in back
        assert f'href="/annotate/{campaign}/back"' not in impostor.get(f"/annotate/{campaign}").text
        # ...nor changed.
        change = impostor.post(
            f"/api/annotate/{campaign}/submit",
            json={"item_id": first["item_id"], "answer": -2, "submission_id": "i1"},
        )
        assert change.status_code == 403 and "browser" in change.json()["detail"]
        # The browser that gave it still can.
        assert f'href="/annotate/{campaign}/back"' in owner.get(f"/annotate/{campaign}").text
        assert first["tail"] in owner.get(f"/annotate/{campaign}/back").text
        changed = owner.post(
            f"/api/annotate/{campaign}/submit",
            json={"item_id": first["item_id"], "answer": -1, "submission_id": "o2"},
        )
        assert changed.status_code == 200 and changed.json()["saved"]["changed"] is True


def test_logging_out_ends_every_copy_of_an_annotators_session(app) -> None:  # type: ignore[no-untyped-def]
    add_triples(4)
    campaign, share = make_campaign("Out", ratings_per_item=1)
    with TestClient(app) as worker, TestClient(app) as copy:
        enter(worker, share, "leaving")
        copy.cookies.set("skd_session", worker.cookies.get("skd_session"))
        assert copy.get(f"/api/annotate/{campaign}/next").status_code == 200
        page = worker.get(f"/annotate/{campaign}").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        worker.post("/logout", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
        assert copy.get(f"/api/annotate/{campaign}/next").status_code == 401
        body = {"item_id": 1, "answer": 2, "submission_id": "late"}
        assert copy.post(f"/api/annotate/{campaign}/submit", json=body).status_code == 401
        # The study link still brings the worker back, with a new session.
        enter(worker, share, "leaving")
        assert worker.get(f"/api/annotate/{campaign}/next").json()["item"] is not None


def test_skd_users_invite_admits_to_the_named_campaign(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    add_triples(4)
    named, _ = make_campaign("Named", ratings_per_item=1, sample_size=2)
    other, _ = make_campaign("Other", ratings_per_item=1, sample_size=2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "users",
            "invite",
            "--name",
            "ann",
            "--campaign",
            str(named),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip().splitlines()[-1]
    token = link.rsplit("/i/", 1)[1]
    assert client.get(f"/i/{token}", follow_redirects=False).status_code == 303
    assert client.get(f"/api/annotate/{named}/next").json()["item"] is not None
    assert client.get(f"/api/annotate/{other}/next").status_code == 404
    missing = subprocess.run(
        [sys.executable, "-m", "app.cli", "users", "invite", "--campaign", "999999"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no campaign 999999" in missing.stderr
