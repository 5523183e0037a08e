"""The people page (/admin/users) through the app: staff, annotators, invitations; who may do
what (admins only, CSRF on every form); deactivated accounts can neither sign in nor rate."""

from __future__ import annotations

import html
import os
import re
import subprocess

from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import Campaign, CampaignState, Rating, User
from tests.conftest import ROOT, csrf_of, login, make_staff
from tests.test_quality import make_annotators, make_campaign, make_triples, rate

PAGE = "/admin/users"


def _id(username: str) -> int:
    with session_scope() as session:
        return session.scalars(select(User.id).where(User.username == username)).one()


def _post(client, url: str, **data: str):  # type: ignore[no-untyped-def]
    """A form post as the page's forms send it: the CSRF token in a hidden field."""
    token = client.headers.get("X-CSRF-Token") or csrf_of(client)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def _fresh_login(client, username: str, password: str) -> int:  # type: ignore[no-untyped-def]
    client.cookies.clear()
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    return response.status_code


def _invite_links(page: str) -> dict[int, str]:
    return {
        int(user_id): html.unescape(link)
        for user_id, link in re.findall(r'id="link-(\d+)" value="([^"]+)"', page)
    }


def test_only_admins_reach_the_page_and_its_actions(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.get(PAGE, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    make_staff("ada", "correct horse", "researcher")
    make_staff("root", "a long password", "admin")
    token = login(client, "ada", "correct horse")
    assert client.get(PAGE).status_code == 403
    jobs_page = client.get("/jobs").text  # researchers have the jobs page, not the people page
    assert 'href="/jobs"' in jobs_page and 'href="/admin/users"' not in jobs_page
    root = _id("root")
    for url, data in (
        (PAGE, {"username": "eve", "password": "long enough", "role": "admin"}),
        (f"{PAGE}/{root}/password", {"password": "taken over!"}),
        (f"{PAGE}/{root}/role", {"role": "researcher"}),
        (f"{PAGE}/{root}/deactivate", {}),
        (f"{PAGE}/{root}/activate", {}),
        ("/admin/invitations", {"name": "x"}),
        (f"/admin/invitations/{root}/link", {}),
        (f"/admin/invitations/{root}/revoke", {}),
    ):
        answer = client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)
        assert answer.status_code == 403, (url, answer.status_code)
    # Nothing changed: no "eve", root still an active admin with the same password.
    with session_scope() as session:
        assert session.scalar(select(User).where(User.username == "eve")) is None
        admin = session.get(User, root)
        assert admin.is_active and admin.role.value == "admin"
    assert _fresh_login(client, "root", "a long password") == 303


def test_every_form_needs_the_csrf_token(admin_client) -> None:  # type: ignore[no-untyped-def]
    make_staff("ada", "correct horse", "researcher")
    ada = _id("ada")
    del admin_client.headers["X-CSRF-Token"]
    for url, data in (
        (PAGE, {"username": "eve", "password": "long enough", "role": "admin"}),
        (f"{PAGE}/{ada}/password", {"password": "new password"}),
        (f"{PAGE}/{ada}/role", {"role": "admin"}),
        (f"{PAGE}/{ada}/deactivate", {}),
        ("/admin/invitations", {"name": "x"}),
    ):
        answer = admin_client.post(url, data=data, follow_redirects=False)
        assert answer.status_code == 403 and "CSRF" in answer.text, url
    page = admin_client.get(PAGE).text
    # Every form on the page carries the token.
    assert page.count("<form") == page.count('name="csrf_token"')


def test_staff_create_reset_role_deactivate(admin_client, client) -> None:  # type: ignore[no-untyped-def]
    answer = _post(admin_client, PAGE, username="ben", password="ben's password", role="researcher")
    assert answer.status_code == 303 and answer.headers["location"] == f"{PAGE}#staff"
    page = admin_client.get(PAGE).text
    assert "Created researcher &#39;ben&#39;." in page and ">ben<" in page
    # The same name again, or a short password: the page again, saying why.
    again = _post(admin_client, PAGE, username="ben", password="another one", role="admin")
    assert again.status_code == 422 and "username &#39;ben&#39; is taken" in again.text
    short = _post(admin_client, PAGE, username="cy", password="short", role="researcher")
    assert short.status_code == 422 and "at least 8 characters" in short.text
    ben = _id("ben")
    # Reset the password: the new one works, the old one no longer does.
    assert _post(admin_client, f"{PAGE}/{ben}/password", password="new secret!").status_code == 303
    assert _post(admin_client, f"{PAGE}/{ben}/role", role="admin").status_code == 303
    with session_scope() as session:
        assert session.get(User, ben).role.value == "admin"
    assert _post(admin_client, f"{PAGE}/{ben}/deactivate").status_code == 303
    with session_scope() as session:
        person = session.get(User, ben)
        assert not person.is_active and person.deactivated_at is not None
    assert "ben is deactivated" in admin_client.get(PAGE).text
    # A deactivated account cannot sign in, with any password.
    other = client.__class__(client.app)
    assert _fresh_login(other, "ben", "new secret!") == 401
    assert _post(admin_client, f"{PAGE}/{ben}/activate").status_code == 303
    assert _fresh_login(other, "ben", "ben's password") == 401
    assert _fresh_login(other, "ben", "new secret!") == 303


def test_admins_cannot_lock_everyone_out(admin_client) -> None:  # type: ignore[no-untyped-def]
    root = _id("root")
    me = _post(admin_client, f"{PAGE}/{root}/deactivate")
    assert me.status_code == 422 and "cannot deactivate your own account" in me.text
    demote = _post(admin_client, f"{PAGE}/{root}/role", role="researcher")
    assert demote.status_code == 422 and "your own admin role" in demote.text
    make_staff("ann", "a long password", "admin")
    make_staff("ada", "correct horse", "researcher")
    ann = _id("ann")
    assert _post(admin_client, f"{PAGE}/{ann}/deactivate").status_code == 303
    unknown = _post(admin_client, f"{PAGE}/999999/deactivate")
    assert unknown.status_code == 404
    bad_role = _post(admin_client, f"{PAGE}/{_id('ada')}/role", role="owner")
    assert bad_role.status_code == 422 and "use researcher or admin" in bad_role.text


def test_deactivated_staff_session_ends(client) -> None:  # type: ignore[no-untyped-def]
    make_staff("root", "a long password", "admin")
    make_staff("ada", "correct horse", "researcher")
    login(client, "ada", "correct horse")
    assert client.get("/jobs").status_code == 200
    with session_scope(write=True) as session:
        from app.core.people import deactivate

        deactivate(session, _id("ada"))
    answer = client.get("/jobs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_annotators_listed_with_campaigns_ratings_flags_and_deactivated(admin_client) -> None:  # type: ignore[no-untyped-def]
    plain = make_triples(6)
    people = make_annotators("S", "P")
    campaign_id = make_campaign(ratings_per_item=2)
    with session_scope() as session:
        name = session.get(Campaign, campaign_id).name
    rate(campaign_id, people["S"], dict.fromkeys(plain, 1), [0.5, 0.8, 1.0, 1.1, 9.0, 12.0])
    rate(campaign_id, people["P"], dict.fromkeys(plain[:2], -1))
    page = admin_client.get(PAGE).text
    row = re.search(rf'<tr id="annotator-{people["S"]}".*?</tr>', page, re.S).group(0)
    assert "prolific" in row and "wS" in row
    assert f'href="/campaigns/{campaign_id}"' in row and name in row
    assert ">6<" in row  # ratings
    assert f"speeder in {name}" in row
    assert 'hx-post="/admin/annotators/' in row  # exclude from labels (kept)
    row_p = re.search(rf'<tr id="annotator-{people["P"]}".*?</tr>', page, re.S).group(0)
    assert ">2<" in row_p and "speeder" not in row_p
    # Deactivate S: listed as deactivated, ratings kept, can no longer get an item.
    assert _post(admin_client, f"{PAGE}/{people['S']}/deactivate").status_code == 303
    page = admin_client.get(PAGE).text
    row = re.search(rf'<tr id="annotator-{people["S"]}".*?</tr>', page, re.S).group(0)
    assert "deactivated" in row and "Reactivate" in row
    with session_scope() as session:
        kept = session.scalar(
            select(func.count()).select_from(Rating).where(Rating.annotator_id == people["S"])
        )
    assert kept == 6


def test_deactivated_annotator_cannot_rate_or_come_back(client) -> None:  # type: ignore[no-untyped-def]
    plain = make_triples(3)
    campaign_id = make_campaign(ratings_per_item=2)
    with session_scope(write=True) as session:
        campaign = session.get(Campaign, campaign_id)
        campaign.state = CampaignState.open
        share = campaign.share_token
    entered = client.get(f"/c/{share}?PROLIFIC_PID=w42", follow_redirects=False)
    assert entered.status_code == 303
    assert client.get(f"/api/annotate/{campaign_id}/next").status_code == 200
    with session_scope(write=True) as session:
        from app.core.people import deactivate, find_user

        deactivate(session, find_user(session, "prolific:w42").id)
    assert client.get(f"/api/annotate/{campaign_id}/next").status_code in (401, 403)
    again = client.get(f"/c/{share}?PROLIFIC_PID=w42", follow_redirects=False)
    assert again.status_code == 403 and "deactivated" in again.text
    assert len(plain) == 3


def test_invitations_create_copy_reissue_revoke(admin_client, client) -> None:  # type: ignore[no-untyped-def]
    answer = _post(admin_client, "/admin/invitations", name="Grace")
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/users#invitations"
    page = admin_client.get(PAGE).text
    assert "Invited Grace" in page
    links = _invite_links(page)
    assert len(links) == 1
    ((invite_id, link),) = links.items()
    assert link.startswith("http") and "/i/" in link
    assert f'data-copy="link-{invite_id}"' in page and "Copy link" in page
    # The list shows it with its name and state; it is shown again on every visit.
    row = re.search(rf'<tr id="invite-{invite_id}".*?</tr>', page, re.S).group(0)
    assert "Grace" in row and "pending" in row
    assert _invite_links(admin_client.get(PAGE).text) == {invite_id: link}
    # The link signs Grace in (another browser).
    path = "/i/" + link.split("/i/", 1)[1]
    grace = client.__class__(client.app)
    assert grace.get(path, follow_redirects=False).headers["location"] == "/"
    assert "used" in re.search(
        rf'<tr id="invite-{invite_id}".*?</tr>', admin_client.get(PAGE).text, re.S
    ).group(0)
    # A new link replaces it: the old one no longer works, the new one does.
    assert _post(admin_client, f"/admin/invitations/{invite_id}/link").status_code == 303
    new_link = _invite_links(admin_client.get(PAGE).text)[invite_id]
    assert new_link != link
    stranger = client.__class__(client.app)
    assert "invalid_invite" in stranger.get(path, follow_redirects=False).headers["location"]
    new_path = "/i/" + new_link.split("/i/", 1)[1]
    assert stranger.get(new_path, follow_redirects=False).headers["location"] == "/"
    # Revoke: no link works, the account is deactivated, the link is no longer shown.
    assert _post(admin_client, f"/admin/invitations/{invite_id}/revoke").status_code == 303
    page = admin_client.get(PAGE).text
    assert invite_id not in _invite_links(page)
    assert "revoked" in re.search(rf'<tr id="invite-{invite_id}".*?</tr>', page, re.S).group(0)
    late = client.__class__(client.app)
    assert "invalid_invite" in late.get(new_path, follow_redirects=False).headers["location"]
    assert stranger.get("/", follow_redirects=False).status_code == 303  # signed out
    # A revoked invitation cannot get a new link; a staff account is not an invitation.
    refused = _post(admin_client, f"/admin/invitations/{invite_id}/link")
    assert refused.status_code == 422 and "revoked" in refused.text
    not_invite = _post(admin_client, f"/admin/invitations/{_id('root')}/revoke")
    assert not_invite.status_code == 422 and "is not an invitation" in not_invite.text


def _skd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv/bin/skd"), *args],
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_users_list_invite_deactivate_revoke(engine, client) -> None:  # type: ignore[no-untyped-def]
    make_staff("root", "a long password", "admin")
    make_staff("ada", "correct horse", "researcher")
    plain = make_triples(2)
    workers = make_annotators("K")
    rate(make_campaign(ratings_per_item=1), workers["K"], dict.fromkeys(plain, 2))

    made = _skd("users", "invite", "--name", "Grace")
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert "/i/" in link
    listed = _skd("users", "invite", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "Grace" in listed.stdout and "pending" in listed.stdout
    assert link in listed.stdout  # the same link, shown again
    invite_id = _id_of_invite("Grace")

    everyone = _skd("users", "list")
    assert everyone.returncode == 0, everyone.stderr
    lines = {line.split()[1]: line for line in everyone.stdout.splitlines() if "│" in line}
    assert any("ada" in line and "researcher" in line for line in lines.values())
    worker = next(line for line in everyone.stdout.splitlines() if "wK" in line)
    assert "prolific" in worker and " 2 " in worker and "active" in worker
    only = _skd("users", "list", "--role", "annotator").stdout
    assert "wK" in only and " ada " not in only
    assert _skd("users", "list", "--role", "boss").returncode == 2

    off = _skd("users", "deactivate", "ada")
    assert off.returncode == 0 and "deactivated ada" in off.stdout, off.stderr
    assert _fresh_login(client, "ada", "correct horse") == 401
    assert "deactivated" in next(
        line for line in _skd("users", "list").stdout.splitlines() if " ada " in line
    )
    last = _skd("users", "deactivate", "root")
    assert last.returncode == 1 and "last active admin" in last.stderr
    unknown = _skd("users", "deactivate", "nobody")
    assert unknown.returncode == 1 and "no account 'nobody'" in unknown.stderr
    by_worker_id = _skd("users", "deactivate", "prolific:wK")
    assert by_worker_id.returncode == 0, by_worker_id.stderr
    with session_scope() as session:
        assert not session.get(User, workers["K"]).is_active
        assert (
            session.scalar(
                select(func.count()).select_from(Rating).where(Rating.annotator_id == workers["K"])
            )
            == 2
        )  # ratings stay
    assert _skd("users", "activate", "ada").returncode == 0
    assert _fresh_login(client, "ada", "correct horse") == 303

    revoked = _skd("users", "revoke", str(invite_id))
    assert revoked.returncode == 0 and "no longer works" in revoked.stdout, revoked.stderr
    path = "/i/" + link.split("/i/", 1)[1]
    answer = client.get(path, follow_redirects=False)
    assert "invalid_invite" in answer.headers["location"]
    listed = _skd("users", "invite", "--list").stdout
    assert "revoked" in listed and link not in listed
    assert _skd("users", "revoke", "999999").returncode == 1


def _id_of_invite(name: str) -> int:
    with session_scope() as session:
        return session.scalars(select(User.id).where(User.display_name == name)).one()


def test_invitation_admits_to_the_campaigns_ticked(admin_client) -> None:  # type: ignore[no-untyped-def]
    from app.annotation.access import admitted_campaign_ids

    make_triples(2)
    campaign_id = make_campaign(ratings_per_item=1)
    page = admin_client.get(PAGE).text
    assert f'name="campaign" value="{campaign_id}"' in page
    token = admin_client.headers["X-CSRF-Token"]
    answer = admin_client.post(
        "/admin/invitations",
        data={"csrf_token": token, "name": "Lin", "campaign": str(campaign_id)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    with session_scope() as session:
        lin = _id_of_invite("Lin")
        assert admitted_campaign_ids(session, lin) == [campaign_id]
    row = re.search(rf'<tr id="annotator-{lin}".*?</tr>', admin_client.get(PAGE).text, re.S)
    assert f'href="/campaigns/{campaign_id}"' in row.group(0)
    missing = admin_client.post(
        "/admin/invitations",
        data={"csrf_token": token, "name": "Max", "campaign": "999999"},
        follow_redirects=False,
    )
    assert missing.status_code == 422 and "no campaign 999999" in missing.text
    with session_scope() as session:
        assert session.scalar(select(User).where(User.display_name == "Max")) is None


def test_own_password_reset_keeps_this_browser_signed_in(admin_client, client) -> None:  # type: ignore[no-untyped-def]
    root = _id("root")
    other = client.__class__(client.app)
    assert _fresh_login(other, "root", "a long password") == 303
    assert (
        _post(admin_client, f"{PAGE}/{root}/password", password="a newer password").status_code
        == 303
    )
    assert admin_client.get(PAGE).status_code == 200  # still signed in here
    assert other.get(PAGE, follow_redirects=False).status_code == 303  # the other session ended
    assert _fresh_login(other, "root", "a newer password") == 303
