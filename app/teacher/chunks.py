"""One chunk of a teacher run: prompt the backend, post-process, and store events or inferences
with the chunk's done row in one transaction, so a chunk run twice adds nothing."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import is_postgres, session_scope
from app.core.models import (
    Job,
    JobState,
    TeacherChunk,
    TeacherEvent,
    TeacherRun,
    Triple,
    utcnow,
)
from app.corpus.normalize import clean, triple_hash
from app.teacher.backends import Backend
from app.teacher.params import RunParams
from app.teacher.planning import (
    ChunkRef,
    _chunk_size,
    _finish_run,
    _phase_words,
    _plan_phase,
    _set_job_totals,
    event_key,
    heads_for,
    load_params,
    make_backend,
    source_name,
)
from app.teacher.postprocess import (
    Candidate,
    clean_event,
    clean_inference,
    empty_counts,
    keep_top_share,
)
from app.teacher.prompts import EVENTS, event_prompt, inference_prompt


@dataclass
class ChunkOutcome:
    skipped: bool = False
    next_chunks: list[ChunkRef] | None = None  # the next phase, planned by this chunk
    finished: bool = False


def _chunk_rng(params: RunParams, ref: ChunkRef) -> random.Random:
    return random.Random(f"{params.seed}:{ref.phase}:{ref.index}")


def _job_running(session: Session, run: TeacherRun) -> bool:
    if run.job_id is None:
        return True
    job = session.get(Job, run.job_id)
    return job is not None and job.state == JobState.running


def run_chunk(
    ref: ChunkRef,
    *,
    api_key: str | None = None,
    backend: Backend | None = None,
) -> ChunkOutcome:
    """Generate, filter and store one chunk (nothing if it is done or its job ended)."""
    with session_scope() as session:
        run = session.get(TeacherRun, ref.run_id)
        if run is None:
            raise LookupError(f"there is no teacher run {ref.run_id}")
        done = session.get(TeacherChunk, (ref.run_id, ref.phase, ref.index))
        if done is not None or not _job_running(session, run):
            return ChunkOutcome(skipped=True)
        params = load_params(run)
        size = _chunk_size(params)
        first = ref.index * size
        if ref.phase == EVENTS:
            work = list(range(first, min(first + size, params.prompts)))
            heads: list[str] = []
        else:
            heads = heads_for(session, run, params)
            pairs = [(h, r) for h in heads for r in params.relations]
            work = pairs[first : first + size]  # type: ignore[assignment]
    backend = backend or make_backend(params, api_key)
    rng = _chunk_rng(params, ref)
    pool = params.example_pool()
    if ref.phase == EVENTS:
        template = params.template(EVENTS)
        prompts = [event_prompt(template, pool.events, params.examples, rng) for _ in work]
    else:
        prompts = [
            inference_prompt(
                params.template(relation),
                pool.inferences[relation],
                head,
                params.inference_examples,
                rng,
            )
            for head, relation in work  # type: ignore[misc]
        ]
    sampling = params.sampling(ref.phase)
    sampling = replace(sampling, seed=params.seed * 100_003 + ref.index)
    outputs = backend.generate([p.text for p in prompts], sampling)
    http_stats = dict(getattr(backend, "stats", {}) or {})
    counts: Counter[str] = Counter()
    candidates: list[Candidate] = []
    filters = params.filter_settings()
    for index, (prompt, generations) in enumerate(zip(prompts, outputs, strict=True)):
        for generation in generations:
            counts["generated"] += 1
            if ref.phase == EVENTS:
                text, reason = clean_event(generation.text, filters)
            else:
                text, reason = clean_inference(generation.text, prompt.names, filters)
            if text is None:
                counts[reason or "empty"] += 1
            else:
                candidates.append(Candidate(text, generation.logprob, index))
    with session_scope(write=True) as session:
        run = session.scalars(
            select(TeacherRun).where(TeacherRun.id == ref.run_id).with_for_update()
        ).one()
        if session.get(TeacherChunk, (ref.run_id, ref.phase, ref.index)) is not None:
            return ChunkOutcome(skipped=True)  # another delivery of this chunk got here first
        if not _job_running(session, run):
            return ChunkOutcome(skipped=True)
        if ref.phase == EVENTS:
            _store_events(session, run, params, ref, prompts, candidates, counts)
        else:
            _store_inferences(session, run, params, ref, prompts, work, candidates, counts)
        session.add(TeacherChunk(run_id=run.id, phase=ref.phase, index=ref.index,
                                 counts=dict(counts)))  # fmt: skip
        return _record(session, run, params, ref, len(work), counts, http_stats)


def _store_events(
    session: Session,
    run: TeacherRun,
    params: RunParams,
    ref: ChunkRef,
    prompts: list,
    candidates: list[Candidate],
    counts: Counter[str],
) -> None:
    fresh: dict[str, Candidate] = {}
    for candidate in candidates:
        key = event_key(candidate.text)
        if key in fresh:
            counts["duplicate_in_run"] += 1
        else:
            fresh[key] = candidate
    if fresh:
        seen = set(
            session.scalars(
                select(TeacherEvent.norm_key).where(
                    TeacherEvent.run_id == run.id, TeacherEvent.norm_key.in_(list(fresh))
                )
            )
        )
        for key in seen:
            counts["duplicate_in_run"] += 1
            del fresh[key]
    if fresh:
        texts = [c.text for c in fresh.values()]
        in_corpus = set(session.scalars(select(Triple.head).where(Triple.head.in_(texts))))
        for key, candidate in list(fresh.items()):
            if candidate.text in in_corpus:
                counts["duplicate_in_corpus"] += 1
                del fresh[key]
    kept = keep_top_share(list(fresh.values()), params.filter_settings().keep_top, counts)
    for candidate in kept:
        session.add(
            TeacherEvent(
                run_id=run.id,
                text=candidate.text,
                norm_key=event_key(candidate.text),
                logprob=candidate.logprob,
                chunk=ref.index,
                examples=list(prompts[candidate.prompt_index].examples),
            )
        )
    counts["kept"] += len(kept)
    session.flush()


def _store_inferences(
    session: Session,
    run: TeacherRun,
    params: RunParams,
    ref: ChunkRef,
    prompts: list,
    work: list,
    candidates: list[Candidate],
    counts: Counter[str],
) -> None:
    source = source_name(run.id)
    fresh: dict[str, tuple[Candidate, str, str]] = {}
    for candidate in candidates:
        head, relation = work[candidate.prompt_index]
        key = triple_hash(clean(head), relation, candidate.text)
        if key in fresh:
            counts["duplicate_in_run"] += 1
        else:
            fresh[key] = (candidate, head, relation)
    if fresh:
        existing = session.execute(
            select(Triple.norm_hash, Triple.source).where(Triple.norm_hash.in_(list(fresh)))
        ).all()
        for key, existing_source in existing:
            counts["duplicate_in_run" if existing_source == source else "duplicate_in_corpus"] += 1
            del fresh[key]
    kept_candidates = keep_top_share(
        [c for c, _, _ in fresh.values()], params.filter_settings().keep_top, counts
    )
    kept_ids = {id(c) for c in kept_candidates}
    now = utcnow()
    rows = []
    for key, (candidate, head, relation) in fresh.items():
        if id(candidate) not in kept_ids:
            continue
        prompt = prompts[candidate.prompt_index]
        rows.append(
            {
                "head": clean(head),
                "relation": relation,
                "tail": candidate.text,
                "norm_hash": key,
                "source": source,
                "teacher_run_id": run.id,
                "meta": {
                    "logprob": candidate.logprob,
                    "examples": list(prompt.examples),
                    "chunk": ref.index,
                },
                "created_at": now,
            }
        )
    inserted = _insert_ignoring_duplicates(session, rows)
    counts["duplicate_in_corpus"] += len(rows) - inserted  # written meanwhile by another run
    counts["kept"] += inserted


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert triples; a hash the corpus already holds is skipped. How many were new."""
    if not rows:
        return 0
    if is_postgres(session.get_bind()):  # type: ignore[arg-type]
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(Triple).on_conflict_do_nothing(index_elements=["norm_hash"])
    result = session.execute(statement.returning(Triple.id), rows)
    return len(result.all())


