"""Creating a teacher run and planning its chunks: parameters checked, heads chosen, events first
and then the inferences for them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.db import session_scope
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
from app.corpus.normalize import clean
from app.corpus.relations import allowed_relations
from app.corpus.sources import teacher_source
from app.teacher.backends import Backend, LocalBackend, OpenAIBackend, RetryPolicy
from app.teacher.params import RunParams, TeacherParamsError, check_params
from app.teacher.prompts import EVENTS

JOB_KIND = "teacher"


INFERENCES = "inferences"


def source_name(run_id: int) -> str:
    """The corpus source of a run's triples (a name imports may not take)."""
    return teacher_source(run_id)


def event_key(text: str) -> str:
    """The corpus's normalized key of an event alone (case, spacing, final period ignored)."""
    return blake2b(clean(text).casefold().rstrip(". ").encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ChunkRef:
    run_id: int
    phase: str
    index: int


def create_run(data: dict[str, Any], *, created_by_id: int | None = None) -> tuple[int, int]:
    """Check ``data``, then create the run and its job; (run id, job id). Nothing is created
    when a parameter is bad (``TeacherParamsError`` names each)."""
    settings = get_settings()
    params = check_params(data, allowed_relations(settings))
    with session_scope(write=True) as session:
        check_heads_exist(session, params)
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


def check_heads_exist(session: Session, params: RunParams) -> None:
    """An inferences run's events exist (``TeacherParamsError`` on ``heads.value`` if not)."""
    if params.kind != INFERENCES:
        return
    heads = params.heads
    problem = None
    if heads.kind == "run":
        other = session.get(TeacherRun, int(heads.value or 0))
        if other is None:
            problem = f"there is no teacher run {heads.value}"
        elif not _run_has_heads(session, other):
            problem = (
                f"teacher run {other.id} ({other.kind}, {other.state.value}) has written no "
                "events or triples yet: wait for it to finish, or pick another run"
            )
    elif heads.kind == "source":
        if session.scalar(select(Triple.id).where(Triple.source == heads.value).limit(1)) is None:
            problem = f"the corpus has no source {heads.value!r}"
    elif heads.kind == "campaign":
        item = select(CampaignItem.id).where(CampaignItem.campaign_id == heads.value).limit(1)
        if session.scalar(item) is None:
            problem = f"campaign {heads.value} does not exist or has no items"
    if problem:
        raise TeacherParamsError({"heads.value": problem})


def _run_has_heads(session: Session, run: TeacherRun) -> bool:
    """Whether ``run`` has anything an inference run could ask about (see ``heads_for``):
    an events run its events, an inferences run the heads of its triples."""
    if run.kind == "events":
        query = select(TeacherEvent.id).where(TeacherEvent.run_id == run.id)
    else:
        query = select(Triple.id).where(Triple.teacher_run_id == run.id)
    return session.scalar(query.limit(1)) is not None


def load_params(run: TeacherRun) -> RunParams:
    """The stored parameters of a run, as checked when it was created."""
    return check_params(run.params, allowed_relations(get_settings()))


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


def _chunk_size(params: RunParams) -> int:
    return params.chunk_size or get_settings().teacher_chunk_size


def heads_for(session: Session, run: TeacherRun, params: RunParams) -> list[str]:
    """The events an inference phase asks about, in a fixed order."""
    if params.kind == "events":
        query = select(TeacherEvent.text).where(TeacherEvent.run_id == run.id)
        return list(session.scalars(query.order_by(TeacherEvent.id)))
    return chosen_heads(session, params)


def _heads_query(session: Session, params: RunParams) -> Select[tuple[str]]:
    """The picked events as one column, in a fixed order (not for a list of events)."""
    h = params.heads
    if h.kind == "run":
        other = session.get(TeacherRun, int(h.value or 0))
        if other is not None and other.kind == "events":
            query = select(TeacherEvent.text).where(TeacherEvent.run_id == other.id)
            return query.order_by(TeacherEvent.id)
        query = select(Triple.head).where(Triple.teacher_run_id == int(h.value or 0))
        return query.distinct().order_by(Triple.head)
    if h.kind == "source":
        return select(Triple.head).where(Triple.source == h.value).distinct().order_by(Triple.head)
    return (
        select(Triple.head)
        .join(CampaignItem, CampaignItem.triple_id == Triple.id)
        .where(CampaignItem.campaign_id == h.value)
        .distinct()
        .order_by(Triple.head)
    )


def chosen_heads(session: Session, params: RunParams) -> list[str]:
    """The events an inferences run picked (a list, a run, a source or a campaign), in a fixed
    order, distinct, cut at its limit."""
    h = params.heads
    if h.kind == "file":
        heads = [clean(x) for x in h.heads]
    else:
        heads = list(session.scalars(_heads_query(session, params)))
    heads = list(dict.fromkeys(x for x in heads if x))
    return heads[: h.limit] if h.limit else heads


def chosen_heads_count(session: Session, params: RunParams) -> int:
    """``len(chosen_heads(...))`` counted by the database: a plan asks for it on every change
    of the form, and a source can hold a million events."""
    h = params.heads
    if h.kind == "file":
        return len(chosen_heads(session, params))
    column = _heads_query(session, params).order_by(None).subquery().c[0]
    count = session.scalar(select(func.count(column.distinct())).where(column != "")) or 0
    return min(count, h.limit) if h.limit else count


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
