"""API tokens and your own account (/account) through the app: a script's token acts as its
owner with no login form and no CSRF token; a bad token is refused and never falls back to the
cookie; read-only, revoked, expired tokens and deactivated or demoted owners; the page shows a
new token once; changing your own password; the `skd users tokens` commands."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.core.db import session_scope
from app.core.models import ApiToken, Campaign, Job, User, utcnow
from tests.conftest import ROOT, add_triples, csrf_of, login, make_staff


def _token(client, name: str = "script", **body: object) -> dict:  # type: ignore[no-untyped-def]
    """Make a token through the API as the signed-in ``client``; its JSON (with the token)."""
    answer = client.post("/api/account/tokens", json={"name": name, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _anonymous(client):  # type: ignore[no-untyped-def]
    """The same app with no cookie and no CSRF header: what a script has."""
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    return client


def test_a_token_acts_as_its_owner_with_no_login_and_no_csrf(staff_client) -> None:  # type: ignore[no-untyped-def]
    made = _token(staff_client, "nightly import")
    assert made["token"].startswith("skd_") and made["token"].startswith(made["prefix"])
    assert made["scope"] == "write" and made["state"] == "active"
    assert made["expires_at"] is not None  # 90 days unless said otherwise
    with session_scope() as session:  # only a digest is kept
        row = session.get(ApiToken, made["id"])
        assert row is not None and made["token"] not in (row.token_hash, row.prefix)
    client = _anonymous(staff_client)
    assert client.get("/api/account").status_code == 401  # nothing without it
    me = client.get("/api/account", headers=_bearer(made["token"])).json()
    assert me["username"] == "ada" and me["signed_in_with"] == "token"
    assert me["token"]["name"] == "nightly import" and me["token"]["last_used_at"] is not None

    add_triples(6)
    # A state-changing call with no CSRF token: a browser session would get 403 here.
    answer = client.post(
        "/api/campaigns", json={"name": "from a script"}, headers=_bearer(made["token"])
    )
    assert answer.status_code == 201, answer.text
    login(client)
    refused = client.post("/api/campaigns", json={"name": "cookie, no csrf"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    with session_scope() as session:
        names = set(session.scalars(select(Campaign.name)))
    assert names == {"from a script"}


def test_a_bad_token_is_refused_and_never_falls_back_to_the_cookie(staff_client) -> None:  # type: ignore[no-untyped-def]
    # staff_client is signed in (cookie + CSRF header): a wrong token still gets 401.
    for header in ("Bearer skd_not-a-real-token", "Bearer ", "bearer nonsense"):
        answer = staff_client.get("/api/account", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "invalid API token" in answer.json()["detail"]
    assert staff_client.get("/api/account").json()["signed_in_with"] == "session"
    # Basic auth is not ours: the session answers as usual.
    assert staff_client.get("/api/account", headers={"Authorization": "Basic eDp5"}).is_success


def test_a_read_only_token_reads_but_changes_nothing(staff_client) -> None:  # type: ignore[no-untyped-def]
    made = _token(staff_client, "dashboard", scope="read")
    client = _anonymous(staff_client)
    assert client.get("/api/jobs", headers=_bearer(made["token"])).status_code == 200
    add_triples(3)
    answer = client.post("/api/campaigns", json={"name": "x"}, headers=_bearer(made["token"]))
    assert answer.status_code == 403 and "read-only" in answer.json()["detail"]
    more = client.post("/api/account/tokens", json={"name": "y"}, headers=_bearer(made["token"]))
    assert more.status_code == 403
    with session_scope() as session:
        assert session.scalar(select(Campaign.id)) is None
        assert session.scalars(select(ApiToken.name)).all() == ["dashboard"]


def test_revoked_and_expired_tokens_and_deactivated_owners_get_401(staff_client) -> None:  # type: ignore[no-untyped-def]
    first, second, third = (_token(staff_client, name) for name in ("a", "b", "c"))
    client = _anonymous(staff_client)
    # A token may revoke itself (a script's last call); its next request is refused.
    gone = client.delete(f"/api/account/tokens/{first['id']}", headers=_bearer(first["token"]))
    assert gone.status_code == 200 and gone.json()["state"] == "revoked"
    assert client.get("/api/account", headers=_bearer(first["token"])).status_code == 401
    with session_scope(write=True) as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == second["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert client.get("/api/account", headers=_bearer(second["token"])).status_code == 401
    assert client.get("/api/account", headers=_bearer(third["token"])).status_code == 200
    with session_scope(write=True) as session:
        session.execute(update(User).where(User.username == "ada").values(is_active=False))
    assert client.get("/api/account", headers=_bearer(third["token"])).status_code == 401
    listed = {t["name"]: t["state"] for t in _listing(third["token"], active_owner=True)}
    assert listed == {"a": "revoked", "b": "expired", "c": "active"}


def _listing(token: str, active_owner: bool) -> list[dict]:  # type: ignore[type-arg]
    """The owner's token list (reactivating the owner first when asked)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    if active_owner:
        with session_scope(write=True) as session:
            session.execute(update(User).where(User.username == "ada").values(is_active=True))
    with TestClient(create_app()) as client:
        answer = client.get("/api/account/tokens", headers=_bearer(token))
        assert answer.status_code == 200, answer.text
        return list(answer.json())


