"""The API reference is what a script writer reads: ``/openapi.json`` (and ``/docs`` from it)
lists the JSON API and only it, every operation with a summary and a readable id, the teacher
run's body with its fields; the downloads a script needs are under ``/api/`` too."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.web.docs import SECTIONS
from tests.conftest import add_triples, login, make_staff

LOOP = [
    "/api/teacher/runs",
    "/api/corpus/import",
    "/api/campaigns",
    "/api/annotate/{campaign_id}/submit",
    "/api/critic/train",
    "/api/exports",
    "/api/student/runs",
    "/api/student/evaluations",
    "/api/jobs/{job_id}",
    "/api/campaigns/{campaign_id}/ratings.{fmt}",
    "/api/labels.{fmt}",
]


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in schema["paths"].items() for m, op in item.items()]


def test_the_reference_lists_the_json_api_and_only_it(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert set(LOOP) <= paths
    # No page, form or fragment: a script that read the reference would post to them.
    assert all(path.startswith("/api/") for path in paths), sorted(
        p for p in paths if not p.startswith("/api/")
    )
    for page in ("/", "/login", "/teacher/runs", "/campaigns", "/exports/{export_id}/download"):
        assert page not in paths
    # ...while the pages themselves still answer.
    assert client.get("/login").status_code == 200

    operations = _operations(schema)
    assert len(operations) >= 45
    ids = [op["operationId"] for _m, _p, op in operations]
    assert len(ids) == len(set(ids)), "operation ids repeat"
    for method, path, op in operations:
        assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", op["operationId"]), (method, path, op)
        assert op["summary"][0].isupper() and len(op["summary"]) <= 60, (method, path)
        assert len(op["tags"]) == 1 and op["tags"][0] in SECTIONS, (method, path, op["tags"])
    named = {(m, p): op["operationId"] for m, p, op in operations}
    assert named["POST", "/api/teacher/runs"] == "start_teacher_run"
    assert named["GET", "/api/jobs/{job_id}"] == "get_job"

    # Sections in the loop's order, each described; no schema named after a module path.
    assert [tag["name"] for tag in schema["tags"]] == list(SECTIONS)
    assert all(tag["description"] for tag in schema["tags"])
    assert not [name for name in schema["components"]["schemas"] if name.startswith("app__")]
    assert not [name for name in schema["components"]["schemas"] if name.startswith("Body_")][1:]
    # The page says how to sign in and how long work is followed.
    description = schema["info"]["description"]
    for words in ("Authorization: Bearer", "/account", "skd users tokens create", "status_url"):
        assert words in description


def test_the_teacher_run_body_has_its_fields_in_the_reference(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for path in ("/api/teacher/runs", "/api/teacher/plan"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/TeacherRunIn"}
    run = components["TeacherRunIn"]
    fields = {"kind", "backend", "prompts", "relations", "heads", "events", "inferences",
              "filters", "pool", "templates", "seed", "api_key"}  # fmt: skip
    assert fields <= set(run["properties"])
    assert run["additionalProperties"] is False
    assert run["properties"]["api_key"]["writeOnly"] is True
    backend = components["BackendIn"]["properties"]
    assert backend["type"]["enum"] == ["local", "openai"]
    assert "gpu-box:8000/v1" in backend["base_url"]["description"]
    assert {"n", "top_p", "max_tokens", "stop"} <= set(components["SamplingIn"]["properties"])


def _refused(answer) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 422, answer.text
    return {".".join(map(str, d["loc"][1:])): d["msg"] for d in answer.json()["detail"]}


def test_malformed_teacher_bodies_get_a_422_naming_the_field_not_a_server_error(
    staff_client,
) -> None:  # type: ignore[no-untyped-def]
    """The pool's [head, tail] pairs used to reach the prompt builder unchecked: a pair of
    three, a text or a number where the pairs go answered 500."""
    from app.core.db import session_scope
    from app.core.models import Job, TeacherRun
    from app.teacher.params import TeacherParamsError, check_params

    relations = {"kind": "events", "relations": ["xWant"]}
    cases = [
        ({**relations, "pool": {"inferences": {"xWant": [["a", "b", "c"]]}}},
         "pool.inferences.xWant.0", "[head, tail] pair"),
        ({**relations, "pool": {"inferences": {"xWant": [["a", "b"], [5, "b"]]}}},
         "pool.inferences.xWant.1.0", "valid string"),
        ({"pool": {"inferences": {"xWant": "ab"}}}, "pool.inferences.xWant", "list"),
        ({"pool": {"events": "PersonX eats"}}, "pool.events", "list"),
        ({"pool": {"seeds": []}}, "pool.seeds", "unknown part"),
        ({"name": ["a list"]}, "name", "string"),
        ({"promts": 3}, "promts", "unknown parameter"),
        ({"events": {"temprature": 1}}, "events.temprature", "unknown setting"),
        ({"backend": {"type": "vllm"}}, "backend.type", "'local' or 'openai'"),
    ]  # fmt: skip
    for body, field, words in cases:
        for path in ("/api/teacher/plan", "/api/teacher/runs"):
            detail = _refused(staff_client.post(path, json=body))
            assert field in detail and words in detail[field], (path, body, detail)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TeacherRun)) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 0

    # The CLI's --params FILE reaches check_params with no pydantic in front: the same names.
    with pytest.raises(TeacherParamsError) as caught:
        check_params({**relations, "pool": {"inferences": {"xWant": [["a", "b"], [5, "b"]]}}},
                     frozenset({"xWant"}))  # fmt: skip
    assert "[head, tail] pair" in caught.value.errors["pool.inferences.xWant.1"]

    # A well-formed pool still plans (the pairs as JSON lists, as a run's params store them).
    pool = {"events": ["PersonX bakes bread", "PersonX calls a friend"],
            "inferences": {"xWant": [["PersonX bakes bread", "to eat it"]] * 3}}  # fmt: skip
    plan = staff_client.post("/api/teacher/plan", json={**relations, "pool": pool, "prompts": 2})
    assert plan.status_code == 200, plan.text


def test_a_token_downloads_ratings_and_labels_under_api(client) -> None:  # type: ignore[no-untyped-def]
    """The downloads a script needs are under ``/api/`` (so in the reference), the same bytes
    as the page's links, with a token and no cookie."""
    from app.annotation.campaigns import CampaignSpec, create_campaign
    from app.core.api_tokens import create_token
    from app.core.db import session_scope
    from app.core.models import User

    add_triples(6)
    make_staff("ada")
    with session_scope(write=True) as session:
        campaign_id = create_campaign(session, CampaignSpec(name="c", ratings_per_item=1)).id
        ada = session.scalar(select(User).where(User.username == "ada"))
        assert ada is not None
        _row, token = create_token(session, ada, "downloads")
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    for page_path in (
        f"/campaigns/{campaign_id}/ratings.csv",
        f"/campaigns/{campaign_id}/labels.jsonl",
        "/labels.csv",
    ):
        api = client.get("/api" + page_path, headers=bearer)
        page = client.get(page_path, headers=bearer)
        assert api.status_code == 200 and api.content == page.content, api.text
        assert "attachment" in api.headers["content-disposition"]
    assert client.get(f"/api/campaigns/{campaign_id}/ratings.csv").status_code in (401, 403)
    assert client.get("/api/campaigns/999/ratings.csv", headers=bearer).status_code == 404


