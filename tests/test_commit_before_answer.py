"""An answer means the write is saved: a request's database session commits before its
response leaves the server.

FastAPI ends a `yield` dependency *after* the response is sent unless it is told otherwise, so
a route that writes through the request's session (``SessionDep``) could answer "done" before
its commit ran: a client acting on the answer at once (another tab, a script) saw the old
state, and a commit that then failed (SQLite's writer lock) was an error nobody received,
after which the server dropped the connection. Driven over loopback HTTP against uvicorn,
because an in-process TestClient waits for the whole app before it returns and so hides the
order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import login, make_staff
from tests.test_browser import live_server  # noqa: F401 (fixture)


@pytest.fixture
def slow_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request's commit waits half a second first, as behind a busy writer."""
    from app.web import deps

    real = deps.session_scope

    @contextmanager
    def slow(**kwargs: Any) -> Iterator[Any]:
        with real(**kwargs) as session:
            yield session
            time.sleep(0.5)

    monkeypatch.setattr(deps, "session_scope", slow)


def test_logout_has_ended_the_copied_session_when_it_answers(  # type: ignore[no-untyped-def]
    live_server,  # noqa: F811
    engine,
    slow_commits,
) -> None:
    """Logout ends every copy of the session cookie (a write through the request's session).
    The moment its answer arrives, a copy of the cookie no longer gets in."""
    from app.core.db import session_scope
    from app.core.models import User

    user_id = make_staff("ada", "correct horse", role="researcher")
    with httpx.Client(base_url=live_server, timeout=30) as mine:
        token = login(mine)
        with httpx.Client(base_url=live_server, cookies=mine.cookies, timeout=30) as copy:
            assert copy.get("/api/campaigns").status_code == 200
            out = mine.post("/logout", data={"csrf_token": token})
            assert out.status_code == 303, out.text
            # Straight after the answer: saved, and the copied cookie is refused.
            with session_scope() as session:
                assert session.get(User, user_id).session_epoch == 1  # type: ignore[union-attr]
            assert copy.get("/api/campaigns").status_code == 401