def test_a_token_has_its_owners_current_role(client) -> None:  # type: ignore[no-untyped-def]
    make_staff("root", "a long password", "admin")
    client.headers["X-CSRF-Token"] = login(client, "root", "a long password")
    made = _token(client, "admin script")
    client = _anonymous(client)
    # An admin-only API: the token may (the answer is about training, not about access).
    before = client.post("/api/critic/train", json={}, headers=_bearer(made["token"]))
    assert before.status_code not in (401, 403), before.text
    with session_scope(write=True) as session:
        session.execute(update(User).where(User.username == "root").values(role="researcher"))
    after = client.post("/api/critic/train", json={}, headers=_bearer(made["token"]))
    assert after.status_code == 403 and after.json()["detail"] == "admins only"


def test_names_are_unique_among_live_tokens_and_input_is_checked(staff_client) -> None:  # type: ignore[no-untyped-def]
    made = _token(staff_client, "ci")
    again = staff_client.post("/api/account/tokens", json={"name": "ci"})
    assert again.status_code == 422 and "already have a live token named 'ci'" in again.text
    staff_client.delete(f"/api/account/tokens/{made['id']}")
    assert _token(staff_client, "ci")["id"] != made["id"]  # free again once revoked
    never = _token(staff_client, "forever", expires_in_days=None)
    assert never["expires_at"] is None
    for body in (
        {"name": "  "},
        {"name": "x", "scope": "admin"},
        {"name": "x", "expires_in_days": 0},
    ):
        assert staff_client.post("/api/account/tokens", json=body).status_code == 422, body


def test_nobody_sees_or_revokes_another_persons_tokens(client) -> None:  # type: ignore[no-untyped-def]
    make_staff("ada")
    make_staff("bob", "another password")
    client.headers["X-CSRF-Token"] = login(client)
    adas = _token(client, "ada's")
    _anonymous(client)
    client.headers["X-CSRF-Token"] = login(client, "bob", "another password")
    assert client.get("/api/account/tokens").json() == []
    assert client.delete(f"/api/account/tokens/{adas['id']}").status_code == 404
    page = client.post(
        f"/account/tokens/{adas['id']}/revoke", data={"csrf_token": client.headers["X-CSRF-Token"]}
    )
    assert page.status_code == 404
    assert client.get("/api/account", headers=_bearer(adas["token"])).json()["username"] == "ada"


