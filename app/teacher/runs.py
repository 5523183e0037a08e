"""Teacher runs as jobs: events first, then inferences, in chunks that any worker can run.

A run is a ``teacher_runs`` row and a ``teacher`` job. Each phase (events, inferences) is cut
into chunks of prompts; a chunk builds its prompts from a seed of its own (so a chunk run again
asks the same prompts), calls the backend outside any transaction, then writes its output, its
filter counts and its ``teacher_chunks`` row in one transaction. A chunk already recorded is
skipped, so a killed worker's chunk runs again without duplicates or lost work. The chunk that
completes a phase (under a lock on the run row) plans the next phase or finishes the run.

The triples a run writes are a corpus source like any import, ``teacher-run-<id>``, with
``teacher_run_id`` set and the provenance of each (mean log-probability, the examples of its
prompt, its chunk) in ``meta``.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from hashlib import blake2b
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.db import is_postgres, session_scope
from app.core.job_control import register_kind
from app.core.jobs import create_job
from app.core.models import (
    CampaignItem,
    Job,
    JobState,
    TeacherChunk,
    TeacherEvent,
    TeacherRun,
    TeacherRunState,
    Triple,
    utcnow,
)
from app.corpus.normalize import clean, triple_hash
from app.corpus.relations import allowed_relations
from app.teacher.backends import Backend, LocalBackend, OpenAIBackend, RetryPolicy
from app.teacher.params import RunParams, TeacherParamsError, check_params
from app.teacher.postprocess import (
    Candidate,
    clean_event,
    clean_inference,
    empty_counts,
    keep_top_share,
)
from app.teacher.prompts import EVENTS, event_prompt, inference_prompt

JOB_KIND = "teacher"
INFERENCES = "inferences"


def source_name(run_id: int) -> str:
    """The corpus source of a run's triples."""
    return f"teacher-run-{run_id}"