def test_a_job_answers_with_the_fields_the_reference_names(staff_client) -> None:  # type: ignore[no-untyped-def]
    """What every script polls: ``GET /api/jobs/{id}`` has a declared shape, and the answer
    (one job, and the list) carries exactly its fields."""
    from app.core.jobs import new_job

    job_id = new_job("export", {"export_id": 7})
    schema = staff_client.get("/openapi.json").json()
    ok = schema["paths"]["/api/jobs/{job_id}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobOut"}
    job_out = schema["components"]["schemas"]["JobOut"]
    answer = staff_client.get(f"/api/jobs/{job_id}").json()
    assert set(answer) == set(job_out["properties"])
    assert answer["state"] in schema["components"]["schemas"]["JobState"]["enum"]
    assert answer["label"] == "Export #7" and answer["finished"] is False
    listed = staff_client.get("/api/jobs").json()
    assert [row["id"] for row in listed] == [job_id]
    assert listed[0] | {"waiting_s": None} == answer | {"waiting_s": None}  # it waits on


def _documented(schema: dict[str, Any], path: str) -> set[str]:
    ref = schema["paths"][path]["post"]["responses"]["202"]["content"]["application/json"]
    name = ref["schema"]["$ref"].rsplit("/", 1)[1]
    return set(schema["components"]["schemas"][name]["properties"])


