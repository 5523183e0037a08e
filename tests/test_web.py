"""The web app: who may see what, logging in, and importing through a real Celery worker."""

from __future__ import annotations

import time

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from app.core.accounts import create_invited_annotator
from app.core.db import session_scope
from app.core.models import Triple
from tests.conftest import csrf_of, login, make_staff

PUBLIC = {"/login", "/logout", "/i/{token}", "/healthz", "/c/{share_token}"}
# Annotators' own pages and API (tested in test_assign.py and test_browser.py).
ANNOTATOR = ("/api/annotate/", "/annotate/")


def api_routes(routes):  # type: ignore[no-untyped-def]
    """Every APIRoute, also inside included routers (FastAPI wraps those; our routers have no
    prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def staff_routes(app):  # type: ignore[no-untyped-def]
    for route in api_routes(app.routes):
        if route.path not in PUBLIC and not route.path.startswith(ANNOTATOR):
            for method in route.methods:
                yield method, route.path.replace("{job_id}", "1")


def test_every_staff_route_refuses_anonymous_users(client, app) -> None:  # type: ignore[no-untyped-def]
    routes = list(staff_routes(app))
    assert ("GET", "/api/jobs/1") in routes and ("POST", "/api/corpus/import") in routes
    for method, path in routes:
        response = client.request(method, path, follow_redirects=False)
        if method == "GET" and not path.startswith("/api/"):
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login"), path
        else:
            assert response.status_code in (401, 403), (method, path, response.status_code)


def test_annotators_get_no_staff_pages_or_api(client, app) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        _user, token = create_invited_annotator(session, "w1")
    assert client.get(f"/i/{token}", follow_redirects=False).status_code == 303
    home = client.get("/")
    assert "You are signed in as an annotator" in home.text
    client.headers["X-CSRF-Token"] = csrf_of(client)
    for method, path in staff_routes(app):
        if path == "/":
            continue
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == 403, (method, path, response.status_code)


def test_login_checks_password_and_csrf(client) -> None:  # type: ignore[no-untyped-def]
    make_staff("grace", "s3cret-pass")
    token = csrf_of(client)
    wrong = client.post(
        "/login", data={"username": "grace", "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    forged = client.post(
        "/login", data={"username": "grace", "password": "s3cret-pass", "csrf_token": "x"}
    )
    assert forged.status_code == 403
    login(client, "grace", "s3cret-pass")
    page = client.get("/")
    assert page.status_code == 200 and "Corpus" in page.text and "grace" in page.text


def test_bad_invitation_link_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/i/not-a-token", follow_redirects=False)
    assert response.headers["location"] == "/login?invalid_invite=1"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_login_redirect_stays_on_site(client) -> None:  # type: ignore[no-untyped-def]
    make_staff()
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={
            "username": "ada",
            "password": "correct horse",
            "csrf_token": token,
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_home_shows_corpus_counts(staff_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.corpus.importer import import_files

    path = tmp_path / "t.tsv"
    path.write_text("PersonX a\txNeed\tb\nPersonX a\txWant\tc\nPersonX d\txWant\te\n")
    import_files([path], source="handmade")
    page = staff_client.get("/").text
    assert "handmade" in page
    assert "xWant" in page and ">2<" in page
    counts = staff_client.get("/api/corpus").json()
    assert counts["triples"] == 3 and counts["by_relation"] == {"xNeed": 1, "xWant": 2}


def wait_for_job(client, job_id: int, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["finished"]:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _parquet_bytes(records: list[dict]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buffer)
    return buffer.getvalue()


def test_upload_is_imported_by_a_real_worker(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    files = [
        (
            "files",
            (
                "one.tsv",
                b"PersonX hikes\txNeed\tboots\nPersonX hikes\txWant\tnone\n",
                "text/tab-separated-values",
            ),
        ),
        (
            "files",
            (
                "two.jsonl",
                b'{"head": "PersonX hikes", "relation": "xReact", "tail": "tired", "valid": 2}\n',
                "application/json",
            ),
        ),
        (
            "files",
            (
                "three.parquet",
                _parquet_bytes(
                    [{"head": "PersonX hikes", "relation": "xEffect", "tail": "sweats"}]
                ),
                "application/vnd.apache.parquet",
            ),
        ),
    ]
    response = staff_client.post("/api/corpus/import", files=files, data={"source": "upload"})
    assert response.status_code == 202, response.text
    job = wait_for_job(staff_client, response.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["totals"]["imported"] == 3
    assert job["result"]["totals"]["skipped"] == {"'none' tail": 1}
    assert [f["file"] for f in job["result"]["files"]] == ["one.tsv", "two.jsonl", "three.parquet"]
    fragment = staff_client.get(f"/jobs/{job['id']}/progress").text
    assert "succeeded" in fragment and "hx-trigger" not in fragment and "100%" in fragment
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Triple)) == 3


def test_bad_upload_fails_the_job_with_file_and_line(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    files = [("files", ("oops.tsv", b"PersonX a\txNeed\tb\nPersonX a\tBadRel\tb\n", "text/plain"))]
    response = staff_client.post("/api/corpus/import", files=files)
    job = wait_for_job(staff_client, response.json()["job_id"])
    assert job["state"] == "failed"
    assert "oops.tsv:2: field 'relation'" in job["error"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Triple)) == 0


def test_upload_form_returns_a_live_progress_fragment(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    files = [("files", ("f.tsv", b"PersonX a\txNeed\tb\n", "text/plain"))]
    response = staff_client.post("/corpus/import", files=files, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in response.text and "import of f.tsv" in response.text
    job_id = int(response.text.split('id="job-')[1].split('"')[0])
    assert wait_for_job(staff_client, job_id)["state"] == "succeeded"


def test_upload_without_csrf_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    make_staff()
    login(client)
    files = [("files", ("f.tsv", b"PersonX a\txNeed\tb\n", "text/plain"))]
    assert client.post("/api/corpus/import", files=files).status_code == 403


@pytest.mark.parametrize("fmt", ["xlsx"])
def test_upload_with_unknown_format_is_refused(staff_client, fmt: str) -> None:  # type: ignore[no-untyped-def]
    files = [("files", ("f.tsv", b"x", "text/plain"))]
    response = staff_client.post("/api/corpus/import", files=files, data={"format": fmt})
    assert response.status_code == 422 and "format" in response.text