def event_key(text: str) -> str:
    """The corpus's normalized key of an event alone (case, spacing, final period ignored)."""
    return blake2b(clean(text).casefold().rstrip(". ").encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ChunkRef:
    run_id: int
    phase: str
    index: int


# --- creating a run -----------------------------------------------------------------------


def create_run(data: dict[str, Any], *, created_by_id: int | None = None) -> tuple[int, int]:
    """Check ``data``, then create the run and its job; (run id, job id). Nothing is created
    when a parameter is bad (``TeacherParamsError`` names each)."""
    settings = get_settings()
    params = check_params(data, allowed_relations(settings))
    with session_scope(write=True) as session:
        _check_heads_exist(session, params)
        run = TeacherRun(
            backend=params.backend.type,
            model=params.model_label(),
            params=params.as_dict(),
            kind=params.kind,
            templates=params.templates,
            counts={"phase": params.phases[0]},
            created_by_id=created_by_id,
        )
        session.add(run)
        session.flush()
        job = create_job(session, JOB_KIND, {"run_id": run.id}, created_by_id=created_by_id)
        run.job_id = job.id
        return run.id, job.id


def _check_heads_exist(session: Session, params: RunParams) -> None:
    if params.kind != INFERENCES:
        return
    heads = params.heads
    problem = None
    if heads.kind == "run":
        if session.get(TeacherRun, int(heads.value or 0)) is None:
            problem = f"there is no teacher run {heads.value}"
    elif heads.kind == "source":
        if session.scalar(select(Triple.id).where(Triple.source == heads.value).limit(1)) is None:
            problem = f"the corpus has no source {heads.value!r}"
    elif heads.kind == "campaign":
        item = select(CampaignItem.id).where(CampaignItem.campaign_id == heads.value).limit(1)
        if session.scalar(item) is None:
            problem = f"campaign {heads.value} does not exist or has no items"
    if problem:
        raise TeacherParamsError({"heads.value": problem})


def load_params(run: TeacherRun) -> RunParams:
    """The stored parameters of a run, as checked when it was created."""
    return check_params(run.params, allowed_relations(get_settings()))


# --- backends -----------------------------------------------------------------------------


def make_backend(params: RunParams, api_key: str | None = None) -> Backend:
    """The backend a run asks for. An OpenAI-compatible server's key comes from ``api_key``
    (typed for this run) or the environment variable the run names (never the database)."""
    settings = get_settings()
    b = params.backend
    if b.type == "openai":
        key = api_key or os.environ.get(b.api_key_env or settings.teacher_api_key_env)
        return OpenAIBackend(
            base_url=str(b.base_url),
            model=str(b.model),
            api_key=key,
            mode=b.mode,
            concurrency=b.concurrency,
            timeout=b.timeout,
            logprobs=b.logprobs,
            retry=RetryPolicy(max_retries=b.max_retries),
        )
    from app.core.causal_lm import teacher_model_spec

    name, gguf = teacher_model_spec(b.model or "")
    return LocalBackend(name, gguf, batch_size=b.batch_size or settings.teacher_batch_size)


# --- planning -----------------------------------------------------------------------------


def _chunk_size(params: RunParams) -> int:
    return params.chunk_size or get_settings().teacher_chunk_size


def heads_for(session: Session, run: TeacherRun, params: RunParams) -> list[str]:
    """The events an inference phase asks about, in a fixed order."""
    if params.kind == "events":
        query = select(TeacherEvent.text).where(TeacherEvent.run_id == run.id)
        return list(session.scalars(query.order_by(TeacherEvent.id)))
    h = params.heads
    if h.kind == "file":
        heads = [clean(x) for x in h.heads]
    elif h.kind == "run":
        other = session.get(TeacherRun, int(h.value or 0))
        if other is not None and other.kind == "events":
            query = select(TeacherEvent.text).where(TeacherEvent.run_id == other.id)
            heads = list(session.scalars(query.order_by(TeacherEvent.id)))
        else:
            query = select(Triple.head).where(Triple.teacher_run_id == int(h.value or 0))
            heads = list(session.scalars(query.distinct().order_by(Triple.head)))
    elif h.kind == "source":
        query = select(Triple.head).where(Triple.source == h.value).distinct()
        heads = list(session.scalars(query.order_by(Triple.head)))
    else:
        query = (
            select(Triple.head)
            .join(CampaignItem, CampaignItem.triple_id == Triple.id)
            .where(CampaignItem.campaign_id == h.value)
            .distinct()
        )
        heads = list(session.scalars(query.order_by(Triple.head)))
    heads = list(dict.fromkeys(x for x in heads if x))
    return heads[: h.limit] if h.limit else heads


def phase_size(session: Session, run: TeacherRun, params: RunParams, phase: str) -> int:
    """How many prompts a phase asks."""
    if phase == EVENTS:
        return params.prompts
    return len(heads_for(session, run, params)) * len(params.relations)


def _plan_phase(session: Session, run: TeacherRun, params: RunParams, phase: str) -> list[ChunkRef]:
    """Chunks of ``phase`` not yet done; records the phase's size in the run's counts."""
    size = phase_size(session, run, params, phase)
    chunks = math.ceil(size / _chunk_size(params))
    counts = dict(run.counts or {})
    counts["phase"] = phase
    counts.setdefault("prompts", {})[phase] = size
    counts.setdefault("chunks", {})[phase] = chunks
    run.counts = counts
    done = set(
        session.scalars(
            select(TeacherChunk.index).where(
                TeacherChunk.run_id == run.id, TeacherChunk.phase == phase
            )
        )
    )
    return [ChunkRef(run.id, phase, i) for i in range(chunks) if i not in done]


def begin_run(job_id: int) -> list[ChunkRef]:
    """Start (or resume) the run of job ``job_id``: the chunks left in its current phase.

    An empty list means the run had nothing left to do and is finished now.
    """
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"job {job_id} does not exist")
        run = _run_of(session, job)
        params = load_params(run)
        job.state = JobState.running
        job.started_at = job.heartbeat_at = utcnow()
        job.finished_at = None
        job.error = None
        run.state = TeacherRunState.running
        run.error = None
        run.finished_at = None
        phase = (run.counts or {}).get("phase") or params.phases[0]
        while True:
            pending = _plan_phase(session, run, params, phase)
            _set_job_totals(job, run)
            if pending:
                job.message = f"{phase}: {_phase_words(run, phase)}"
                return pending
            following = params.phases.index(phase) + 1
            if following >= len(params.phases):
                _finish_run(session, run, job)
                return []
            phase = params.phases[following]


def _run_of(session: Session, job: Job) -> TeacherRun:
    run_id = (job.params or {}).get("run_id")
    run = session.get(TeacherRun, run_id) if run_id is not None else None
    if run is None:
        raise LookupError(f"job {job.id} names no teacher run")
    return run


def _set_job_totals(job: Job, run: TeacherRun) -> None:
    counts = run.counts or {}
    prompts = counts.get("prompts", {})
    done = counts.get("prompts_done", {})
    job.total = sum(prompts.values())
    job.done = sum(done.values())


def _phase_words(run: TeacherRun, phase: str) -> str:
    counts = run.counts or {}
    return (
        f"{counts.get('chunks_done', {}).get(phase, 0)} of "
        f"{counts.get('chunks', {}).get(phase, 0)} chunks"
    )


# --- one chunk ----------------------------------------------------------------------------


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


def _finish_run(session: Session, run: TeacherRun, job: Job | None) -> None:
    run.state = TeacherRunState.succeeded
    run.finished_at = utcnow()
    if job is None:
        return
    job.state = JobState.succeeded
    job.finished_at = utcnow()
    job.message = summary(run)
    job.result = {"run_id": run.id, "counts": run.counts, "message": job.message}
    if job.total is not None:
        job.done = job.total