def test_work_started_over_the_api_answers_as_the_reference_says(staff_client) -> None:  # type: ignore[no-untyped-def]
    """The 202 answers are built by hand beside their documented models: each real answer
    carries exactly the fields its model names, the job to follow first among them."""
    add_triples(5)
    schema = staff_client.get("/openapi.json").json()
    tsv = "PersonX bakes bread\txWant\tto eat it\nPersonX reads\txNeed\ta book\n"
    answers = {
        "/api/corpus/import": staff_client.post(
            "/api/corpus/import", files=[("files", ("more.tsv", tsv, "text/tab-separated-values"))]
        ),
        "/api/teacher/runs": staff_client.post("/api/teacher/runs", json={"prompts": 1}),
        "/api/exports": staff_client.post("/api/exports", json={"critic": "none"}),
    }
    for path, answer in answers.items():
        assert answer.status_code == 202, (path, answer.text)
        body = answer.json()
        assert set(body) == _documented(schema, path), path
        assert body["status_url"] == f"/api/jobs/{body['job_id']}"


# --- every answer has a named shape, and the code answers that shape ---------------------------

# The operations whose success answer is a file, not JSON: no model describes a CSV, a JSONL
# or a .tar.gz (FastAPI still lists them as JSON of no shape).
FILE_ANSWERS = {
    ("GET", "/api/campaigns/{campaign_id}/ratings.{fmt}"): "the ratings as CSV or JSONL",
    ("GET", "/api/campaigns/{campaign_id}/labels.{fmt}"): "the labels as CSV or JSONL",
    ("GET", "/api/labels.{fmt}"): "every label as CSV or JSONL",
    ("GET", "/api/exports/{export_id}/download"): "the export's .tar.gz",
    ("GET", "/api/exports/{export_id}/files/{name}"): "one file of the export, as written",
    ("GET", "/api/student/evaluations/{campaign_id}/table.csv"): "the table as CSV",
}


def _ref_name(schema: dict[str, Any]) -> str | None:
    """The model a response schema names: ``$ref`` to it, or an array of them."""
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[1] if ref.startswith("#/components/schemas/") else None


