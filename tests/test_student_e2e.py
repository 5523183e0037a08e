# ruff: noqa: F811 - the tiny_causal fixture comes from tests.test_student
"""The student's doors through the real processes: `skd serve` and `skd worker` started here,
staff over loopback HTTP. A student trains from the page's form and from the JSON API at the
same moment, then an evaluation campaign is built from the page: every job runs on the worker
process (none on the server's threads), and the page shows each result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.live_stack import live_stack, start_at_once, succeeded
from tests.test_student import tiny_causal  # noqa: F401 - the fixture

RELATIONS = ("xWant", "xEffect")
TRAIN = {"epochs": "1", "batch_size": "8", "learning_rate": "0.005"}


def _corpus(folder: Path, source: str, tail: int) -> Path:
    """30 heads x 2 relations, one tail each: the human side or the teacher side of the
    corpus (the evaluation's references and its teacher system)."""
    path = folder / f"{source}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for h in range(30):
            for relation in RELATIONS:
                record = {
                    "head": f"PersonX paints fence {h}",
                    "relation": relation,
                    "tail": f"to rest {h}-{tail}",
                }
                out.write(json.dumps(record) + "\n")
    return path


def test_student_trains_from_page_and_api_and_is_evaluated_on_the_worker(  # type: ignore[no-untyped-def]
    tmp_path, tiny_causal
) -> None:
    with live_stack(tmp_path) as stack:
        client = stack.login()
        for tail, source in enumerate(("human", "teacher")):
            corpus = _corpus(tmp_path, source, tail)
            with corpus.open("rb") as handle:
                files = [("files", (corpus.name, handle, "application/jsonl"))]
                imported = client.post("/api/corpus/import", files=files, data={"source": source})
            assert imported.status_code == 202, imported.text
            succeeded(client, imported.json()["job_id"])
        export = client.post(
            "/api/exports", json={"critic": "none", "formats": ["student", "jsonl"]}
        )
        assert export.status_code == 202, export.text
        succeeded(client, export.json()["job_id"])
        export_id = export.json()["export_id"]

        # Two trainings started at the same moment: one from the page's form, one over the API.
        token = client.headers["X-CSRF-Token"]
        form = {"export_id": str(export_id), "base_model": str(tiny_causal), **TRAIN}

        def from_page() -> httpx.Response:
            return client.post("/student/runs", data={**form, "csrf_token": token})

        def from_api() -> httpx.Response:
            body = {"export_id": export_id, "base_model": str(tiny_causal), "epochs": 1,
                    "batch_size": 8, "learning_rate": 0.005}  # fmt: skip
            return client.post("/api/student/runs", json=body)

        page_model, api_started = start_at_once(from_page, from_api)
        api_model = api_started["model_id"]
        succeeded(client, api_started["job_id"])
        models = {m["id"]: m for m in client.get("/api/student/runs").json()}
        succeeded(client, models[page_model]["job_id"])
        for model_id in (page_model, api_model):
            model = client.get(f"/api/student/runs/{model_id}").json()
            assert model["state"] == "ready", model
            assert Path(model["path"], "README.md").is_file()
            page = client.get(f"/student/runs/{model_id}").text
            assert "ready" in page and f"export #{export_id}" in page

        # The evaluation, from the page's form: a campaign over held-out heads.
        evaluation = client.post(
            "/student/evaluations",
            data={
                "csrf_token": token,
                "name": "page evaluation",
                "export_id": str(export_id),
                "models": [str(page_model), str(api_model)],
                "teacher": "1",
                "teacher_sources": "teacher",
                "reference_sources": "human",
                "heads": "3",
                "n": "1",
                "decoding": "greedy",
                "ratings_per_item": "1",
            },
        )
        # Post, then a redirect: the page it lands on shows the job, and a reload posts nothing.
        assert evaluation.status_code == 303, evaluation.text
        landing = evaluation.headers["location"]
        started = re.fullmatch(r"/student\?evaluation_job=(\d+)#evaluation-started", landing)
        assert started, landing
        shown = client.get(landing)
        assert 'id="evaluation-started"' in shown.text
        assert f'/jobs/{started.group(1)}"' in shown.text
        job = succeeded(client, int(started.group(1)))
        campaign_id = job["result"]["campaign_id"]
        table = client.get(f"/api/student/evaluations/{campaign_id}").json()
        systems = set(table["systems"])
        assert {f"student-{page_model}", f"student-{api_model}", "teacher"} <= systems, systems

        # Every job ran on the worker process: its log names each task, the server's none.
        worker_log = stack.log("worker")
        assert "skd.student_train[" in worker_log and "skd.student_evaluate[" in worker_log
        assert "skd.student_" not in stack.log("serve")