def summary(run: TeacherRun) -> str:
    counts = run.counts or {}
    parts = []
    for phase, word in ((EVENTS, "events"), (INFERENCES, "inferences")):
        if phase in counts:
            c = counts[phase]
            parts.append(f"{c.get('kept', 0):,} {word} kept of {c.get('generated', 0):,}")
    return "; ".join(parts) or "nothing generated"


# --- running a whole run in this process (the CLI), and failures --------------------------


def run_inline(
    job_id: int,
    *,
    api_key: str | None = None,
    backend: Backend | None = None,
    on_chunk: Callable[[int, int | None, str], None] | None = None,
) -> dict[str, Any]:
    """Run every chunk of job ``job_id``'s run here, one after another (``skd generate``)."""
    try:
        pending: Iterable[ChunkRef] = begin_run(job_id)
        queue = list(pending)
        while queue:
            ref = queue.pop(0)
            outcome = run_chunk(ref, api_key=api_key, backend=backend)
            if outcome.next_chunks:
                queue.extend(outcome.next_chunks)
            if on_chunk is not None:
                with session_scope() as session:
                    job = session.get(Job, job_id)
                    if job is not None:
                        on_chunk(job.done, job.total, job.message or "")
    except BaseException as exc:
        fail_run(job_id, str(exc) or type(exc).__name__)
        raise
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        run = _run_of(session, job)
        return {"run_id": run.id, "state": job.state.value, "message": job.message,
                "counts": run.counts}  # fmt: skip


def fail_run(job_id: int, error: str) -> None:
    """Mark the job and its run failed (chunks already stored stay: a retry resumes)."""
    with session_scope(write=True) as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        if job.state in (JobState.queued, JobState.running):
            job.state = JobState.failed
            job.error = error
            job.message = "failed"
            job.finished_at = utcnow()
        _release(session, [job])


def _release(session: Session, jobs: list[Job]) -> None:
    """A teacher job ended badly (cancelled, failed, swept): its run says so."""
    for job in jobs:
        run_id = (job.params or {}).get("run_id")
        run = session.get(TeacherRun, run_id) if run_id is not None else None
        if run is None or run.state == TeacherRunState.succeeded or run.job_id != job.id:
            continue
        if job.state in (JobState.failed, JobState.cancelled):
            run.state = TeacherRunState.failed
            run.error = job.error or job.message or job.state.value
            run.finished_at = utcnow()


def resume_run(run_id: int) -> int:
    """A new job for an unfinished run; its finished chunks are kept and skipped."""
    with session_scope(write=True) as session:
        run = session.get(TeacherRun, run_id)
        if run is None:
            raise LookupError(f"there is no teacher run {run_id}")
        if run.state == TeacherRunState.succeeded:
            raise ValueError(f"teacher run {run_id} already finished")
        old = session.get(Job, run.job_id) if run.job_id else None
        if old is not None and not old.state.finished:
            raise ValueError(f"teacher run {run_id} is still {old.state.value} (job #{old.id})")
        job = create_job(session, JOB_KIND, {"run_id": run.id, "resumes": run.job_id})
        run.job_id = job.id
        run.state = TeacherRunState.queued
        run.error = None
        return job.id


def dispatch_run(job_id: int, api_key: str | None = None) -> None:
    """Send a run's job to the workers. A key typed for this run goes with the task (in the
    broker's message, never the database). A broker that cannot take it fails the job at
    once, with the reason (``BrokerUnavailable`` is re-raised for the door to answer)."""
    from app.core.job_control import dispatch, fail_unsent
    from app.core.jobs import set_celery_id
    from app.core.queue import TEACHER_RUN, BrokerUnavailable, enqueue

    if not api_key:
        dispatch(job_id, TEACHER_RUN)
        return
    try:
        celery_id = enqueue(TEACHER_RUN, job_id, api_key)
    except BrokerUnavailable as exc:
        fail_unsent(job_id, str(exc))
        raise
    set_celery_id(job_id, celery_id)


def _retry(job_id: int) -> int:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        run_id = int((job.params or {})["run_id"])
    new_id = resume_run(run_id)
    dispatch_run(new_id)
    return new_id


register_kind(JOB_KIND, release=_release, retry=_retry)


# --- reading runs (the page, the API) ------------------------------------------------------


def run_triples_count(session: Session, run_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Triple).where(Triple.teacher_run_id == run_id)
        )
        or 0
    )


def sample_output(session: Session, run_id: int, limit: int = 20) -> dict[str, list[Any]]:
    """A sample of what a run kept: its first events and inferences."""
    events = list(
        session.scalars(
            select(TeacherEvent)
            .where(TeacherEvent.run_id == run_id)
            .order_by(TeacherEvent.id)
            .limit(limit)
        )
    )
    triples = list(
        session.scalars(
            select(Triple).where(Triple.teacher_run_id == run_id).order_by(Triple.id).limit(limit)
        )
    )
    return {"events": events, "triples": triples}


def mark_job_heartbeat(job_id: int) -> None:
    with session_scope(write=True) as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