def _record(
    session: Session,
    run: TeacherRun,
    params: RunParams,
    ref: ChunkRef,
    prompts_done: int,
    counts: Counter[str],
    http_stats: dict[str, int],
) -> ChunkOutcome:
    """Add the chunk's counts to the run and its job; the chunk that completes a phase plans
    the next one or finishes the run (the run row is locked, so exactly one does)."""
    all_counts = dict(run.counts or {})
    phase_counts = {**empty_counts(), **all_counts.get(ref.phase, {})}
    for key, value in counts.items():
        phase_counts[key] = phase_counts.get(key, 0) + value
    all_counts[ref.phase] = phase_counts
    for key, value in (("chunks_done", 1), ("prompts_done", prompts_done)):
        bucket = dict(all_counts.get(key, {}))
        bucket[ref.phase] = bucket.get(ref.phase, 0) + value
        all_counts[key] = bucket
    if http_stats:
        http = dict(all_counts.get("http", {}))
        for key, value in http_stats.items():
            http[key] = http.get(key, 0) + value
        all_counts["http"] = http
    run.counts = all_counts
    job = session.get(Job, run.job_id) if run.job_id else None
    if job is not None:
        _set_job_totals(job, run)
        job.heartbeat_at = utcnow()
        job.message = f"{ref.phase}: {_phase_words(run, ref.phase)}"
    chunks_done = all_counts["chunks_done"][ref.phase]
    if chunks_done < all_counts.get("chunks", {}).get(ref.phase, 0):
        return ChunkOutcome()
    following = params.phases.index(ref.phase) + 1
    while following < len(params.phases):
        phase = params.phases[following]
        session.flush()
        pending = _plan_phase(session, run, params, phase)
        if job is not None:
            _set_job_totals(job, run)
            job.message = f"{phase}: {_phase_words(run, phase)}"
        if pending:
            return ChunkOutcome(next_chunks=pending)
        following += 1
    _finish_run(session, run, job)
    return ChunkOutcome(finished=True)
