"""The teacher through the real processes: `skd serve` and `skd worker` as subprocesses, an
OpenAI-compatible server on a loopback port (in this test process), staff over HTTP.

A run started over the JSON API goes to the worker in chunk tasks; its page shows the filter
counts and a sample, and one click opens a campaign on its triples. A run started from the
teacher page's form at the same moment as one over the API reaches the worker too, each with the
key typed for it. A worker killed in the middle of a run (SIGKILL) loses nothing: `skd generate
resume` finishes it without duplicates.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.live_stack import ADMIN, Stack, live_stack, start_at_once, succeeded, wait_for_job
from tests.teacher_helpers import FakeOpenAI


def _params(server: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "backend": {
            "type": "openai",
            "base_url": server.base_url,
            "model": "fake",
            "concurrency": 4,
        },  # fmt: skip
        "prompts": 6,
        "chunk_size": 2,
        "relations": ["xWant", "xReact"],
        "events": {"n": 2},
        "inferences": {"n": 2},
        **extra,
    }


def test_a_run_over_the_api_runs_on_the_worker_and_opens_a_campaign(tmp_path: Path) -> None:
    with FakeOpenAI() as server, live_stack(tmp_path) as stack:
        client = stack.login()
        body = {**_params(server, name="first"), "api_key": "sk-typed-for-this-run"}
        started = client.post("/api/teacher/runs", json=body)
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        job = wait_for_job(client, started.json()["job_id"], timeout=120)
        assert job["state"] == "succeeded", (job["error"], job["message"])
        run = client.get(f"/api/teacher/runs/{run_id}").json()
        assert run["counts"]["events"]["kept"] == 12  # 6 prompts x 2 events, all distinct
        assert run["counts"]["inferences"]["kept"] == 12 * 2 * 2 == run["triples"]
        # The next run of this model is planned and timed by this one, as the worker ran it.
        plan = client.post("/api/teacher/plan", json=body).json()
        assert plan["generations"] == 12 + 12 * 2 * 2 and plan["pace"]["run_id"] == run_id
        assert plan["pace"]["generations"] == 12 + 48 and plan["estimated_seconds"] > 0
        assert all("PersonX" in t["tail"] for t in run["sample"]["triples"])  # names mapped back
        assert all(t["logprob"] is not None for t in run["sample"]["triples"])
        # The triples are a corpus source like any import.
        counts = client.get("/api/corpus").json()
        assert counts["triples"] == 48
        # A human-written reference to rate the run against.
        reference = tmp_path / "reference.tsv"
        reference.write_text("".join(f"PersonX naps {i}\txWant\tto rest {i}\n" for i in range(70)))
        assert stack.skd("import", str(reference), "--source", "atomic2020").returncode == 0
        page = client.get(f"/teacher/runs/{run_id}")
        assert page.status_code == 200
        assert "already in the corpus" in page.text and "PersonX tries hobby" in page.text
        assert '<option value="atomic2020">' in page.text  # "Rate it against"
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        opened = client.post(
            f"/teacher/runs/{run_id}/campaign",
            data={"csrf_token": token.group(1), "compare_with": "atomic2020"},
        )
        assert opened.status_code == 303, opened.text
        campaign_id = int(opened.headers["location"].rsplit("/", 1)[1])
        campaign = client.get(f"/api/campaigns/{campaign_id}").json()
        assert campaign["selection"]["sources"] == [f"teacher-run-{run_id}", "atomic2020"]
        assert campaign["purpose"] == "evaluation"
        # Every triple of the run (up to 200), and as many of the reference's.
        assert campaign["progress"]["items"] == 96
        assert campaign["selection"]["per_source"] == {
            "atomic2020": 48,
            f"teacher-run-{run_id}": 48,
        }
        assert campaign["selection"]["relations"] == ["xReact", "xWant"]  # the run's: like for like
        # A key typed for the run reached the server, and is stored nowhere the API shows.
        assert {r["auth"] for r in server.requests} == {"Bearer sk-typed-for-this-run"}
        assert "sk-typed" not in str(run) and "sk-typed" not in page.text
        # A script does the same over the JSON API: another campaign on the run's triples,
        # and a finished run is not resumed.
        again = client.post(f"/api/teacher/runs/{run_id}/campaign")
        assert again.status_code == 201, again.text
        assert again.json()["campaign_id"] != campaign_id
        alone = client.get(again.json()["campaign_url"]).json()
        assert alone["selection"]["sources"] == [f"teacher-run-{run_id}"]
        assert alone["progress"]["items"] == 48
        against = client.post(
            f"/api/teacher/runs/{run_id}/campaign",
            json={"compare_with": "atomic2020", "per_source": 10},
        )
        assert against.status_code == 201, against.text
        paired = client.get(against.json()["campaign_url"]).json()
        assert paired["progress"]["items"] == 20
        for wrong in ("nowhere", f"teacher-run-{run_id}"):
            refused = client.post(
                f"/api/teacher/runs/{run_id}/campaign", json={"compare_with": wrong}
            )
            assert refused.status_code == 422 and "compare_with" in refused.text, wrong
        finished = client.post(f"/api/teacher/runs/{run_id}/resume")
        assert finished.status_code == 409 and "already finished" in finished.text
        assert client.post("/api/teacher/runs/99999/resume").status_code == 404


def test_a_failed_run_resumed_over_the_api_finishes_on_the_worker(tmp_path: Path) -> None:
    """The server answers 500 once and the run allows no retries, so it fails; a script
    holding only an API token resumes it and the worker finishes it."""
    with FakeOpenAI() as server, live_stack(tmp_path) as stack:
        made = stack.skd("users", "tokens", "create", ADMIN, "--name", "teacher script")
        assert made.returncode == 0, made.stderr
        script = httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {made.stdout.strip()}"}
        )
        params = _params(server, prompts=2, relations=["xWant"])
        params["backend"].update(concurrency=1, max_retries=0)
        server.script = [500]
        started = script.post("/api/teacher/runs", json=params)
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        failed = wait_for_job(script, started.json()["job_id"], timeout=120)
        assert failed["state"] == "failed", failed
        resumed = script.post(f"/api/teacher/runs/{run_id}/resume")
        assert resumed.status_code == 202, resumed.text
        job = succeeded(script, resumed.json()["job_id"])
        assert job["started_by"] == f"{ADMIN} (api token 'teacher script')"
        run = script.get(f"/api/teacher/runs/{run_id}").json()
        assert run["state"] == "succeeded" and run["counts"]["events"]["kept"] == 4


def test_a_run_from_the_page_form_and_one_over_the_api_both_run_on_the_worker(
    tmp_path: Path,
) -> None:
    """The page's form is its own door (a form post, a redirect, the key typed on the form):
    the run it starts must reach a real worker, not only the API's."""
    with FakeOpenAI() as server, live_stack(tmp_path) as stack:
        client = stack.login()
        page = client.get("/teacher")
        assert page.status_code == 200
        form: dict[str, Any] = {
            "name": "from the page",
            "kind": "events",
            "backend": "openai",
            "base_url": server.base_url,
            "model": "fake",
            "mode": "completions",
            "api_key": "sk-typed-on-the-page",
            "concurrency": "4",
            "prompts": "6",
            "n": "2",
            "inference_n": "2",
            "relations": ["xWant", "xReact"],
            "seed": "0",
        }
        for field in form:  # the fields a person fills in are the page's own
            assert f'name="{field}"' in page.text, field
        token = client.headers["X-CSRF-Token"]

        def from_page() -> Any:
            return client.post("/teacher/runs", data={**form, "csrf_token": token})

        def from_api() -> Any:
            body = {**_params(server, name="over the api"), "api_key": "sk-typed-for-the-api"}
            return client.post("/api/teacher/runs", json=body)

        page_run, api_started = start_at_once(from_page, from_api)
        api_run = api_started["run_id"]
        assert page_run != api_run
        runs = {}
        for run_id in (page_run, api_run):
            succeeded(client, client.get(f"/api/teacher/runs/{run_id}").json()["job"]["id"], 120)
            run = runs[run_id] = client.get(f"/api/teacher/runs/{run_id}").json()
            assert run["counts"]["events"]["kept"] == 12  # 6 prompts x 2 events, all distinct
            assert run["counts"]["inferences"]["kept"] == 12 * 2 * 2 == run["triples"]
        run = runs[page_run]
        assert run["name"] == "from the page" and run["backend"] == "openai"
        assert run["params"]["relations"] == ["xWant", "xReact"]
        shown = client.get(f"/teacher/runs/{page_run}")
        assert shown.status_code == 200 and "from the page" in shown.text
        assert client.get("/api/corpus").json()["triples"] == 2 * 48
        # Each run's requests carried the key typed for it, and neither key is kept.
        assert {r["auth"] for r in server.requests} == {
            "Bearer sk-typed-on-the-page",
            "Bearer sk-typed-for-the-api",
        }
        assert "sk-typed" not in str(run) and "sk-typed" not in shown.text

        # The follow-up door: the form for inferences of the page run's events comes filled
        # with its server and model, and posting it runs on the worker too.
        follow_up = client.get(f"/teacher?events_of_run={page_run}").text
        assert f'name="heads_value" value="{page_run}"' in follow_up
        assert f'value="{server.base_url}"' in follow_up and 'value="fake"' in follow_up
        more = {**form, "kind": "inferences", "heads_kind": "run", "heads_value": str(page_run),
                "relations": ["xNeed"], "name": "the follow-up"}  # fmt: skip
        answer = client.post("/teacher/runs", data={**more, "csrf_token": token})
        assert answer.status_code == 303, answer.text
        next_run = int(answer.headers["location"].rsplit("/", 1)[1])
        job = client.get(f"/api/teacher/runs/{next_run}").json()["job"]["id"]
        succeeded(client, job, 120)
        written = client.get(f"/api/teacher/runs/{next_run}").json()
        assert written["triples"] == 12 * 2  # the 12 events of the page run, 2 xNeed each


