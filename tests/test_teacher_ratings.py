"""A teacher run's human ratings close the loop's first step: "Rate this run" opens an
evaluation campaign on its triples, and once people rate them the run's page, its JSON and
``skd generate show`` say how acceptable the run was (overall, per relation, with a 95%
interval). An evaluation campaign over several corpus sources compares them like systems."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import add_triples

ROOT = Path(__file__).resolve().parents[1]


def _teacher_run() -> int:
    from app.core.db import session_scope
    from app.core.models import TeacherRun

    with session_scope(write=True) as session:
        run = TeacherRun(backend="local", model="m", kind="inferences")
        session.add(run)
        session.flush()
        return run.id


def _written_by(run_id: int, source: str) -> None:
    """Mark the source's triples as the run's output, as the teacher's loader does."""
    from sqlalchemy import update

    from app.core.db import session_scope
    from app.core.models import Triple

    with session_scope(write=True) as session:
        session.execute(update(Triple).where(Triple.source == source).values(teacher_run_id=run_id))


def _rate_all(app, share_url: str, campaign_id: int, people: int, answer_for) -> int:  # type: ignore[no-untyped-def]
    """People enter by the share link and rate every item they are served, through the same
    JSON calls as the rating page."""
    rated = 0
    for person in range(people):
        with TestClient(app) as browser:
            path = share_url.split("://", 1)[1].split("/", 1)[1]
            browser.get(f"/{path}?PROLIFIC_PID=rater-{person}-{uuid.uuid4().hex[:6]}")
            page = browser.get(f"/annotate/{campaign_id}").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert csrf, page[:500]
            served = browser.get(f"/api/annotate/{campaign_id}/next").json()
            while served.get("item"):
                item = served["item"]
                body = {"item_id": item["item_id"], "answer": answer_for(item), "seconds": 4.0,
                        "submission_id": uuid.uuid4().hex}  # fmt: skip
                answer = browser.post(
                    f"/api/annotate/{campaign_id}/submit",
                    json=body,
                    headers={"X-CSRF-Token": csrf.group(1)},
                )
                assert answer.status_code == 200, answer.text
                served = answer.json()
                rated += 1
    return rated


def test_a_rated_teacher_run_shows_its_acceptability_everywhere(app, staff_client) -> None:  # type: ignore[no-untyped-def]
    run_id = _teacher_run()
    source = f"teacher-run-{run_id}"
    add_triples(6, head="PersonX bakes {i}", tail="to eat {i}", relation="xWant", source=source)
    add_triples(6, head="PersonX bakes {i}", tail="oven {i}", relation="xNeed", source=source)
    add_triples(6, head="PersonX reads {i}", tail="to learn {i}", source="atomic")
    _written_by(run_id, source)

    # Nothing rated yet: no ratings section, an empty list over the API.
    assert "Human ratings" not in staff_client.get(f"/teacher/runs/{run_id}").text
    assert staff_client.get(f"/api/teacher/runs/{run_id}").json()["ratings"] == []

    opened = staff_client.post(f"/api/teacher/runs/{run_id}/campaign")
    assert opened.status_code == 201, opened.text
    campaign_id = opened.json()["campaign_id"]
    campaign = staff_client.get(f"/api/campaigns/{campaign_id}").json()
    # Three people: every xWant inference acceptable, every xNeed one not.
    rated = _rate_all(
        app, campaign["share_url"], campaign_id, 3,
        lambda item: 2 if item["relation"] == "xWant" else -1,
    )  # fmt: skip
    assert rated == 36

    ratings = staff_client.get(f"/api/teacher/runs/{run_id}").json()["ratings"]
    assert len(ratings) == 1
    row = ratings[0]
    assert (row["campaign_id"], row["system"], row["rated_items"]) == (campaign_id, source, 12)
    assert (row["decided"], row["accepted"], row["acceptability"]) == (12, 6, 0.5)
    assert row["ci_low"] < 0.5 < row["ci_high"]
    by_relation = {r["relation"]: r["acceptability"] for r in row["per_relation"]}
    assert by_relation == {"xNeed": 0.0, "xWant": 1.0}

    page = staff_client.get(f"/teacher/runs/{run_id}").text
    section = page.split('id="run-ratings"', 1)[1].split("</section>", 1)[0]
    assert "Human ratings" in page and f'href="/campaigns/{campaign_id}"' in section
    assert "12 of 12" in section and "50.0%" in section and "100%" in section

    # The list of runs has the newest campaign's figure beside each run.
    runs = staff_client.get("/teacher").text.split('id="teacher-runs"', 1)[1]
    row_html = runs.split(f'href="/teacher/runs/{run_id}"', 1)[1].split("</tr>", 1)[0]
    assert f'<a href="/campaigns/{campaign_id}">50%</a>' in row_html and "n=12" in row_html

    # The campaign's own table names the source (it had "no system" before).
    table = staff_client.get(f"/api/student/evaluations/{campaign_id}").json()
    assert table["compared"] == "sources" and table["systems"] == [source]
    fragment = staff_client.get(f"/student/evaluations/{campaign_id}/table").text
    assert "Acceptability per source" in fragment and "No source has" not in fragment
    page = staff_client.get(f"/student/evaluations/{campaign_id}").text
    assert "Corpus sources compared" in page and "Teacher versus student" not in page

    shown = subprocess.run(
        [str(ROOT / ".venv/bin/skd"), "generate", "show", str(run_id)],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"rated in campaign #{campaign_id}" in shown.stdout
    assert "50.0% acceptable" in shown.stdout and "6 of 12 decided" in shown.stdout


def test_an_evaluation_campaign_over_two_sources_compares_them(app, staff_client) -> None:  # type: ignore[no-untyped-def]
    run_id = _teacher_run()
    source = f"teacher-run-{run_id}"
    add_triples(8, head="PersonX sings {i}", tail="to rest {i}", source=source)
    add_triples(8, head="PersonX paints {i}", tail="to sell it {i}", source="atomic2020")
    _written_by(run_id, source)
    made = staff_client.post(
        "/api/campaigns",
        json={
            "name": "teacher vs humans",
            "purpose": "evaluation",
            "ratings_per_item": 1,
            "sources": [source, "atomic2020"],
        },  # fmt: skip
    )
    assert made.status_code == 201, made.text
    campaign: dict[str, Any] = made.json()
    # The teacher's inferences are all rejected, the human-written ones all accepted.
    rated = _rate_all(
        app, campaign["share_url"], campaign["id"], 1,
        lambda item: 2 if "sell" in item["tail"] else -2,
    )  # fmt: skip
    assert rated == 16

    table = staff_client.get(f"/api/student/evaluations/{campaign['id']}").json()
    assert table["compared"] == "sources" and table["systems"] == [source, "atomic2020"]
    cells = {row["system"]: row["acceptability"] for row in table["per_system"]}
    assert cells == {source: 0.0, "atomic2020": 1.0}
    difference = table["differences"][0]
    assert (difference["system"], difference["versus"], difference["difference"]) == (
        source,
        "atomic2020",
        -1.0,
    )
    assert difference["significant"] is True
    ratings = staff_client.get(f"/api/teacher/runs/{run_id}").json()["ratings"]
    assert [(r["campaign_id"], r["acceptability"]) for r in ratings] == [(campaign["id"], 0.0)]