def test_every_json_answer_is_a_named_model(client) -> None:  # type: ignore[no-untyped-def]
    """A script writer reads each answer field by field: no operation answers a bare
    ``object`` (or nothing at all), downloads aside."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    untyped = []
    for method, path, op in _operations(schema):
        successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert successes, (method, path)
        if (method, path) in FILE_ANSWERS:
            continue
        for code, response in successes.items():
            content = response.get("content", {})
            if content and "application/json" not in content:
                continue  # declared as a file (a backup's octet-stream)
            name = _ref_name(content["application/json"]["schema"]) if content else None
            if name is None or name not in components:
                untyped.append(f"{method} {path} {code}")
    assert not untyped, untyped
    operations = {(m, p) for m, p, _op in _operations(schema)}
    assert set(FILE_ANSWERS) <= operations, set(FILE_ANSWERS) - operations


def _answer_models() -> list[type]:
    """The models of ``app.web.answers``."""
    from pydantic import BaseModel

    from app.web import answers

    return [
        value
        for value in vars(answers).values()
        if isinstance(value, type) and issubclass(value, BaseModel)
        and value.__module__ == answers.__name__
    ]  # fmt: skip


def test_answer_models_pass_on_keys_they_do_not_name(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """FastAPI filters an answer through its model: a key added to the code's dict and not
    yet to the model must still reach scripts (and the drift test below then names it)."""
    from app.web import corpus
    from app.web.jobs import JobSummary
    from app.web.started import JobRetried

    models = _answer_models()
    assert len(models) >= 20
    for model in [*models, JobSummary, JobRetried]:
        assert model.model_config.get("extra") == "allow", model.__name__

    real = corpus.corpus_counts
    monkeypatch.setattr(corpus, "corpus_counts", lambda session: real(session) | {"new": [1]})
    make_staff()
    client.headers["X-CSRF-Token"] = login(client)
    answer = client.get("/api/corpus")
    assert answer.status_code == 200 and answer.json()["new"] == [1], answer.text


def _resolve(components: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return components[ref.rsplit("/", 1)[1]] if ref else schema


def _drift(components: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """Where ``value`` has a key its schema does not declare, or lacks a required one,
    through nested models and arrays of them."""
    schema = _resolve(components, schema)
    if value is None:
        return []
    if "anyOf" in schema:
        for branch in schema["anyOf"]:
            branch = _resolve(components, branch)
            if (isinstance(value, dict) and "properties" in branch) or (
                isinstance(value, list) and branch.get("type") == "array"
            ):
                return _drift(components, branch, value, where)
        return []
    if isinstance(value, list) and "items" in schema:
        return [p for item in value for p in _drift(components, schema["items"], item, where)]
    if not (isinstance(value, dict) and "properties" in schema):
        return []
    declared = schema["properties"]
    problems = [f"{where}.{key} is not declared" for key in value if key not in declared]
    problems += [f"{where}.{key} is missing" for key in schema.get("required", [])
                 if key not in value]  # fmt: skip
    for key, item in value.items():
        if key in declared:
            problems += _drift(components, declared[key], item, f"{where}.{key}")
    return problems


def _answer_schema(schema: dict[str, Any], method: str, path: str, code: int) -> dict[str, Any]:
    response = schema["paths"][path][method.lower()]["responses"][str(code)]
    return response["content"]["application/json"]["schema"]


def _rater(app, share_url: str, campaign_id: int, worker: str):  # type: ignore[no-untyped-def]
    """A crowdworker's browser: in by the share link, with the rating page's CSRF token."""
    from fastapi.testclient import TestClient

    browser = TestClient(app)
    path = share_url.split("://", 1)[1].split("/", 1)[1]
    assert browser.get(f"/{path}?PROLIFIC_PID={worker}", follow_redirects=False).status_code == 303
    page = browser.get(f"/annotate/{campaign_id}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page[:300]
    browser.headers["X-CSRF-Token"] = token.group(1)
    return browser


def test_the_answers_have_exactly_the_keys_the_reference_declares(app, client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Drift: a small loop through the API (corpus, campaign, ratings through the crowd's
    calls, a teacher run, a critic version, an export, a student, jobs), each answer held to
    its schema in ``/openapi.json``: no key the reference does not declare, every required
    key present, nested models included."""
    from app.core.db import session_scope
    from app.core.models import (
        CriticState,
        CriticVersion,
        Score,
        StudentModel,
        StudentState,
        TeacherEvent,
        TeacherRun,
        Triple,
    )
    from app.critic import queueing

    monkeypatch.setattr(queueing, "dispatch_scoring", lambda job_id: None)
    make_staff("root", role="admin")
    client.headers["X-CSRF-Token"] = login(client, "root")
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    seen: list[tuple[str, str, int]] = []

    def check(method: str, path: str, answer, code: int = 200) -> Any:  # type: ignore[no-untyped-def]
        assert answer.status_code == code, (method, path, answer.status_code, answer.text)
        body = answer.json()
        problems = _drift(components, _answer_schema(schema, method, path, code), body, path)
        assert not problems, (method, path, problems)
        seen.append((method, path, code))
        return body

    add_triples(4, relation="xWant", source="atomic")
    triple_ids = add_triples(4, head="PersonX reads {i}", relation="xNeed", source="atomic")
    with session_scope(write=True) as session:
        run = TeacherRun(backend="local", model="m", kind="events", params={"name": "tiny"})
        session.add(run)
        session.flush()
        run_id = run.id
        session.add(TeacherEvent(run_id=run_id, text="PersonX bakes", norm_key="k", chunk=0))
        session.add_all(
            Triple(
                head=f"PersonX bakes {i}",
                relation="xWant",
                tail=f"to eat {i}",
                norm_hash=uuid.uuid4().hex,
                source=f"teacher-run-{run_id}",
                teacher_run_id=run_id,
            )  # fmt: skip
            for i in range(3)
        )
        version = CriticVersion(
            base_model="m", state=CriticState.ready, path="/models/critic", threshold=0.5,
            metrics={"roc_auc": 0.8, "pr_curve": {"threshold": [0.5]}},
            hyperparameters={"target_recall": 0.8}, label_snapshot={"train": 3, "held_out": 1},
        )  # fmt: skip
        session.add(version)
        session.flush()
        version_id = version.id
        session.add_all(
            Score(critic_version_id=version_id, triple_id=t, p_accept=0.2 + 0.2 * i)
            for i, t in enumerate(triple_ids)
        )
        student = StudentModel(base_model="gpt2", state=StudentState.ready, path="/models/s",
                               args={"epochs": 1}, metrics={"dev_loss": [{"epoch": 1, "loss": 2.5}],
                               "best": {"loss": 2.5}}, wall_seconds=3.5)  # fmt: skip
        session.add(student)
        session.flush()
        student_id = student.id

    check("GET", "/api/corpus", client.get("/api/corpus"))
    check("GET", "/api/corpus/triples", client.get("/api/corpus/triples?limit=3"))

    # A campaign: planned, created, listed, read, rated by the crowd, paused.
    body = {"name": "drift", "relations": ["xWant", "xNeed"], "sources": ["atomic"],
            "sample_size": 3, "ratings_per_item": 1, "quota_per_annotator": 2,
            "completion_code": "C0DE"}  # fmt: skip
    check("POST", "/api/campaigns/plan", client.post("/api/campaigns/plan", json=body))
    campaign = check("POST", "/api/campaigns", client.post("/api/campaigns", json=body), 201)
    campaign_id = campaign["id"]
    check("GET", "/api/campaigns", client.get("/api/campaigns"))
    rater = _rater(app, campaign["share_url"], campaign_id, "drift-1")
    annotate = f"/api/annotate/{campaign_id}"
    served = check("GET", "/api/annotate/{campaign_id}/next", rater.get(f"{annotate}/next"))
    assert served["item"] and set(served) == {"done", "item"}
    answer = {"item_id": served["item"]["item_id"], "answer": 2, "seconds": 3.0}
    submit = "/api/annotate/{campaign_id}/submit"
    after = check(
        "POST", submit, rater.post(f"{annotate}/submit", json=answer | {"submission_id": "a"})
    )
    assert after["saved"]["rating_id"] and after["item"]
    skipped = check(
        "POST", "/api/annotate/{campaign_id}/skip",
        rater.post(f"{annotate}/skip", json={"item_id": after["item"]["item_id"]}),
    )  # fmt: skip
    again = {**answer, "submission_id": "b", "next": False, "item_id": skipped["item"]["item_id"]}
    alone = check("POST", submit, rater.post(f"{annotate}/submit", json=again))
    assert set(alone) == {"saved"}  # next: false, so no next item: no keys added by the model
    done = check("GET", "/api/annotate/{campaign_id}/next", rater.get(f"{annotate}/next"))
    assert done["done"] is True and done["completion_code"] == "C0DE", done
    # The last item leased to a second person: a third waits, then finds the study full.
    second = _rater(app, campaign["share_url"], campaign_id, "drift-2")
    last = check("GET", "/api/annotate/{campaign_id}/next", second.get(f"{annotate}/next"))
    third = _rater(app, campaign["share_url"], campaign_id, "drift-3")
    waiting = check("GET", "/api/annotate/{campaign_id}/next", third.get(f"{annotate}/next"))
    assert waiting["waiting"] is True and waiting["item"] is None and waiting["message"]
    body = {**answer, "submission_id": "c", "item_id": last["item"]["item_id"]}
    check("POST", submit, second.post(f"{annotate}/submit", json=body))
    full = check("GET", "/api/annotate/{campaign_id}/next", third.get(f"{annotate}/next"))
    assert full["full"] is True and full["item"] is None and full["message"], full
    check("GET", "/api/campaigns/{campaign_id}", client.get(f"/api/campaigns/{campaign_id}"))
    check("GET", "/api/campaigns/{campaign_id}/items",
          client.get(f"/api/campaigns/{campaign_id}/items"))  # fmt: skip
    check("POST", "/api/campaigns/{campaign_id}/state",
          client.post(f"/api/campaigns/{campaign_id}/state", json={"state": "paused"}))  # fmt: skip

    # A teacher run: planned, listed, read, rated (an evaluation campaign and its table).
    check("POST", "/api/teacher/plan", client.post("/api/teacher/plan", json={"prompts": 1}))
    check("GET", "/api/teacher/runs", client.get("/api/teacher/runs"))
    detail = check("GET", "/api/teacher/runs/{run_id}", client.get(f"/api/teacher/runs/{run_id}"))
    assert detail["sample"]["events"] and detail["sample"]["triples"]
    opened = check("POST", "/api/teacher/runs/{run_id}/campaign",
                   client.post(f"/api/teacher/runs/{run_id}/campaign"), 201)  # fmt: skip
    check("GET", "/api/student/evaluations/{campaign_id}",
          client.get(f"/api/student/evaluations/{opened['campaign_id']}"))  # fmt: skip

    # A critic version: listed, read, previewed, activated; the score already asked for.
    check("GET", "/api/critic/versions", client.get("/api/critic/versions"))
    check("GET", "/api/critic/versions/{version_id}",
          client.get(f"/api/critic/versions/{version_id}"))  # fmt: skip
    check("GET", "/api/critic/preview", client.get("/api/critic/preview?rule=kept&value=0.5"))
    activated = check("POST", "/api/critic/versions/{version_id}/activate",
                      client.post(f"/api/critic/versions/{version_id}/activate"))  # fmt: skip
    assert activated["score_job_id"]
    check("POST", "/api/critic/score", client.post("/api/critic/score", json={}))

    # An export (its job queued, no worker): previewed, read, its job cancelled and retried,
    # deleted; the student listed and read.
    check(
        "POST", "/api/exports/preview", client.post("/api/exports/preview", json={"critic": "none"})
    )
    started = client.post("/api/exports", json={"critic": "none"})
    assert started.status_code == 202, started.text
    export_id, job_id = started.json()["export_id"], started.json()["job_id"]
    export = check("GET", "/api/exports/{export_id}", client.get(f"/api/exports/{export_id}"))
    assert export["job"]["id"] == job_id
    check("GET", "/api/exports", client.get("/api/exports"))
    check("POST", "/api/jobs/{job_id}/cancel", client.post(f"/api/jobs/{job_id}/cancel"))
    retried = check(
        "POST", "/api/jobs/{job_id}/retry", client.post(f"/api/jobs/{job_id}/retry"), 202
    )
    client.post(f"/api/jobs/{retried['job_id']}/cancel")
    check("DELETE", "/api/exports/{export_id}", client.delete(f"/api/exports/{export_id}"))
    check("POST", "/api/jobs/sweep", client.post("/api/jobs/sweep"))
    check("GET", "/api/student/runs", client.get("/api/student/runs"))
    check("GET", "/api/student/runs/{model_id}", client.get(f"/api/student/runs/{student_id}"))

    # Every operation answered by a model of app.web.answers was held to its schema here.
    names = {model.__name__ for model in _answer_models()}
    typed = {
        (m, p)
        for m, p, op in _operations(schema)
        for r in op["responses"].values()
        if _ref_name(r.get("content", {}).get("application/json", {}).get("schema", {})) in names
    }
    missed = typed - {(m, p) for m, p, _c in seen}
    assert not missed, sorted(missed)
