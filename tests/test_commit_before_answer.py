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
from concurrent.futures import ThreadPoolExecutor
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


@pytest.fixture
def one_thread_one_connection(settings, engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The server in miniature: one request thread and a pool of one connection (waits for
    one give up after 3 s). Set before the server starts: its start-up reads them."""
    from sqlalchemy.orm import sessionmaker

    from app.core import db

    small = db.make_engine(settings.database, pool_size=1, max_overflow=0, pool_timeout=3)
    monkeypatch.setattr(settings, "web_threads", 1)
    monkeypatch.setattr(db, "_engine", small)
    monkeypatch.setattr(db, "_session_factory", sessionmaker(small, expire_on_commit=False))
    yield
    small.dispose()


def test_a_finished_route_gives_its_connection_back_before_the_answer_is_built(  # type: ignore[no-untyped-def]
    one_thread_one_connection,
    live_server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastAPI checks a plain route's returned value against its return annotation in the
    request thread pool, before it ends the request's session. A finished request then held
    its connection while it waited for a thread, and the thread was held by the next request
    waiting for that connection: under forty page reads at once, 500s after the pool's
    timeout. Here with one thread and one connection: two `/api/jobs` at once both answer."""
    from app.web import jobs

    real = jobs.list_job_views

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # the second request queues for the thread meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "list_job_views", slow)
    make_staff("ada", "correct horse", role="researcher")
    with httpx.Client(base_url=live_server, timeout=30) as staff:
        login(staff)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _i: staff.get("/api/jobs"), range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text[:200] for a in answers]


def test_every_route_of_the_app_gives_its_connection_back_before_its_answer(app) -> None:  # type: ignore[no-untyped-def]
    """The early commit above lives in the routers' ``route_class``. A route added later on a
    router that forgot it would bring the stall back only under load; this names it at once."""
    from fastapi.routing import APIRoute

    from app.web.deps import SessionRoute

    def walk(routes: list[Any]) -> Iterator[Any]:
        # FastAPI 0.16x keeps an included router whole (its routes under `original_router`);
        # older releases copied its routes into the app. Either way every endpoint is reached.
        for route in routes:
            included = getattr(route, "original_router", None)
            yield from walk(included.routes) if included is not None else [route]

    routes = [route for route in walk(app.routes) if isinstance(route, APIRoute)]
    assert len(routes) > 50  # the whole app: a walk that missed the routers fails here
    plain = [
        f"{sorted(route.methods)} {route.path}"
        for route in routes
        if not isinstance(route, SessionRoute)
    ]
    assert plain == [], "routes without route_class=SessionRoute"
