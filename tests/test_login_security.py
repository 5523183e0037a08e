"""Logins resist guessing and sessions end when they should (issue #12, point 4)."""

from __future__ import annotations

import http.cookiejar
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.conftest import ROOT, csrf_of, login, make_staff


def try_login(client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )


def test_failed_logins_are_throttled_per_account(client, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "login_failures_per_account", 3)
    make_staff("ada", "correct horse")
    for _ in range(3):
        assert try_login(client, "ada", "wrong guess").status_code == 401
    refused = try_login(client, "ada", "correct horse")  # even the right one, for a while
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.text and "Try again in" in refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= settings.login_window_seconds
    # Another account from the same address is not locked by it.
    make_staff("bob", "battery staple")
    assert try_login(client, "bob", "battery staple").status_code == 303


def test_failed_logins_are_throttled_per_address(client, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "login_failures_per_address", 4)
    make_staff("ada", "correct horse")
    for n in range(4):
        assert try_login(client, f"nobody-{n}", "guess").status_code == 401
    assert try_login(client, "ada", "correct horse").status_code == 429


def test_a_successful_login_clears_the_account_failures(client, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "login_failures_per_account", 3)
    make_staff("ada", "correct horse")
    for _ in range(2):
        try_login(client, "ada", "wrong")
    assert try_login(client, "ada", "correct horse").status_code == 303
    for _ in range(2):
        assert try_login(client, "ada", "wrong").status_code == 401


def test_logout_revokes_a_copied_session_cookie(app, engine) -> None:  # type: ignore[no-untyped-def]
    make_staff("ada", "correct horse")
    with TestClient(app) as mine, TestClient(app) as thief:
        token = login(mine)
        thief.cookies.set("skd_session", mine.cookies.get("skd_session"))
        assert thief.get("/campaigns", follow_redirects=False).status_code == 200
        mine.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        stolen = thief.get("/campaigns", follow_redirects=False)
        assert stolen.status_code == 303 and stolen.headers["location"].startswith("/login")
        login(mine)  # logging in again works, with a new session
        assert mine.get("/campaigns", follow_redirects=False).status_code == 200


def test_a_password_change_revokes_existing_sessions(client, engine) -> None:  # type: ignore[no-untyped-def]
    from app.core.accounts import set_password
    from app.core.db import session_scope
    from app.core.models import User

    user_id = make_staff("ada", "correct horse")
    login(client)
    assert client.get("/campaigns", follow_redirects=False).status_code == 200
    with session_scope(write=True) as session:
        set_password(session, session.get(User, user_id), "a new long password")
    assert client.get("/campaigns", follow_redirects=False).status_code == 303
    login(client, password="a new long password")
    assert client.get("/campaigns", follow_redirects=False).status_code == 200


def test_a_short_secret_key_is_refused_outside_the_demo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app

    short = Settings(data_dir=tmp_path, secret_key="x" * 31, demo=False, _env_file=None)
    with pytest.raises(RuntimeError, match="at least 32"):
        create_app(short)
    assert Settings(data_dir=tmp_path, secret_key="x" * 32, _env_file=None).session_secret()
    assert Settings(data_dir=tmp_path, secret_key="short", demo=True, _env_file=None)


def test_pages_send_security_headers(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/login", "/healthz", "/static/app.css", "/critic", "/people"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    # The crowd pages may be framed by MTurk (it runs a HIT in an iframe), by nobody else.
    for path in ("/api/annotate/1/next", "/annotate/1", "/c/nope"):
        headers = client.get(path).headers
        assert "x-frame-options" not in headers
        assert headers["content-security-policy"] == (
            "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com"
        )
        assert headers["x-content-type-options"] == "nosniff"


def _session_cookie(response) -> str:  # type: ignore[no-untyped-def]
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith("skd_session=")]
    assert len(cookies) == 1, response.headers
    return cookies[0].lower()


