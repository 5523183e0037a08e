"""No request holds two database connections at once.

A request that keeps one pooled connection while it waits for a second deadlocks the pool
under load: with as many such requests as the pool has connections, every one holds one and
waits for another until the pool times out, and users see 500s. CI saw exactly that (twenty
clients creating campaigns against `skd serve` on SQLite, whose pool holds fifteen). The
concurrent test finds it only when the timing is unlucky; this one finds it every time, by
counting the connections checked out while each request of a researcher's and a
crowdworker's ordinary day runs on its own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.core.accounts import create_staff
from app.core.db import session_scope
from app.core.models import Role
from app.core.origin import current_origin
from app.web.campaign_form import blank_values as campaign_form_defaults
from app.web.exports import blank_values as export_form_defaults
from tests.conftest import add_triples, login
from tests.test_web import api_routes


def in_a_request() -> bool:
    """Whether this thread works for an HTTP request: the app marks each request's context with
    its door (``app.web.origin``), and that context follows the request into the threads that
    run its dependencies and route. The app's background sweep and a Celery worker that an
    earlier test left running in this process (it picks up the jobs these requests queue) are
    not the request's."""
    origin = current_origin()
    return origin is not None and origin.door in ("web", "api")


class PoolWatch:
    """The most connections requests held at once since the last ``reset``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def checkout(self, *_: Any) -> None:
        if in_a_request():
            with self._lock:
                self.now += 1
                self.peak = max(self.peak, self.now)

    def checkin(self, *_: Any) -> None:
        if in_a_request():
            with self._lock:
                self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.peak = self.now


@pytest.fixture
def watch(engine) -> Iterator[PoolWatch]:  # type: ignore[no-untyped-def]
    watched = PoolWatch()
    event.listen(engine, "checkout", watched.checkout)
    event.listen(engine, "checkin", watched.checkin)
    yield watched
    event.remove(engine, "checkout", watched.checkout)
    event.remove(engine, "checkin", watched.checkin)


def test_every_request_of_an_ordinary_day_uses_one_connection_at_a_time(
    app,  # type: ignore[no-untyped-def]
    client: TestClient,
    watch: PoolWatch,
) -> None:
    add_triples(30)
    with session_scope(write=True) as session:
        create_staff(session, "root", "correct horse", Role.admin)
    client.headers["X-CSRF-Token"] = login(client, "root")
    peaks: dict[str, int] = {}

    def call(method: str, url: str, via: TestClient = client, **kwargs: Any) -> Any:
        assert watch.now == 0, f"a connection was left checked out before {method} {url}"
        watch.reset()
        response = via.request(method, url, **kwargs)
        assert response.status_code < 500, f"{method} {url}: {response.text[:300]}"
        peaks[f"{method} {url.split('?')[0]}"] = watch.peak
        return response

    call(
        "POST",
        "/api/corpus/import",
        files=[("files", ("more.tsv", b"PersonX sings\txWant\tto be heard\n"))],
    )
    made = call("POST", "/api/campaigns", json={"name": "api", "sample_size": 10}).json()
    call("POST", f"/api/campaigns/{made['id']}/state", json={"state": "open"})
    campaign_form = campaign_form_defaults() | {"name": "form", "sample_size": "5"}
    call("POST", "/campaigns", data=campaign_form, follow_redirects=False)
    exported = call("POST", "/api/exports", json={"critic": "none", "formats": ["jsonl"]}).json()
    export_form = export_form_defaults() | {"version": "none"}
    call("POST", "/exports", data=export_form, follow_redirects=False)
    call("POST", "/critic/train", data={}, follow_redirects=False)
    call("POST", "/api/critic/train", json={"reason": "pool check"})
    call("POST", "/critic/score", data={}, follow_redirects=False)
    people = {"username": "bea", "password": "a long enough password", "role": "researcher"}
    call("POST", "/admin/users", data=people, follow_redirects=False)
    invite = {"name": "Cy", "campaign": str(made["id"])}
    call("POST", "/admin/invitations", data=invite, follow_redirects=False)
    call("POST", "/api/jobs/sweep")
    # Every page and JSON read, as a signed-in admin sees it: path parameters name what this
    # test made (a missing teacher run or student model answers 404, still through the pool).
    known = {
        "{campaign_id}": made["id"],
        "{export_id}": exported["export_id"],
        "{job_id}": exported["job_id"],
        "{version_id}": 1,
        "{run_id}": 1,
        "{model_id}": 1,
        "{fmt}": "csv",
    }
    for route in api_routes(app.routes):
        path = route.path
        for name, value in known.items():
            path = path.replace(name, str(value))
        if "GET" in route.methods and "{" not in path and path != "/logout":
            call("GET", path)

    # A crowdworker arrives by the study link, opens the page and rates over the JSON API.
    share = made["share_url"].split("/c/", 1)[1]
    with TestClient(app) as crowd:
        call("GET", f"/c/{share}?PROLIFIC_PID=pool-{uuid.uuid4().hex[:6]}", via=crowd)
        for path in (f"/annotate/{made['id']}", f"/api/annotate/{made['id']}/next"):
            served = call("GET", path, via=crowd)
            assert served.status_code == 200, served.text[:300]
        item = served.json()["item"]
        rated = call(
            "POST",
            f"/api/annotate/{made['id']}/submit",
            via=crowd,
            json={"item_id": item["item_id"], "answer": 2, "submission_id": uuid.uuid4().hex},
        )
        assert rated.status_code == 200, rated.text[:300]

    assert len(peaks) > 60, sorted(peaks)
    two_at_once = {name: peak for name, peak in peaks.items() if peak > 1}
    assert not two_at_once, two_at_once
    assert peaks["POST /api/campaigns"] == 1, peaks  # the watch does see the checkouts
