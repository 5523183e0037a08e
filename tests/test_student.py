"""The student: a tiny causal LM trains on a real export through the API and a worker, writes
inferences through ``skd student generate`` (a subprocess), and an evaluation campaign mixes
its inferences with the teacher's and the human references; annotators rate it through the
JSON API and the table's numbers equal a recomputation by hand from the ratings."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.core.jobs import run_job
from app.core.models import (
    CampaignItem,
    EvaluationOutput,
    Export,
    Job,
    Rating,
    StudentModel,
    Triple,
)
from app.export.writers import student_source
from tests.conftest import ROOT, csrf_of
from tests.student_helpers import build_tiny_causal_lm
from tests.test_export import RELATIONS, build_corpus, export

# A small learning rate would leave the random tiny model writing noise; this one learns the
# corpus's few words within two epochs.
TRAIN = {"epochs": 2, "batch_size": 8, "learning_rate": 0.005, "max_length": 48}


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [
        student_source(f"PersonX bakes bread {h}", relation) + f" to eat slice {h}-{t}"
        for h in range(60)
        for t in range(3)
        for relation in RELATIONS
    ]
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"), texts)


def _real_hashes() -> None:
    """build_corpus gives random dedup keys; the evaluation looks triples up by the real one."""
    from app.corpus.normalize import triple_hash

    with session_scope(write=True) as session:
        for triple in session.scalars(select(Triple)):
            triple.norm_hash = triple_hash(triple.head, triple.relation, triple.tail)


def _export_id() -> int:
    with session_scope() as session:
        return session.scalars(select(Export.id).order_by(Export.id.desc())).first()


def _wait(client: TestClient, job_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["finished"]:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _skd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wilson(k: int, n: int) -> tuple[float, float]:
    # Written out again from the textbook formula, not imported: the table must agree with it.
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def _annotator(app, share: str, worker: str) -> TestClient:  # type: ignore[no-untyped-def]
    client = TestClient(app)
    entry = client.get(
        f"/c/{share}?PROLIFIC_PID={worker}&STUDY_ID=s1&SESSION_ID={worker}-x",
        follow_redirects=False,
    )
    assert entry.status_code == 303, entry.text
    return client


def test_train_generate_evaluate_rate_and_the_table_by_hand(  # type: ignore[no-untyped-def]
    app, staff_client, celery_worker, tiny_causal, tmp_path
) -> None:
    build_corpus(heads=40)
    _real_hashes()
    folder = export({"threshold": 0.0, "formats": ["student", "jsonl"]}, tmp_path / "graph")
    export_id = _export_id()
    assert (folder / "student" / "test.jsonl").is_file()

    # --- train through the API, on a worker ---------------------------------------------------
    reply = staff_client.post(
        "/api/student/runs", json={"export_id": export_id, "base_model": str(tiny_causal), **TRAIN}
    )
    assert reply.status_code == 202, reply.text
    model_id, job_id = reply.json()["model_id"], reply.json()["job_id"]
    job = _wait(staff_client, job_id)
    assert job["state"] == "succeeded", job["error"]
    assert job["done"] == job["total"] and job["total"] > 0
    model = staff_client.get(f"/api/student/runs/{model_id}").json()
    assert model["state"] == "ready"
    assert [round(e["epoch"]) for e in model["dev_loss"]] == [1, 2]
    assert model["best_dev_loss"] == min(e["loss"] for e in model["dev_loss"])
    card = (Path(model["path"]) / "README.md").read_text()
    assert f"export #{export_id}" in card and str(tiny_causal) in card
    assert "| 2 |" in card and "wall time" in card and "critic version" in card
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(model["path"]).config.n_layer == 2

    # --- generate through the real CLI --------------------------------------------------------
    out = tmp_path / "inferences.jsonl"
    done = _skd(
        "student", "generate", "--model", str(model_id), "--export", str(export_id),
        "--out", str(out), "--decoding", "beam", "-n", "2", "--batch-size", "4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    test_queries = {
        json.loads(line)["source"] for line in (folder / "student" / "test.jsonl").open()
    }
    assert rows and {row["query"] for row in rows} <= test_queries
    for row in rows:
        assert row["rank"] in (0, 1) and row["model"] == model_id
        assert row["tail"] and "\n" not in row["tail"] and "." not in row["tail"]
        assert isinstance(row["score"], float) and row["score"] < 0
        assert row["query"] == student_source(row["head"], row["relation"])

    # --- the evaluation campaign --------------------------------------------------------------
    spec = {
        "name": "student vs teacher",
        "export_id": export_id,
        "student_model_ids": [model_id],
        "heads": 3,
        "teacher_sources": ["teacher"],
        "reference_sources": ["human"],
        "n": 2,
        "decoding": "top-p",
        "ratings_per_item": 3,
    }
    reply = staff_client.post("/api/student/evaluations", json=spec)
    assert reply.status_code == 202, reply.text
    job = _wait(staff_client, reply.json()["job_id"])
    assert job["state"] == "succeeded", job["error"]
    campaign_id = job["result"]["campaign_id"]
    with session_scope() as session:
        outputs = session.execute(
            select(EvaluationOutput.system, EvaluationOutput.triple_id).where(
                EvaluationOutput.campaign_id == campaign_id
            )
        ).all()
        items = dict(
            session.execute(
                select(CampaignItem.triple_id, CampaignItem.id).where(
                    CampaignItem.campaign_id == campaign_id
                )
            ).all()
        )
        sources = dict(
            session.execute(
                select(Triple.id, Triple.source).where(Triple.id.in_([t for _s, t in outputs]))
            ).all()
        )
    systems = {system for system, _t in outputs}
    assert f"student-{model_id}" in systems and "teacher" in systems
    assert set(items) == {triple_id for _s, triple_id in outputs}  # one item per triple
    for system, triple_id in outputs:
        if system == "teacher":
            assert sources[triple_id] == "teacher"
        elif system == "human":
            assert sources[triple_id] == "human"
    test_heads = {
        json.loads(line)["source"].split(" </head>")[0].removeprefix("<head> ")
        for line in (folder / "student" / "test.jsonl").open()
    }
    with session_scope() as session:
        heads = set(session.scalars(select(Triple.head).where(Triple.id.in_(list(items)))))
    assert heads <= test_heads and len(heads) <= 3

    # --- three annotators rate through the JSON API, blind --------------------------------------
    with session_scope() as session:
        share = session.execute(
            select(CampaignItem.campaign_id).where(CampaignItem.campaign_id == campaign_id)
        ).first()
        from app.core.models import Campaign

        share = session.get(Campaign, campaign_id).share_token
    answers = (2, 1, -1, -2, -9)
    for number in range(3):
        worker = _annotator(app, share, f"w{number}-{uuid.uuid4().hex[:6]}")
        step = worker.get(f"/api/annotate/{campaign_id}/next").json()
        served = 0
        while not step.get("done"):
            item = step["item"]
            text = json.dumps(item)
            assert "student" not in text and "teacher" not in text and "source" not in item
            answer = answers[(item["item_id"] * 7 + number * 3) % len(answers)]
            step = worker.post(
                f"/api/annotate/{campaign_id}/submit",
                json={
                    "item_id": item["item_id"],
                    "answer": answer,
                    "submission_id": uuid.uuid4().hex,
                    "seconds": 3,
                },
            ).json()
            served += 1
        assert served == len(items)

    # --- the table equals a recomputation by hand ---------------------------------------------
    table = staff_client.get(f"/api/student/evaluations/{campaign_id}").json()
    with session_scope() as session:
        votes = session.execute(
            select(Rating.triple_id, Rating.answer).where(Rating.item_id.in_(list(items.values())))
        ).all()
        tails = dict(
            session.execute(select(Triple.id, Triple.tail).where(Triple.id.in_(list(items)))).all()
        )
    tally: dict[int, Counter] = defaultdict(Counter)
    for triple_id, answer in votes:
        if answer != -9:
            tally[triple_id]["yes" if answer > 0 else "no"] += 1
    label = {t: (c["yes"] > c["no"]) if c["yes"] != c["no"] else None for t, c in tally.items()}
    by_system: dict[str, list[int]] = defaultdict(list)
    for system, triple_id in outputs:
        by_system[system].append(triple_id)
    assert [row["system"] for row in table["per_system"]] == table["systems"]
    expected = {}
    for row in table["per_system"]:
        ids = by_system[row["system"]]
        decided = [label.get(t) for t in ids if label.get(t) is not None]
        k, n = sum(decided), len(decided)
        expected[row["system"]] = (k, n)
        assert (row["inferences"], row["decided"], row["accepted"]) == (len(ids), n, k)
        if n:
            low, high = _wilson(k, n)
            assert row["acceptability"] == pytest.approx(k / n)
            assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)
        words = [tails[t].lower().split() for t in ids]
        assert row["mean_words"] == pytest.approx(sum(map(len, words)) / len(words))
        bigrams = [tuple(w[i : i + 2]) for w in words for i in range(len(w) - 1)]
        unigrams = [u for w in words for u in w]
        assert row["distinct_1"] == pytest.approx(len(set(unigrams)) / len(unigrams))
        if bigrams:
            assert row["distinct_2"] == pytest.approx(len(set(bigrams)) / len(bigrams))
    assert expected[f"student-{model_id}"][1] > 0 and expected["teacher"][1] > 0
    assert "human" in expected and table["rated_items"] == len(items)
    for diff in table["differences"]:
        (k1, n1), (k2, n2) = expected[diff["system"]], expected[diff["versus"]]
        if n1 and n2:
            assert diff["difference"] == pytest.approx(k1 / n1 - k2 / n2)
            pooled = (k1 + k2) / (n1 + n2)
            se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
            if se:
                z = (k1 / n1 - k2 / n2) / se
                assert diff["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
            assert diff["ci_low"] <= diff["difference"] <= diff["ci_high"]

    # --- the CSV says the same; the pages show it ---------------------------------------------
    download = staff_client.get(f"/student/evaluations/{campaign_id}/table.csv")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(download.text)))
    for row in table["per_system"]:
        line = next(r for r in parsed if r["table"] == "system" and r["system"] == row["system"])
        assert int(line["accepted"]) == row["accepted"] and int(line["decided"]) == row["decided"]
    printed = _skd("student", "table", str(campaign_id), "--csv", str(tmp_path / "t.csv"))
    assert printed.returncode == 0, printed.stderr
    assert f"student-{model_id}" in printed.stdout and "Newcombe" in printed.stdout
    assert (tmp_path / "t.csv").read_text() == download.text
    page = staff_client.get(f"/student/evaluations/{campaign_id}")
    assert page.status_code == 200 and f"student-{model_id}" in page.text
    assert "Wilson" in page.text and "Download CSV" in page.text
    assert 'hx-get="/student/evaluations/' in staff_client.get(f"/campaigns/{campaign_id}").text
    assert f"/student/runs/{model_id}" in staff_client.get("/student").text


def test_an_inference_two_systems_wrote_is_one_item_credited_to_both(  # type: ignore[no-untyped-def]
    engine, tiny_causal, tmp_path, monkeypatch
) -> None:
    """A student that writes exactly the teacher's inference gets the teacher's triple: one
    item, rated once, and its label counts for both systems."""
    from app.student import evaluation
    from app.student.evaluation import EvaluationSpec, build_evaluation
    from app.student.runs import run_training_job, start_training
    from app.student.table import evaluation_table, table_csv

    build_corpus(heads=30)
    _real_hashes()
    export({"threshold": 0.0, "formats": ["student"]}, tmp_path / "graph")
    started = start_training(_export_id(), str(tiny_causal), max_steps=1, batch_size=4)
    run_job(started.job_id, run_training_job)

    echoed: set[tuple[str, str]] = set()

    def echo_the_teacher(model, tokenizer, queries, decoding, progress):  # type: ignore[no-untyped-def]
        with session_scope() as session:
            for query in queries[::2]:  # says nothing for every other query
                tail = session.scalars(
                    select(Triple.tail).where(
                        Triple.head == query.head,
                        Triple.relation == query.relation,
                        Triple.source == "teacher",
                    )
                ).first()
                if tail is not None:  # written as the student would: other case, a period
                    echoed.add((query.head, query.relation))
                    yield {**_row(query), "tail": tail.upper() + ".", "score": -1.0}

    def _row(query):  # type: ignore[no-untyped-def]
        return {"head": query.head, "relation": query.relation, "query": query.prompt, "rank": 0}

    monkeypatch.setattr(evaluation, "generate", echo_the_teacher)
    spec = EvaluationSpec(
        name="echo",
        export_id=_export_id(),
        student_model_ids=[started.model_id],
        heads=None,
        decoding="beam",
        n=20,  # every teacher inference of each query, so the echoed one is among them
        teacher_sources=["teacher"],
        ratings_per_item=1,
    )
    result = build_evaluation(spec)
    # the queries it left unanswered are counted and said, not silently dropped
    student_name = f"student-{started.model_id}"
    assert 0 < result["answered"][student_name] == len(echoed) < result["queries"]
    assert f"{result['queries'] - len(echoed)} from {student_name}" in result["message"]
    with session_scope(write=True) as session:
        outputs = session.execute(
            select(EvaluationOutput.system, EvaluationOutput.triple_id).where(
                EvaluationOutput.campaign_id == result["campaign_id"]
            )
        ).all()
        student = {t for s, t in outputs if s.startswith("student-")}
        teacher = {t for s, t in outputs if s == "teacher"}
        assert student and student <= teacher  # no new triple: the teacher's, credited twice
        new = session.scalars(select(Triple.id).where(Triple.source.like("student-%"))).all()
        assert new == []
        items = session.execute(
            select(CampaignItem.id, CampaignItem.triple_id).where(
                CampaignItem.campaign_id == result["campaign_id"]
            )
        ).all()
        assert len(items) == len(teacher)
        shared_item = next(item for item, triple in items if triple in student)
        shared_triple = next(triple for item, triple in items if item == shared_item)
        session.add(
            Rating(
                triple_id=shared_triple,
                item_id=shared_item,
                answer=2,
                submission_id=uuid.uuid4().hex,
            )
        )
        table = evaluation_table(session, result["campaign_id"])
    cells = {row["system"]: row for row in table["per_system"]}
    # the table says how many queries each system answered, beside what it wrote
    assert cells[student_name]["queries_answered"] == len(echoed)
    assert cells[student_name]["queries"] == result["queries"] == cells["teacher"]["queries"]
    assert cells["teacher"]["queries_answered"] == result["answered"]["teacher"]
    assert "queries_answered" in table_csv(table).splitlines()[0]
    assert cells[f"student-{started.model_id}"]["accepted"] == 1
    assert cells["teacher"]["accepted"] == 1
    assert table["shared_triples"] == len(student)


def test_wilson_and_newcombe_match_published_values() -> None:
    from app.student.table import newcombe, two_proportion_z, wilson

    # Newcombe (1998), Statistics in Medicine 17, table I and table II (example: 56/70 - 48/80).
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert newcombe(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    from scipy.stats import norm

    # pooled p = 104/150: z = 0.2 / sqrt(p (1 - p) (1/70 + 1/80)) = 2.6502
    z, p = two_proportion_z(56, 70, 48, 80)
    assert z == pytest.approx(2.6502, abs=1e-4) and p == pytest.approx(2 * norm.sf(z))


def test_bad_export_and_a_base_that_cannot_load_fail_clearly(  # type: ignore[no-untyped-def]
    staff_client, tmp_path
) -> None:
    reply = staff_client.post("/api/student/runs", json={"export_id": 999})
    assert reply.status_code == 422
    assert reply.json()["detail"] == [
        {"loc": ["body", "export_id"], "msg": "there is no export 999"}
    ]
    form = staff_client.post(
        "/student/evaluations",
        data={"export_id": "999", "heads": "0", "n": "1", "csrf_token": csrf_of(staff_client)},
    )
    assert form.status_code == 422
    assert 'id="err-export_id"' in form.text and "there is no export 999" in form.text
    assert "must be at least 1" in form.text  # heads, next to its field
    reply = staff_client.post("/api/student/evaluations", json={"name": "x", "export_id": 999})
    assert reply.status_code == 422 and "export_id" in str(reply.json()["detail"])
    cli = _skd("student", "train", "--export", "999")
    assert cli.returncode == 2 and "--export: there is no export 999" in cli.stderr

    from app.student.runs import run_training_job, start_training

    build_corpus(heads=20)
    export({"threshold": 0.0, "formats": ["student"]}, tmp_path / "graph")
    missing = tmp_path / "no-such-model"
    started = start_training(_export_id(), str(missing))
    shutil.rmtree(started.path, ignore_errors=True)  # an earlier test's model of the same id
    with pytest.raises(ValueError, match="cannot load the base model"):
        run_job(started.job_id, run_training_job)
    with session_scope() as session:
        job = session.get(Job, started.job_id)
        model = session.get(StudentModel, started.model_id)
        assert job.state.value == "failed" and str(missing) in job.error
        assert model.state.value == "failed" and "cannot load the base model" in model.error
    assert not Path(started.path).exists()
    assert not started.path.with_name(f".{started.path.name}.partial").exists()


def test_the_training_form_offers_only_exports_with_student_files(  # type: ignore[no-untyped-def]
    staff_client, tmp_path
) -> None:
    """An export made without a critic reads "no critic" (it read "critic vNone"), and one made
    without the student format is listed but cannot be picked: training would refuse it."""
    import re

    build_corpus(heads=20)
    export({"critic": "none", "formats": ["student"]}, tmp_path / "with")
    with_files = _export_id()
    export({"critic": "none", "formats": ["jsonl"]}, tmp_path / "without")
    without = _export_id()
    page = staff_client.get("/student").text
    form = page[
        page.index('name="export_id"') : page.index("</select>", page.index('name="export_id"'))
    ]
    options = dict(re.findall(r'<option value="(\d+)"([^>]*>[^<]*)</option>', form))
    assert "vNone" not in form
    assert "no critic" in options[str(with_files)] and "disabled" not in options[str(with_files)]
    assert "disabled" in options[str(without)] and "no student files" in options[str(without)]


def test_the_evaluation_form_redirects_so_a_reload_starts_nothing(  # type: ignore[no-untyped-def]
    staff_client, tmp_path
) -> None:
    """The form answered its post with the page itself, so a reload offered to post again and
    would have opened a second campaign. It redirects to a page that shows the started job."""
    build_corpus(heads=20)
    export({"critic": "none", "formats": ["student"]}, tmp_path / "graph")
    form = {"csrf_token": csrf_of(staff_client), "name": "reload", "export_id": str(_export_id()),
            "teacher": "1", "teacher_sources": "teacher", "heads": "2", "n": "1",
            "ratings_per_item": "1"}  # fmt: skip
    posted = staff_client.post("/student/evaluations", data=form, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    landing = posted.headers["location"]
    job_id = int(landing.split("evaluation_job=")[1].split("#")[0])

    def evaluation_jobs() -> int:
        with session_scope() as session:
            return len(session.scalars(select(Job).where(Job.kind == "student_evaluate")).all())

    for _reload in range(2):
        page = staff_client.get(landing)
        assert page.status_code == 200
        assert 'id="evaluation-started"' in page.text and f'href="/jobs/{job_id}"' in page.text
    assert evaluation_jobs() == 1
    # Another kind of job, or none, shows no evaluation panel.
    with session_scope() as session:
        export_job = session.scalars(select(Job.id).where(Job.kind != "student_evaluate")).first()
    for other in (f"/student?evaluation_job={export_job}", "/student?evaluation_job=999999"):
        assert 'id="evaluation-started"' not in staff_client.get(other).text


def test_the_model_card_names_a_no_critic_export_and_default_settings_in_words() -> None:
    """The card said "critic version None" and "bf16 | None" for what the researcher chose:
    no critic, and the default."""
    from app.student.runs import model_card

    figures = {"train_examples": 9, "val_examples": 1, "skipped_examples": 0, "parameters": 10,
               "bf16": False, "device": "cpu", "dev_loss": [], "best": None, "train_loss": 1.0,
               "steps": 1, "wall_seconds": 1.0, "train_runtime_s": 1.0}  # fmt: skip
    export_row = {"id": 4, "critic_version_id": None, "threshold": None, "params": {}}
    card = model_card(7, export_row, {"base_model": "tiny", "bf16": None}, figures)
    assert "export #4, no critic" in card and "None" not in card
    assert "| bf16 | default |" in card
    with_critic = model_card(
        7, {**export_row, "critic_version_id": 2, "threshold": 0.5}, {"base_model": "tiny"}, figures
    )
    assert "export #4, critic version 2, threshold 0.5000" in with_critic


def test_cancel_stops_training_at_the_next_step_and_leaves_no_folder(  # type: ignore[no-untyped-def]
    engine, tiny_causal, tmp_path
) -> None:
    import threading

    from app.core.job_control import cancel_job
    from app.core.jobs import JobCancelled
    from app.student.runs import run_training_job, start_training

    build_corpus(heads=40)
    export({"threshold": 0.0, "formats": ["student"]}, tmp_path / "graph")
    started = start_training(_export_id(), str(tiny_causal), epochs=500, batch_size=2)
    shutil.rmtree(started.path, ignore_errors=True)
    outcome: list[BaseException] = []

    def train() -> None:
        try:
            run_job(started.job_id, run_training_job)
        except BaseException as exc:  # noqa: BLE001 - the thread reports what ended it
            outcome.append(exc)

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with session_scope() as session:
            if session.get(Job, started.job_id).done >= 2:
                break
        time.sleep(0.2)
    cancel_job(started.job_id, by="test")
    thread.join(60)
    assert not thread.is_alive(), "training went on after the cancel"
    assert outcome and isinstance(outcome[0], JobCancelled)
    with session_scope() as session:
        job = session.get(Job, started.job_id)
        model = session.get(StudentModel, started.model_id)
        assert job.state.value == "cancelled" and job.done < job.total
        assert model.state.value == "cancelled"
    assert not started.path.exists()
    assert not started.path.with_name(f".{started.path.name}.partial").exists()
