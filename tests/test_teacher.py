"""The teacher: prompts and names, both backends, the filters, runs as resumable chunked jobs,
and bad parameters refused before any work.

The local backend runs a tiny GPT-2 built from a config here, with a BPE tokenizer trained
here, taught for a few dozen steps to continue ``N. Event:`` with ``PersonX …``. The HTTP
backend talks to a small OpenAI-compatible server on a loopback port (tests/teacher_helpers.py)
that can answer 429, 500, slowly, or with garbage. One slow test uses the packaged SmolLM2.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import shared_file
from tests.teacher_helpers import FakeOpenAI, train_tiny_gpt2


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


# --- prompts -----------------------------------------------------------------------------------


def test_inference_prompt_uses_names_and_the_output_maps_back() -> None:
    from app.teacher.postprocess import FilterSettings, clean_inference
    from app.teacher.prompts import ExamplePool, default_template, inference_prompt

    pool = ExamplePool().inferences["xWant"]
    prompt = inference_prompt(
        default_template("xWant"), pool, "PersonX gives PersonY a ride", 3, random.Random(4)
    )
    assert "PersonX" not in prompt.text and "PersonY" not in prompt.text
    x, y = prompt.names["X"], prompt.names["Y"]
    assert f"Situation: {x} gives {y} a ride." in prompt.text
    assert prompt.text.rstrip().endswith(f"Afterwards, {x} wants")
    assert len(prompt.examples) == 3
    text, reason = clean_inference(f" to thank {y} and {x}'s mum\n7. next", prompt.names,
                                   FilterSettings())  # fmt: skip
    assert reason is None
    assert text == "to thank PersonY and PersonX's mum"


def test_event_filters_count_what_they_remove() -> None:
    from app.teacher.postprocess import FilterSettings, clean_event

    settings = FilterSettings(max_event_words=6)
    assert clean_event(" PersonX bakes a cake.\n3. Event: x", settings) == (
        "PersonX bakes a cake",
        None,
    )
    assert clean_event(" Alice bakes a cake", settings) == (None, "not_personx")
    assert clean_event(" PersonX", settings) == (None, "too_short")
    assert clean_event(" PersonX goes to the big old market today", settings) == (None, "too_long")
    assert clean_event(" PersonX eats 🍕", settings) == (None, "charset")
    assert clean_event("\n", settings) == (None, "empty")


def test_pools_and_templates_from_files_name_the_bad_line(tmp_path: Path) -> None:
    from app.teacher.params import TeacherParamsError, check_params
    from app.teacher.prompts import read_example_pool, read_seed_events

    relations = frozenset({"xWant", "xReact"})
    pool = read_example_pool(shared_file("fewshot_examples.tsv"), frozenset({
        "xWant", "xReact", "xAttr", "xEffect", "xIntent", "xNeed", "HinderedBy"}))  # fmt: skip
    assert len(pool["xWant"]) == 19 and len(pool["HinderedBy"]) == 21
    assert len(read_seed_events(shared_file("seed_events.txt"))) == 100
    bad = tmp_path / "pool.tsv"
    bad.write_text("PersonX eats\txWant\tto rest\nPersonX runs\txFly\tfast\n")
    with pytest.raises(ValueError, match=r"pool.tsv:2: field 'relation': unknown relation 'xFly'"):
        read_example_pool(bad, relations)
    with pytest.raises(TeacherParamsError) as caught:
        check_params({"relations": ["xWant"], "templates": {"xWant": {"query": "{n}. {who}"}}},
                     relations)  # fmt: skip
    assert "unknown field {who}" in caught.value.errors["templates.xWant"]


# --- bad parameters: refused before any work ---------------------------------------------------


BAD = [
    ({"relations": ["xFly"]}, "relations", "unknown relation 'xFly'"),
    ({"events": {"n": 0}}, "events.n", "must be between 1 and 128"),
    (
        {"backend": {"type": "openai", "model": "m", "base_url": "localhost:8080"}},
        "backend.base_url",
        "is not an http:// or https:// URL",
    ),  # fmt: skip
    (
        {"backend": {"type": "openai", "model": "m", "base_url": "http://x/v1", "api_key": "s"}},
        "backend.api_key",
        "never stored",
    ),  # fmt: skip
    (
        {"kind": "inferences", "relations": ["xWant"], "heads": {"kind": "run", "value": 99}},
        "heads.value",
        "no teacher run 99",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("params", "field", "words"), BAD)
def test_api_refuses_bad_parameters_before_any_work(
    staff_client: Any, params: dict, field: str, words: str
) -> None:
    from app.core.db import session_scope
    from app.core.models import Job, TeacherRun

    answer = staff_client.post("/api/teacher/runs", json=params)
    assert answer.status_code == 422, answer.text
    detail = {".".join(d["loc"][1:]): d["msg"] for d in answer.json()["detail"]}
    assert words in detail[field]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TeacherRun)) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_inferences_for_a_run_that_has_written_nothing_are_refused(staff_client: Any) -> None:
    """Pointing an inference run at an events run still queued (or one that failed empty)
    would end "succeeded" with nothing asked: it is refused up front, naming the run."""
    from app.core.db import session_scope
    from app.core.models import TeacherRun

    with session_scope(write=True) as session:
        empty = TeacherRun(backend="local", model="m", kind="events")
        session.add(empty)
        session.flush()
        empty_id = empty.id
    params = {
        "kind": "inferences",
        "relations": ["xWant"],
        "heads": {"kind": "run", "value": empty_id},
    }
    answer = staff_client.post("/api/teacher/runs", json=params)
    assert answer.status_code == 422, answer.text
    detail = {".".join(d["loc"][1:]): d["msg"] for d in answer.json()["detail"]}
    assert f"teacher run {empty_id} (events, queued) has written no events" in detail["heads.value"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TeacherRun)) == 1


def test_the_follow_up_form_carries_the_events_runs_model_and_refuses_an_unknown_run(
    staff_client: Any,
) -> None:
    """``/teacher?events_of_run=N`` (the events-only run's "Write inferences" link) fills the
    form with run N's events as heads and the server, model and sampling that wrote them."""
    from app.core.db import session_scope
    from app.core.models import TeacherRun

    backend = {"type": "openai", "model": "big-teacher", "base_url": "http://10.0.0.7:8000/v1",
               "mode": "chat", "api_key_env": "LAB_KEY", "concurrency": 3, "timeout": 90.0,
               "max_retries": 2, "batch_size": None}  # fmt: skip
    with session_scope(write=True) as session:
        run = TeacherRun(
            backend="openai",
            model="big-teacher",
            kind="events",
            params={"backend": backend, "inferences": {"n": 7, "top_p": 0.4}, "seed": 5},
        )
        session.add(run)
        session.flush()
        run_id = run.id
    page = staff_client.get(f"/teacher?events_of_run={run_id}")
    assert page.status_code == 200
    html = page.text
    assert 'name="kind" value="inferences" checked' in html
    assert '<option value="run" selected>' in html
    assert f'name="heads_value" value="{run_id}"' in html
    assert 'name="backend" value="openai" checked' in html
    for name, value in (("model", "big-teacher"), ("base_url", "http://10.0.0.7:8000/v1"),
                        ("api_key_env", "LAB_KEY"), ("concurrency", "3"), ("inference_n", "7"),
                        ("inference_top_p", "0.4"), ("seed", "5")):  # fmt: skip
        assert re.search(rf'name="{name}"[^>]*value="{re.escape(value)}"', html), name
    assert len(re.findall(r'name="relations" value="\w+" checked', html)) == 7  # every relation
    assert staff_client.get("/teacher?events_of_run=987654").status_code == 404


def test_the_cli_writes_events_then_their_inferences_in_two_commands(
    settings: Any, engine: Any
) -> None:
    """``skd generate events`` without ``--relation`` writes events only and says the next
    command; that command writes inferences for exactly those events."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    def skd(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "generate", *args], cwd=ROOT, capture_output=True,
            text=True, timeout=180, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    with FakeOpenAI() as server:
        backend = ["--backend", "openai", "--base-url", server.base_url, "--model", "fake"]
        said = skd("events", *backend, "--prompts", "2", "--n", "2", "--no-background")
        run_id = int(re.search(r"teacher run #(\d+)", said).group(1))  # type: ignore[union-attr]
        hint = f"next, `skd generate inferences --from-run {run_id}`"
        assert hint in said
        said = skd(
            "inferences", *backend, "--from-run", str(run_id), "--relation", "xWant",
            "--n", "2", "--no-background",
        )  # fmt: skip
        assert "next, `skd generate inferences" not in said
    from app.core.db import session_scope
    from app.core.models import Triple

    with session_scope() as session:
        triples = session.execute(select(Triple.source, Triple.relation, Triple.head)).all()
    # Only the second run wrote triples: xWant inferences for the first run's events.
    assert triples and {t.source for t in triples} == {f"teacher-run-{run_id + 1}"}
    assert {t.relation for t in triples} == {"xWant"}
    assert all(t.head.startswith("PersonX tries hobby") for t in triples)


def test_cli_refuses_bad_parameters_before_any_work(settings: Any, engine: Any) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "generate", "events", "--n", "0", "--relation", "xFly"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                   "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "events.n: must be between 1 and 128" in said
    assert "relations: unknown relation 'xFly'" in said
    from app.core.db import session_scope
    from app.core.models import TeacherRun

    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TeacherRun)) == 0


# --- the local backend --------------------------------------------------------------------------


def test_local_backend_batches_with_left_padding(tiny_gpt2: Path) -> None:
    """Greedy output of a prompt is the same alone and in a batch with longer prompts (the
    padding goes to the left), and each prompt gets n sequences with log-probabilities."""
    from app.teacher.backends import LocalBackend, Sampling
    from app.teacher.prompts import DEFAULT_EVENTS, default_template, event_prompt

    backend = LocalBackend(str(tiny_gpt2), batch_size=8)
    rng = random.Random(0)
    prompts = [event_prompt(default_template("events"), list(DEFAULT_EVENTS), k, rng).text
               for k in (1, 3, 5)]  # fmt: skip
    greedy = Sampling(n=1, temperature=0, max_tokens=8)
    alone = backend.generate(prompts[:1], greedy)[0][0].text
    batched = backend.generate(prompts, greedy)
    assert batched[0][0].text == alone
    # With n > 1 each prompt is read once and its cache repeated: the same greedy text.
    twice = backend.generate(prompts, Sampling(n=2, temperature=0, max_tokens=8))
    assert [[g.text for g in gens] for gens in twice] == [[g[0].text] * 2 for g in batched]
    assert twice[1][0].logprob == pytest.approx(batched[1][0].logprob, abs=1e-4)
    sampled = backend.generate(prompts, Sampling(n=4, top_p=0.9, max_tokens=8, seed=1))
    assert [len(g) for g in sampled] == [4, 4, 4]
    assert all(g.logprob is not None and g.logprob <= 0 for gens in sampled for g in gens)
    assert all("\n" not in g.text for gens in sampled for g in gens)


def test_a_run_with_the_local_backend_writes_events_then_triples(
    tiny_gpt2: Path, settings: Any, engine: Any
) -> None:
    from app.core.db import session_scope
    from app.core.models import JobState, TeacherChunk, TeacherEvent, TeacherRun, Triple
    from app.teacher.planning import create_run
    from app.teacher.postprocess import FILTERS
    from app.teacher.runs import run_inline

    run_id, job_id = create_run({
        "backend": {"model": str(tiny_gpt2), "batch_size": 4},
        "prompts": 6, "examples": 3, "relations": ["xWant", "xReact"], "chunk_size": 4,
        "events": {"n": 4, "max_tokens": 10}, "inferences": {"n": 2, "max_tokens": 8},
        "inference_examples": 2,
    })  # fmt: skip
    result = run_inline(job_id)
    assert result["state"] == JobState.succeeded.value
    with session_scope() as session:
        run = session.get(TeacherRun, run_id)
        assert run is not None and run.state.value == "succeeded"
        counts = run.counts
        events = list(session.scalars(select(TeacherEvent).where(TeacherEvent.run_id == run_id)))
        triples = list(session.scalars(select(Triple).where(Triple.teacher_run_id == run_id)))
        chunks = session.scalar(select(func.count()).select_from(TeacherChunk))
    # Every generation is either kept or counted under exactly one filter.
    for phase in ("events", "inferences"):
        c = counts[phase]
        assert c["generated"] == c["kept"] + sum(c[f] for f in FILTERS), c
    assert counts["events"]["generated"] == 6 * 4
    assert events and all(e.text.startswith("PersonX") for e in events)
    assert len(events) == counts["events"]["kept"]
    assert counts["inferences"]["generated"] == len(events) * 2 * 2
    assert len(triples) == counts["inferences"]["kept"]
    assert {t.source for t in triples} <= {f"teacher-run-{run_id}"}
    assert {t.head for t in triples} <= {e.text for e in events}
    assert all(t.meta and "logprob" in t.meta and t.meta["examples"] for t in triples)
    assert chunks == 2 + counts["chunks"]["inferences"]


# --- the HTTP backend ----------------------------------------------------------------------------


def _http(server: FakeOpenAI, **kwargs: Any) -> Any:
    from app.teacher.backends import OpenAIBackend, RetryPolicy

    waits: list[float] = []
    retry = kwargs.pop("retry", None) or RetryPolicy(max_retries=3, sleep=waits.append)
    backend = OpenAIBackend(base_url=server.base_url, model="fake", retry=retry, **kwargs)
    return backend, waits


def test_http_completions_and_chat_with_n_and_logprobs() -> None:
    from app.teacher.backends import Sampling

    with FakeOpenAI() as server:
        for mode in ("completions", "chat"):
            backend, _ = _http(server, mode=mode)
            out = backend.generate(["1. Event: PersonX sings\n2. Event:"] * 3, Sampling(n=3))
            assert [len(g) for g in out] == [3, 3, 3]
            assert out[0][0].text.startswith(" PersonX tries hobby")
            assert "\n" not in out[0][0].text  # the stop string reached the server
            assert sorted(g.logprob for g in out[0]) == [-1.125, -0.75, -0.375]
        paths = {r["path"] for r in server.requests}
        assert paths == {"/v1/completions", "/v1/chat/completions"}
        assert all(r["n"] == 3 for r in server.requests)


def test_http_retries_429_and_500_honouring_retry_after() -> None:
    from app.teacher.backends import Sampling

    with FakeOpenAI(retry_after="1.5") as server:
        server.script = [429, 500, "ok"]
        backend, waits = _http(server, concurrency=1)
        out = backend.generate(["1. Event:"], Sampling(n=2))
        assert len(out[0]) == 2
        assert waits == [1.5, 1.5]  # what the server asked, not our own backoff
        assert backend.stats == {"requests": 3, "retries": 2}
    with FakeOpenAI(retry_after=None) as server:
        server.script = [503, 503, 503, 503]
        backend, waits = _http(server, concurrency=1)
        with pytest.raises(Exception, match=r"gave up after 4 attempts: HTTP 503"):
            backend.generate(["1. Event:"], Sampling())
        assert len(waits) == 3 and waits[0] < waits[2]  # exponential backoff of our own


def test_http_timeout_is_retried_then_reported() -> None:
    from app.teacher.backends import RetryPolicy, Sampling, TeacherBackendError

    with FakeOpenAI() as server:
        server.script = ["slow"]
        backend, waits = _http(server, timeout=0.5)
        assert backend.generate(["1. Event:"], Sampling())[0][0].text.startswith(" PersonX")
        assert len(waits) == 1
        server.script = ["slow"]
        backend, _ = _http(server, timeout=0.5, retry=RetryPolicy(max_retries=0))
        with pytest.raises(TeacherBackendError, match="timed out"):
            backend.generate(["1. Event:"], Sampling())


def test_http_garbage_and_refusals_are_clear_errors() -> None:
    from app.teacher.backends import Sampling, TeacherBackendError

    with FakeOpenAI() as server:
        server.script = ["garbage"]
        backend, waits = _http(server)
        with pytest.raises(TeacherBackendError, match="not an OpenAI completion.*<html>"):
            backend.generate(["1. Event:"], Sampling())
        assert waits == []  # garbage is not retried: the base URL is wrong


def test_a_killed_run_resumes_without_duplicates_or_lost_work(settings: Any, engine: Any) -> None:
    """The backend dies in the middle of the third chunk (as a killed worker would); the
    two stored chunks stay, a delivered-again chunk is skipped, and resuming finishes it."""
    from app.core.db import session_scope
    from app.core.models import TeacherChunk, TeacherEvent, Triple
    from app.teacher.backends import OpenAIBackend
    from app.teacher.chunks import run_chunk
    from app.teacher.planning import ChunkRef, begin_run, create_run
    from app.teacher.runs import resume_run, run_inline

    with FakeOpenAI() as server:
        params = {
            "backend": {"type": "openai", "base_url": server.base_url, "model": "fake"},
            "prompts": 10, "chunk_size": 2, "relations": ["xWant"],
            "events": {"n": 2}, "inferences": {"n": 2},
        }  # fmt: skip
        run_id, job_id = create_run(params)
        real = OpenAIBackend(base_url=server.base_url, model="fake")
        calls = {"n": 0}

        class Dies:
            stats: dict[str, int] = {}

            def generate(self, prompts: Any, sampling: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise KeyboardInterrupt  # the worker is killed mid-chunk
                return real.generate(prompts, sampling)

        with pytest.raises(KeyboardInterrupt):
            run_inline(job_id, backend=Dies())  # type: ignore[arg-type]
        with session_scope() as session:
            before = list(session.scalars(select(TeacherEvent.id).order_by(TeacherEvent.id)))
            assert session.scalar(select(func.count()).select_from(TeacherChunk)) == 2
        assert len(before) == 2 * 2 * 2  # two chunks of two prompts, two events each
        # Resuming plans only the chunks never stored; one stored chunk delivered again (a
        # re-delivered task) is skipped.
        new_job = resume_run(run_id)
        assert [c.index for c in begin_run(new_job)] == [2, 3, 4]
        assert run_chunk(ChunkRef(run_id, "events", 0)).skipped
        result = run_inline(new_job)
        assert result["state"] == "succeeded"
        with session_scope() as session:
            events = list(session.scalars(select(TeacherEvent).order_by(TeacherEvent.id)))
            chunks = list(session.scalars(select(TeacherChunk)))
            triples = session.scalar(select(func.count()).select_from(Triple))
    assert [e.id for e in events[: len(before)]] == before  # nothing stored was redone
    assert len(events) == 10 * 2 == result["counts"]["events"]["kept"]
    assert len({e.text for e in events}) == len(events)
    assert sorted(c.index for c in chunks if c.phase == "events") == list(range(5))
    assert triples == result["counts"]["inferences"]["kept"] == 20 * 2
    assert result["counts"]["events"]["generated"] == 20  # the killed chunk is not counted


# --- the packaged SmolLM2 ------------------------------------------------------------------------

# The real model's behaviour does not depend on the database: run these once, on the SQLite pass
# (the tiny-model tests above cover the database side on both backends).


@pytest.mark.slow
@pytest.mark.one_backend
def test_packaged_smollm2_writes_events_that_start_with_personx(tmp_path: Path) -> None:
    from app.core.causal_lm import converted_folder, packaged_smollm2, teacher_model_spec
    from app.teacher.backends import LocalBackend, Sampling
    from app.teacher.postprocess import FilterSettings, clean_event
    from app.teacher.prompts import DEFAULT_EVENTS, default_template, event_prompt

    folder, name = teacher_model_spec(None)
    assert (folder, name) == tuple(map(str, packaged_smollm2()))
    backend = LocalBackend(folder, name, batch_size=4)
    rng = random.Random(0)
    prompts = [event_prompt(default_template("events"), list(DEFAULT_EVENTS), 6, rng).text
               for _ in range(4)]  # fmt: skip
    out = backend.generate(prompts, Sampling(n=4, top_p=0.9, max_tokens=16, seed=0))
    events = [clean_event(g.text, FilterSettings())[0] for gens in out for g in gens]
    kept = [e for e in events if e]
    assert len(kept) >= 4, events
    assert all(e.startswith("PersonX ") for e in kept)
    assert converted_folder(name).is_dir()  # de-quantized once, loaded from there next time


@pytest.mark.slow
@pytest.mark.one_backend
def test_the_demo_batch_with_the_packaged_model_lands_in_the_corpus(
    settings: Any, engine: Any
) -> None:
    """`skd demo --teacher`'s run, here in-process: SmolLM2 events, then their inferences."""
    from app.cli.demo_setup import DEMO_TEACHER_RUN
    from app.core.db import session_scope
    from app.core.models import TeacherEvent, Triple
    from app.teacher.planning import create_run
    from app.teacher.runs import run_inline

    run_id, job_id = create_run(DEMO_TEACHER_RUN)
    result = run_inline(job_id)
    assert result["state"] == "succeeded"
    with session_scope() as session:
        events = list(session.scalars(select(TeacherEvent.text)))
        triples = list(session.scalars(select(Triple).where(Triple.teacher_run_id == run_id)))
    assert events and all(e.startswith("PersonX ") for e in events)
    assert triples and {t.relation for t in triples} <= {"xWant", "xReact"}


def test_a_cancelled_run_stops_at_its_next_chunk(settings: Any, engine: Any) -> None:
    from app.core.db import session_scope
    from app.core.job_control import cancel_job
    from app.core.models import TeacherChunk, TeacherRun
    from app.teacher.chunks import run_chunk
    from app.teacher.planning import begin_run, create_run

    with FakeOpenAI() as server:
        run_id, job_id = create_run({
            "backend": {"type": "openai", "base_url": server.base_url, "model": "fake"},
            "prompts": 6, "chunk_size": 2,
        })  # fmt: skip
        chunks = begin_run(job_id)
        assert not run_chunk(chunks[0]).skipped
        cancel_job(job_id, by="ada")
        assert run_chunk(chunks[1]).skipped
        requests = len(server.requests)
        assert run_chunk(chunks[2]).skipped and len(server.requests) == requests
    with session_scope() as session:
        run = session.get(TeacherRun, run_id)
        assert run is not None and run.state.value == "failed"
        assert "cancelled by ada" in (run.error or "")
        assert session.scalar(select(func.count()).select_from(TeacherChunk)) == 1


def test_a_run_the_broker_cannot_take_fails_at_once_with_the_reason(
    settings: Any, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core import queue
    from app.core.db import session_scope
    from app.core.models import Job, TeacherRun
    from app.teacher.planning import create_run
    from app.teacher.runs import dispatch_run

    def refuse(*_args: Any, **_kwargs: Any) -> str:
        raise queue.BrokerUnavailable("could not queue skd.teacher_run: the broker is down")

    monkeypatch.setattr(queue, "enqueue", refuse)
    run_id, job_id = create_run({"prompts": 1})
    with pytest.raises(queue.BrokerUnavailable):
        dispatch_run(job_id, api_key="sk-typed")
    with session_scope() as session:
        job = session.get(Job, job_id)
        run = session.get(TeacherRun, run_id)
        assert job is not None and job.state.value == "failed"
        assert "broker is down" in (job.error or "")
        assert run is not None and run.state.value == "failed"


def test_local_penalties_count_only_what_the_completion_wrote() -> None:
    """OpenAI's presence/frequency penalties, locally: a token of the prompt ("PersonX" in a
    few-shot prompt) is not penalized; a token the completion produced is, by
    presence + frequency x count."""
    import torch

    from app.teacher.backends import GeneratedTokenPenalty

    prompt = torch.tensor([[5, 5, 5, 7]])  # token 5 fills the prompt
    penalty = GeneratedTokenPenalty(prompt_length=4, presence=0.5, frequency=0.25)
    scores = torch.zeros(1, 10)
    assert torch.equal(penalty(prompt, scores), scores)  # nothing generated yet
    after = penalty(torch.tensor([[5, 5, 5, 7, 3, 3, 7]]), scores)
    assert after[0, 5] == 0  # only in the prompt
    assert after[0, 3] == -(0.5 + 2 * 0.25)  # generated twice
    assert after[0, 7] == -(0.5 + 1 * 0.25)  # in the prompt once, generated once
    assert after[0, 9] == 0
