"""The API reference is what a script writer reads: ``/openapi.json`` (and ``/docs`` from it)
lists the JSON API and only it, every operation with a summary and a readable id, the teacher
run's body with its fields; the downloads a script needs are under ``/api/`` too."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from app.web.docs import SECTIONS
from tests.conftest import add_triples, make_staff

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