def _kill_worker(stack: Stack) -> None:
    process = stack.processes.pop("worker")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_a_worker_killed_mid_run_loses_nothing_and_resume_finishes_it(tmp_path: Path) -> None:
    with (
        FakeOpenAI(delay=0.4) as server,
        live_stack(tmp_path, job_stale_seconds="3", job_sweep_seconds="0") as stack,
    ):
        client = stack.login()
        params = _params(server, prompts=12, relations=["xWant"])
        params["backend"]["concurrency"] = 1
        started = client.post("/api/teacher/runs", json=params)
        assert started.status_code == 202, started.text
        run_id, job_id = started.json()["run_id"], started.json()["job_id"]
        deadline = time.monotonic() + 90
        while True:  # until two chunks are stored, then kill the worker mid-run
            run = client.get(f"/api/teacher/runs/{run_id}").json()
            if run["counts"].get("events", {}).get("kept", 0) >= 8:
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.2)
        _kill_worker(stack)
        stored = client.get(f"/api/teacher/runs/{run_id}").json()["counts"]["events"]["kept"]
        assert stored < 24, "the run finished before the worker was killed"
        time.sleep(3.5)
        swept = stack.skd("jobs", "sweep")
        assert swept.returncode == 0, swept.stdout + swept.stderr
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["state"] == "failed" and "stopped responding" in job["error"]
        assert client.get(f"/api/teacher/runs/{run_id}").json()["state"] == "failed"
        resumed = stack.skd("generate", "resume", str(run_id), timeout=180)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        run = client.get(f"/api/teacher/runs/{run_id}").json()
        assert run["state"] == "succeeded"
        assert run["counts"]["events"]["kept"] == 24  # 12 prompts x 2: nothing lost or twice
        assert run["counts"]["events"]["generated"] == 24
        assert run["triples"] == 24 * 2 == run["counts"]["inferences"]["kept"]