def test_a_job_started_with_a_token_says_which_token_started_it(staff_client) -> None:  # type: ignore[no-untyped-def]
    made = _token(staff_client, "uploader")
    client = _anonymous(staff_client)
    answer = client.post(
        "/api/corpus/import",
        files=[
            ("files", ("t.tsv", b"PersonX eats\txWant\tto sleep\n", "text/tab-separated-values"))
        ],
        headers=_bearer(made["token"]),
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    view = client.get(f"/api/jobs/{job_id}", headers=_bearer(made["token"])).json()
    assert view["started_by"] == "ada (api token 'uploader')"
    with session_scope() as session:
        job = session.get(Job, job_id)
        owner = session.scalar(select(User.id).where(User.username == "ada"))
        assert job is not None and job.created_by_id == owner


def test_the_account_page_shows_a_new_token_once_and_revokes(staff_client) -> None:  # type: ignore[no-untyped-def]
    assert staff_client.get("/account").status_code == 200
    token = staff_client.headers["X-CSRF-Token"]
    made = staff_client.post(
        "/account/tokens",
        data={"csrf_token": token, "name": "notebook", "scope": "read", "expires": "30"},
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    plain = re.search(r'id="token-value" value="(skd_[^"]+)"', made.text)
    assert plain, made.text
    assert "read-only" in made.text and "will not be shown again" in made.text
    later = staff_client.get("/account").text
    assert plain.group(1) not in later and plain.group(1)[:10] + "…" in later
    # The form posted again (a reload) makes no second key.
    twice = staff_client.post(
        "/account/tokens", data={"csrf_token": token, "name": "notebook", "expires": "30"}
    )
    assert twice.status_code == 422 and "already have a live token" in twice.text
    with session_scope() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.scope == "read" and row.expires_at is not None
        assert timedelta(days=29) < row.expires_at - row.created_at <= timedelta(days=30)
    gone = staff_client.post(
        f"/account/tokens/{row.id}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/account#tokens"
    page = staff_client.get("/account").text
    assert "Revoked the token &#39;notebook&#39;" in page and ">revoked</span>" in page
    # Forms without the CSRF token are refused, like every other form.
    assert (
        staff_client.post(
            "/account/tokens", data={"name": "x"}, headers={"X-CSRF-Token": ""}
        ).status_code
        == 403
    )
    assert _anonymous(staff_client).get("/account", follow_redirects=False).status_code == 303


def test_changing_your_own_password(client) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    make_staff("ada")
    token = login(client)
    with TestClient(client.app) as other:  # another browser, signed in as ada too
        login(other)
        assert other.get("/api/account").status_code == 200

        def change(current: str, new: str, repeat: str | None = None):  # type: ignore[no-untyped-def]
            return client.post(
                "/account/password",
                data={
                    "csrf_token": token,
                    "current_password": current,
                    "new_password": new,
                    "repeat_password": new if repeat is None else repeat,
                },
                follow_redirects=False,
            )

        wrong = change("not it", "a brand new one")
        assert wrong.status_code == 422 and "current password is wrong" in wrong.text
        differ = change("correct horse", "a brand new one", "a brand new two")
        assert differ.status_code == 422 and "differ" in differ.text
        short = change("correct horse", "short")
        assert short.status_code == 422 and "at least 8" in short.text
        done = change("correct horse", "a brand new one")
        assert done.status_code == 303 and done.headers["location"] == "/account#password"
        assert client.get("/api/account").status_code == 200  # this browser stays in
        assert other.get("/api/account").status_code == 401  # the other one is out
    client.cookies.clear()
    fresh = csrf_of(client)
    old = client.post(
        "/login",
        data={"username": "ada", "password": "correct horse", "csrf_token": fresh},
        follow_redirects=False,
    )
    assert old.status_code == 401
    assert login(client, "ada", "a brand new one")


def test_wrong_current_passwords_are_throttled_like_logins(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.core.config import get_settings

    make_staff("ada")
    token = login(client)
    monkeypatch.setattr(get_settings(), "login_failures_per_account", 2)
    data = {"csrf_token": token, "new_password": "whatever123", "repeat_password": "whatever123"}
    for _ in range(2):
        answer = client.post("/account/password", data={**data, "current_password": "guess"})
        assert answer.status_code == 422
    blocked = client.post("/account/password", data={**data, "current_password": "correct horse"})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


def test_the_openapi_schema_names_the_token(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["API token"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert {"API token": []} in schema["paths"]["/api/jobs"]["get"]["security"]


def _skd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv/bin/skd"), "users", "tokens", *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tokens_commands(client) -> None:  # type: ignore[no-untyped-def]
    make_staff("ada")
    made = _skd("create", "ada", "--name", "from the shell", "--read-only", "--expires-days", "0")
    assert made.returncode == 0, made.stderr
    plain = made.stdout.strip()  # the token alone on stdout
    assert plain.startswith("skd_") and "read-only, expires never" in made.stderr
    assert client.get("/api/account", headers=_bearer(plain)).json()["username"] == "ada"
    listed = _skd("list", "--user", "ada")
    assert listed.returncode == 0 and "from the shell" in listed.stdout
    assert plain not in listed.stdout and plain[:10] in listed.stdout
    token_id = re.search(r"│ (\d+)\s+│ ada", listed.stdout)
    assert token_id, listed.stdout
    revoked = _skd("revoke", token_id.group(1))
    assert revoked.returncode == 0 and "401" in revoked.stdout
    assert client.get("/api/account", headers=_bearer(plain)).status_code == 401
    assert _skd("create", "nobody", "--name", "x").returncode == 2
    unknown = _skd("revoke", "999")
    assert unknown.returncode == 2 and "no API token 999" in unknown.stderr


def test_annotators_hold_no_tokens(engine) -> None:  # type: ignore[no-untyped-def]
    from app.core.api_tokens import create_token
    from app.core.models import Role

    with session_scope(write=True) as session:
        person = User(role=Role.annotator, platform="prolific", external_id="W1")
        session.add(person)
        session.flush()
        with pytest.raises(ValueError, match="only active staff"):
            create_token(session, person, "x")


def test_an_admin_revokes_every_token_of_a_person(client) -> None:  # type: ignore[no-untyped-def]
    make_staff("ada")
    make_staff("root", "a long password", "admin")
    client.headers["X-CSRF-Token"] = login(client)
    adas = [_token(client, name)["token"] for name in ("one", "two")]
    ada_id = client.get("/api/account").json()["id"]
    # A researcher may not.
    refused = client.post(
        f"/admin/users/{ada_id}/tokens/revoke", data={"csrf_token": client.headers["X-CSRF-Token"]}
    )
    assert refused.status_code == 403
    _anonymous(client)
    token = login(client, "root", "a long password")
    page = client.get("/admin/users").text
    row = page[page.index(f'id="user-{ada_id}"') :]
    assert "2 live" in row[: row.index("</tr>")]
    done = client.post(
        f"/admin/users/{ada_id}/tokens/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert "Revoked 2 API tokens of" in client.get("/admin/users").text
    for plain in adas:
        assert client.get("/api/account", headers=_bearer(plain)).status_code == 401
    missing = client.post("/admin/users/9999/tokens/revoke", data={"csrf_token": token})
    assert missing.status_code == 404


def test_scripts_and_the_page_are_told_before_a_token_expires(staff_client) -> None:  # type: ignore[no-untyped-def]
    soon = _token(staff_client, "nightly", expires_in_days=3)
    never = _token(staff_client, "forever", expires_in_days=None)
    later = _token(staff_client, "quarterly")
    page = staff_client.get("/account").text
    assert "The token “nightly” expires on" in page
    assert "“quarterly” expires" not in page and "“forever” expires" not in page
    client = _anonymous(staff_client)
    answer = client.get("/api/jobs", headers=_bearer(soon["token"]))
    assert answer.headers["x-skd-token-expires"] == soon["expires_at"][:19] + "Z"
    assert (
        "x-skd-token-expires"
        not in client.get("/api/jobs", headers=_bearer(never["token"])).headers
    )
    assert client.get("/api/jobs", headers=_bearer(later["token"])).headers["x-skd-token-expires"]
