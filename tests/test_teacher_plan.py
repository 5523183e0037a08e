"""A teacher run's plan before it starts: prompts, generations and the most new tokens per
phase, and the time at the pace of the last finished run of the same model; through the JSON
API, the page (htmx panel and the plain form) and ``skd generate ... --dry-run``. Nothing is
written by asking."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import Job, TeacherRun
from tests.conftest import ROOT, csrf_of
from tests.teacher_helpers import FakeOpenAI


def _runs() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(TeacherRun)) or 0


def _plan(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/api/teacher/plan", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_api_plans_a_run_and_times_it_by_the_last_run_of_the_same_model(
    staff_client: Any,
) -> None:
    from app.teacher.runs import run_inline

    with FakeOpenAI() as server:
        backend = {"type": "openai", "base_url": server.base_url, "model": "fake"}
        body = {
            "backend": backend, "prompts": 3, "relations": ["xWant", "xNeed"],
            "events": {"n": 4, "max_tokens": 10}, "inferences": {"n": 2, "max_tokens": 12},
        }  # fmt: skip
        plan = _plan(staff_client, body)
        events, inferences = plan["phases"]
        assert (events["phase"], events["prompts"], events["generations"]) == ("events", 3, 12)
        assert events["max_new_tokens"] == 12 * 10 and not events["upper_bound"]
        # At most every event generated, asked about each relation, two samples each.
        assert (inferences["prompts"], inferences["generations"]) == (12 * 2, 12 * 2 * 2)
        assert inferences["max_new_tokens"] == 48 * 12 and inferences["upper_bound"]
        assert plan["generations"] == 12 + 48 and plan["max_new_tokens"] == 120 + 576
        assert plan["pace"] is None and plan["estimated_seconds"] is None
        assert _runs() == 0  # asking wrote nothing

        from app.teacher.planning import create_run

        run_id, job_id = create_run({**body, "prompts": 2})
        run_inline(job_id)
        with session_scope() as session:
            run = session.get(TeacherRun, run_id)
            job = session.get(Job, job_id)
            assert run is not None and job is not None and job.started_at and job.finished_at
            generated = run.counts["events"]["generated"] + run.counts["inferences"]["generated"]
            seconds = (job.finished_at - job.started_at).total_seconds()

        plan = _plan(staff_client, body)
        assert plan["pace"]["run_id"] == run_id
        assert plan["pace"]["generations"] == generated > 0
        assert abs(plan["pace"]["seconds"] - seconds) < 1e-6
        assert abs(plan["estimated_seconds"] - 60 * seconds / generated) < 1e-6
        # Another model, or the same name on another server, is not timed by that run.
        assert (
            _plan(staff_client, {**body, "backend": {**backend, "model": "other"}})["pace"] is None
        )
        elsewhere = {**backend, "base_url": "http://127.0.0.1:9/v1"}
        assert _plan(staff_client, {**body, "backend": elsewhere})["pace"] is None

        # Inferences for the run's events: as many as it kept, cut at the limit.
        with session_scope() as session:
            kept = session.get(TeacherRun, run_id).counts["events"]["kept"]  # type: ignore[union-attr]
        follow_up = {
            "kind": "inferences", "backend": backend, "relations": ["xWant", "xAttr", "xNeed"],
            "heads": {"kind": "run", "value": run_id}, "inferences": {"n": 3},
        }  # fmt: skip
        plan = _plan(staff_client, follow_up)
        assert plan["heads"] == kept > 1
        assert plan["phases"][0]["prompts"] == kept * 3 and plan["generations"] == kept * 9
        follow_up["heads"] = {"kind": "run", "value": run_id, "limit": 1}
        assert _plan(staff_client, follow_up)["heads"] == 1
        # The plan counts in the database what the run would load: the same events.
        from app.teacher.params import check_params
        from app.teacher.planning import chosen_heads, chosen_heads_count

        for heads in ({"kind": "source", "value": f"teacher-run-{run_id}"},
                      {"kind": "source", "value": f"teacher-run-{run_id}", "limit": 2},
                      {"kind": "run", "value": run_id}):  # fmt: skip
            params = check_params(
                {**follow_up, "heads": heads}, frozenset({"xWant", "xAttr", "xNeed"})
            )
            with session_scope() as session:
                loaded = chosen_heads(session, params)
                assert chosen_heads_count(session, params) == len(loaded) > 0
            assert _plan(staff_client, {**follow_up, "heads": heads})["heads"] == len(loaded)
    assert _runs() == 1

    bad = staff_client.post(
        "/api/teacher/plan",
        json={
            "kind": "inferences",
            "relations": ["xWant"],
            "heads": {"kind": "source", "value": "nope"},
        },
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "heads", "value"]
    assert "no source 'nope'" in bad.json()["detail"][0]["msg"]


def test_the_page_shows_the_plan_in_place_and_without_javascript(staff_client: Any) -> None:
    page = staff_client.get("/teacher").text
    assert 'id="teacher-plan"' in page and 'hx-post="/teacher/plan"' in page
    form = {"csrf_token": csrf_of(staff_client), "kind": "events", "backend": "local",
            "prompts": "6", "n": "3", "max_tokens": "20", "relations": ["xWant"],
            "inference_n": "2"}  # fmt: skip
    fragment = staff_client.post("/teacher/plan", data=form, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    rows = re.findall(r'<tr><td class="name">(\w+).*?</tr>', fragment.text, flags=re.S)
    assert rows == ["events", "inferences"]
    numbers = re.findall(r'<td class="n" data-label="[^"]+">([\d,]+)</td>', fragment.text)
    assert numbers == ["6", "3", "18", "360", "18", "2", "36", "720"]
    assert "54 generations" in fragment.text and "1,080 new tokens" in fragment.text
    assert "No finished run of this model" in fragment.text

    # The plain form (no JavaScript): the page again, as filled in, with the plan.
    plain = staff_client.post("/teacher/plan", data=form)
    assert plain.status_code == 200 and "<html" in plain.text
    assert 'name="prompts" type="number" min="1" value="6"' in plain.text
    assert "54 generations" in plain.text
    form["prompts"] = "0"
    refused = staff_client.post("/teacher/plan", data=form, headers={"HX-Request": "true"})
    assert "Not a run yet" in refused.text and "prompts" in refused.text
    assert staff_client.post("/teacher/plan", data=form).status_code == 422
    assert _runs() == 0


def test_the_cli_dry_run_prints_the_plan_and_starts_nothing(settings: Any, engine: Any) -> None:
    def skd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "generate", *args], cwd=ROOT, capture_output=True,
            text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip

    done = skd("events", "--prompts", "5", "--n", "2", "--relation", "xWant", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "nothing started" in done.stdout
    assert re.search(r"events\s*│\s*5\s*│\s*2\s*│\s*10\s*│\s*160", done.stdout), done.stdout
    assert re.search(r"inferences \(at most\)\s*│\s*10\s*│\s*10\s*│\s*100", done.stdout)
    assert "in all 110 generations" in done.stdout
    refused = skd("inferences", "--source", "nope", "--dry-run")
    assert refused.returncode == 2 and "the corpus has no source 'nope'" in refused.stderr
    assert _runs() == 0