def test_a_crowd_session_begun_in_a_frame_gets_a_third_party_cookie(settings, engine) -> None:  # type: ignore[no-untyped-def]
    """MTurk frames the study link: that session's cookie is SameSite=None; Secure;
    Partitioned on every page (else the browser drops it inside the frame), and only where
    the browser keeps a Secure cookie. Other sessions, and staff, stay SameSite=Lax."""
    from fastapi.testclient import TestClient

    from app.annotation.campaigns import CampaignSpec, create_campaign
    from app.core.db import session_scope
    from app.main import create_app
    from tests.conftest import add_triples

    add_triples(3)
    with session_scope(write=True) as session:
        share = create_campaign(session, CampaignSpec(name="t", ratings_per_item=1)).share_token
    app = create_app(settings)
    turk = "workerId=W{n}&assignmentId=A{n}&hitId=H&turkSubmitTo=https%3A%2F%2Fwww.mturk.com"
    with TestClient(app, base_url="https://skd.example.org") as framed:
        entered = framed.get(f"/c/{share}?{turk.format(n=1)}", follow_redirects=False)
        assert entered.status_code == 303
        cookie = _session_cookie(entered)
        assert "samesite=none" in cookie and "; secure" in cookie and "partitioned" in cookie
        page = framed.get(entered.headers["location"])
        assert page.status_code == 200 and "partitioned" in _session_cookie(page)
    # localhost over http: a secure context for browsers, so the same cookie.
    with TestClient(app, base_url="http://localhost:8000") as framed:
        entered = framed.get(f"/c/{share}?{turk.format(n=5)}", follow_redirects=False)
        assert "partitioned" in _session_cookie(entered)
    # Opened in a frame by the browser's own word (Sec-Fetch-Dest), on https:
    with TestClient(app, base_url="https://skd.example.org") as framed:
        entered = framed.get(
            f"/c/{share}?PROLIFIC_PID=P1", headers={"Sec-Fetch-Dest": "iframe"},
            follow_redirects=False,
        )  # fmt: skip
        assert "samesite=none" in _session_cookie(entered)
    # A top-level visit (Prolific's link in a tab): Lax, as every other page.
    with TestClient(app, base_url="http://localhost") as top:
        entered = top.get(f"/c/{share}?PROLIFIC_PID=P2", follow_redirects=False)
        cookie = _session_cookie(entered)
        assert "samesite=lax" in cookie and "partitioned" not in cookie
    # Over plain http on a public name the browser would drop a Secure cookie: Lax instead.
    with TestClient(app, base_url="http://skd.example.org") as plain:
        entered = plain.get(f"/c/{share}?{turk.format(n=3)}", follow_redirects=False)
        assert "samesite=lax" in _session_cookie(entered)
    # Framing switched off: no framing anywhere, Lax everywhere.
    closed = create_app(settings.model_copy(update={"crowd_frame_ancestors": ""}))
    with TestClient(closed, base_url="http://localhost") as client:
        entered = client.get(f"/c/{share}?{turk.format(n=4)}", follow_redirects=False)
        assert "samesite=lax" in _session_cookie(entered)
        assert entered.headers["x-frame-options"] == "DENY"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_real_server_throttles_logins_over_http(
    tmp_path: Path,
    test_env: dict[str, str],
    settings,  # type: ignore[no-untyped-def]
    engine,  # type: ignore[no-untyped-def]  # the schema exists
) -> None:
    """`skd serve` as a subprocess, over loopback HTTP: 429 with the wait after the limit,
    and the security headers on the page."""
    make_staff("ada", "correct horse")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env.update(test_env)
    env.update(
        {
            "SKD_DATA_DIR": str(tmp_path / "data"),
            "SKD_DATABASE_URL": settings.database,  # this session's database, either backend
            "PYTHONPATH": str(ROOT),
            "SKD_LOGIN_FAILURES_PER_ACCOUNT": "2",
        }
    )
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz").close()
                    break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.3)
            opener = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            )
            page = opener.open(f"{base}/login")
            assert page.headers["X-Frame-Options"] == "DENY"
            token = page.read().decode().split('name="csrf_token" value="')[1].split('"')[0]

            def attempt(password: str) -> urllib.error.HTTPError:
                form = {"username": "ada", "password": password, "csrf_token": token}
                with pytest.raises(urllib.error.HTTPError) as failure:
                    opener.open(f"{base}/login", urllib.parse.urlencode(form).encode())
                return failure.value

            assert attempt("wrong").code == 401
            assert attempt("wrong again").code == 401
            refused = attempt("correct horse")
            assert refused.code == 429 and int(refused.headers["Retry-After"]) > 0
            assert "Try again in" in refused.read().decode()
        finally:
            process.terminate()
            process.wait(timeout=30)
