"""The teacher-versus-student human evaluation: an ``evaluation`` campaign over test heads.

What goes in (``EvaluationSpec``):
- **queries:** (head, relation) pairs of an export's test split, so no student saw the head in
  training; a seeded sample of ``heads`` heads, every relation the split asks of them;
- **systems:** each student model generates for every query (system ``student-<id>``); the
  teacher's inferences for the same (head, relation) come from the corpus (system
  ``teacher``: triples of ``teacher_sources``, or of every source that is neither a student's
  nor a reference); optional human references (system ``human``: triples of
  ``reference_sources``). Up to ``n`` inferences per system and query.

What comes out: generated inferences become triples (source ``student-<id>``; an inference
equal to an existing triple, under the corpus's dedup key, is that triple), one campaign item
per distinct triple in a random order, and one ``evaluation_outputs`` row per (system, triple).
Annotators see only the triple, so the campaign is blind and the systems are mixed; a triple
that several systems wrote is rated once and its label credited to each of them.

``check_evaluation`` refuses a bad spec before any work (by field); ``run_evaluation_job`` is
the job (generation takes a while), behind the page, ``POST /api/student/evaluations`` and
``skd student evaluate``.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.annotation.campaigns import (
    DEFAULT_SCALE,
    CampaignSpec,
    validate_spec,
)
from app.annotation.scale import normalize_scale
from app.core import queue, triple_counts
from app.core.db import session_scope
from app.core.job_control import register_kind
from app.core.jobs import NullProgress, Progress, create_job
from app.core.models import (
    Campaign,
    CampaignItem,
    CampaignPurpose,
    CampaignState,
    EvaluationOutput,
    StudentModel,
    StudentState,
    Triple,
)
from app.corpus.normalize import clean, triple_hash
from app.corpus.sources import is_student_source, student_source
from app.student.examples import ExampleFileError, Query, export_queries
from app.student.generate import Decoding, generate, load_student
from app.student.runs import export_folder

JOB_KIND = "student_evaluate"
TEACHER, HUMAN = "teacher", "human"


def student_system(model_id: int) -> str:
    """A student's system name, also the source of the triples it writes (a name imports may
    not take)."""
    return student_source(model_id)


@dataclass
class EvaluationSpec:
    name: str
    export_id: int
    student_model_ids: list[int] = field(default_factory=list)
    heads: int | None = 100  # test heads to sample; None: every head of the split
    relations: list[str] = field(default_factory=list)  # none: every relation
    n: int = 1  # inferences per system and query
    decoding: str = "greedy"
    top_p: float = 0.9
    num_beams: int = 5
    teacher: bool = True
    teacher_sources: list[str] = field(default_factory=list)
    reference_sources: list[str] = field(default_factory=list)
    ratings_per_item: int = 3
    guidelines: str = ""
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationSpec:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise EvaluationSpecError({name: "unknown field" for name in unknown})
        try:
            return cls(**data)
        except TypeError as exc:
            raise EvaluationSpecError({"spec": str(exc)}) from exc

    def decoding_args(self) -> Decoding:
        from app.core.config import get_settings

        settings = get_settings()
        return Decoding(
            method=self.decoding,
            n=self.n,
            num_beams=max(self.num_beams, self.n),
            top_p=self.top_p,
            batch_size=settings.student_generate_batch_size,
            max_new_tokens=settings.student_max_new_tokens,
            seed=self.seed,
        )


class EvaluationSpecError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def check_evaluation(session: Session, spec: EvaluationSpec) -> dict[str, str]:
    """Every problem with ``spec`` by field (empty: fine)."""
    errors = {
        name: message
        for name, message in validate_spec(session, _campaign_spec(spec)).items()
        if name in ("name", "ratings_per_item", "relations", "guidelines")
    }
    try:
        folder = export_folder(session, spec.export_id)
        queries, _tails = export_queries(folder, "test")
        if not queries:
            errors["export_id"] = f"export {spec.export_id}'s test split is empty"
    except (ValueError, ExampleFileError) as exc:
        errors["export_id"] = str(getattr(exc, "errors", {}).get("export_id", exc))
    for model_id in spec.student_model_ids:
        model = session.get(StudentModel, model_id)
        if model is None:
            errors["student_model_ids"] = f"there is no student model {model_id}"
        elif model.state != StudentState.ready:
            errors["student_model_ids"] = f"student model {model_id} is {model.state.value}"
    if spec.heads is not None and spec.heads < 1:
        errors["heads"] = "must be at least 1 (leave it empty for every test head)"
    if not 1 <= spec.n <= 20:
        errors["n"] = "must be between 1 and 20"
    decoding_errors = spec.decoding_args().problems()
    errors.update({k: v for k, v in decoding_errors.items() if k not in errors})
    for name in ("teacher_sources", "reference_sources"):
        wanted = getattr(spec, name)
        present = triple_counts.known_sources(session, wanted)
        missing = [s for s in wanted if s not in present]
        if missing:
            errors[name] = f"not in the corpus: {', '.join(missing)}"
    if not spec.student_model_ids and not spec.teacher and not spec.reference_sources:
        errors["student_model_ids"] = "choose at least one system (a student, the teacher, humans)"
    return errors


def _campaign_spec(spec: EvaluationSpec) -> CampaignSpec:
    return CampaignSpec(
        name=spec.name,
        purpose=CampaignPurpose.evaluation,
        relations=list(spec.relations),
        ratings_per_item=spec.ratings_per_item,
        guidelines=spec.guidelines,
        seed=spec.seed,
    )


def start_evaluation(spec: EvaluationSpec, user_id: int | None = None) -> int:
    """Check the spec and record its queued job; the job's id."""
    with session_scope(write=True) as session:
        errors = check_evaluation(session, spec)
        if errors:
            raise EvaluationSpecError(errors)
        return create_job(session, JOB_KIND, {"spec": spec.as_dict()}, created_by_id=user_id).id


def queue_evaluation(spec: EvaluationSpec, user_id: int | None = None) -> int:
    from app.core.job_control import dispatch

    job_id = start_evaluation(spec, user_id)
    dispatch(job_id, queue.STUDENT_EVALUATE)
    return job_id


def choose_queries(queries: list[Query], spec: EvaluationSpec) -> list[Query]:
    """A seeded sample of heads, with every relation the split asks of them (in file order)."""
    if spec.relations:
        queries = [q for q in queries if q.relation in spec.relations]
    heads = list(dict.fromkeys(q.head for q in queries))
    if spec.heads is not None and spec.heads < len(heads):
        chosen = set(random.Random(spec.seed).sample(heads, spec.heads))
        queries = [q for q in queries if q.head in chosen]
    return queries


def corpus_inferences(
    session: Session,
    queries: list[Query],
    sources: list[str] | None,
    exclude_sources: list[str],
    n: int,
    seed: int,
) -> dict[Query, list[int]]:
    """Up to ``n`` corpus triple ids per query from these sources (a seeded choice)."""
    wanted = set(queries)
    heads = sorted({q.head for q in queries})
    found: dict[Query, list[int]] = {}
    for start in range(0, len(heads), 500):
        chunk = heads[start : start + 500]
        query = select(Triple.id, Triple.head, Triple.relation, Triple.source).where(
            Triple.head.in_(chunk)
        )
        if sources:
            query = query.where(Triple.source.in_(sources))
        for triple_id, head, relation, source in session.execute(query.order_by(Triple.id)):
            if source in exclude_sources or is_student_source(source):
                continue
            key = Query(head, relation)
            if key in wanted:
                found.setdefault(key, []).append(triple_id)
    rng = random.Random(seed)
    return {
        key: sorted(ids) if len(ids) <= n else sorted(rng.sample(ids, n))
        for key, ids in found.items()
    }


def store_inferences(session: Session, rows: list[tuple[str, str, str]], source: str) -> list[int]:
    """The triple id of each (head, relation, tail): an existing triple under the dedup key,
    or a new one with ``source``."""
    cleaned = [(clean(h), r, clean(t)) for h, r, t in rows]
    hashes = [triple_hash(*row) for row in cleaned]
    known: dict[str, int] = {}
    unique = sorted(set(hashes))
    for start in range(0, len(unique), 1000):
        chunk = unique[start : start + 1000]
        rows_found = session.execute(
            select(Triple.norm_hash, Triple.id).where(Triple.norm_hash.in_(chunk))
        ).all()
        known.update({norm_hash: triple_id for norm_hash, triple_id in rows_found})
    for (head, relation, tail), key in zip(cleaned, hashes, strict=True):
        if key not in known:
            triple = Triple(head=head, relation=relation, tail=tail, norm_hash=key, source=source)
            session.add(triple)
            session.flush()
            known[key] = triple.id
    return [known[key] for key in hashes]


def run_evaluation_job(job_params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The job: generate with each student, gather the teacher's and the references, open the
    campaign. Nothing is written until every system has its inferences."""
    spec = EvaluationSpec.from_dict(job_params["spec"])
    return build_evaluation(spec, progress)


def build_evaluation(spec: EvaluationSpec, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or NullProgress()
    with session_scope() as session:
        errors = check_evaluation(session, spec)
        if errors:
            raise EvaluationSpecError(errors)
        folder = export_folder(session, spec.export_id)
        paths = {
            model_id: Path(str(session.get(StudentModel, model_id).path))  # type: ignore[union-attr]
            for model_id in spec.student_model_ids
        }
    all_queries, _tails = export_queries(folder, "test")
    queries = choose_queries(all_queries, spec)
    if not queries:
        raise EvaluationSpecError({"relations": "no test query has these relations"})
    generated: dict[int, list[dict[str, Any]]] = {}
    total = len(queries) * max(1, len(paths))
    for position, (model_id, path) in enumerate(paths.items()):
        model, tokenizer = load_student(path)
        offset = position * len(queries)

        generated[model_id] = list(
            generate(
                model,
                tokenizer,
                queries,
                spec.decoding_args(),
                _Offset(progress, offset, total, f"student #{model_id}"),
            )
        )
        del model
    progress.update(total, total, "opening the campaign", force=True)
    with session_scope(write=True) as session:
        outputs: dict[tuple[str, int], float | None] = {}
        # How many queries each system said something for: a student that stops at once on
        # most queries can look good on the few it answers, so the coverage is reported too.
        answered: dict[str, int] = {}
        for model_id, rows in generated.items():
            answered[student_system(model_id)] = len({(r["head"], r["relation"]) for r in rows})
            ids = store_inferences(
                session,
                [(r["head"], r["relation"], r["tail"]) for r in rows],
                student_system(model_id),
            )
            for row, triple_id in zip(rows, ids, strict=True):
                key = (student_system(model_id), triple_id)
                outputs[key] = max(outputs.get(key) or row["score"], row["score"])
        if spec.teacher:
            chosen = corpus_inferences(
                session,
                queries,
                spec.teacher_sources or None,
                list(spec.reference_sources),
                spec.n,
                spec.seed,
            )
            for ids in chosen.values():
                outputs.update({(TEACHER, triple_id): None for triple_id in ids})
            answered[TEACHER] = sum(1 for ids in chosen.values() if ids)
        if spec.reference_sources:
            chosen = corpus_inferences(
                session, queries, list(spec.reference_sources), [], spec.n, spec.seed
            )
            for ids in chosen.values():
                outputs.update({(HUMAN, triple_id): None for triple_id in ids})
            answered[HUMAN] = sum(1 for ids in chosen.values() if ids)
        if not outputs:
            raise EvaluationSpecError(
                {"systems": "no system has an inference for the chosen test queries"}
            )
        systems = [student_system(m) for m in spec.student_model_ids]
        systems += [TEACHER] if spec.teacher else []
        systems += [HUMAN] if spec.reference_sources else []
        campaign = _open_campaign(session, spec, systems, len(queries), outputs, answered)
        counts = {s: sum(1 for (name, _t) in outputs if name == s) for s in systems}
        campaign_id = campaign.id
        items = len({triple_id for _s, triple_id in outputs})
    return {
        "campaign_id": campaign_id,
        "queries": len(queries),
        "items": items,
        "per_system": counts,
        "answered": {system: answered.get(system, 0) for system in systems},
        "message": f"evaluation campaign #{campaign_id}: {items} items from "
        f"{len(systems)} systems over {len(queries)} test queries"
        + _coverage(systems, answered, len(queries)),
    }


def _coverage(systems: list[str], answered: dict[str, int], queries: int) -> str:
    """``; queries with no inference: 11 from student-1`` for the systems that left
    queries unanswered (a student that stopped at once, a teacher source without those heads),
    so a high acceptability over a few answers is not read as the whole story."""
    short = [
        f"{queries - answered.get(s, 0)} from {s}" for s in systems if answered.get(s, 0) < queries
    ]
    return f"; queries with no inference: {', '.join(short)}" if short else ""


class _Offset(NullProgress):
    """One student's generation progress as a stretch of the whole job's bar."""

    def __init__(self, sink: Progress, offset: int, total: int, label: str) -> None:
        self.sink, self.offset, self.total, self.label = sink, offset, total, label

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        self.sink.update(self.offset + done, self.total, f"{self.label}: {message}", force=force)


def _open_campaign(
    session: Session,
    spec: EvaluationSpec,
    systems: list[str],
    queries: int,
    outputs: dict[tuple[str, int], float | None],
    answered: dict[str, int],
) -> Campaign:
    seed = spec.seed
    campaign = Campaign(
        name=spec.name,
        purpose=CampaignPurpose.evaluation,
        state=CampaignState.open,
        ratings_per_item=spec.ratings_per_item,
        lease_seconds=600,
        guidelines=spec.guidelines,
        answer_scale=normalize_scale(list(DEFAULT_SCALE)),
        selection={
            "sampling": "evaluation: test-split heads of an export, systems mixed and blind",
            "export_id": spec.export_id,
            "systems": systems,
            "queries": queries,
            "answered": {system: answered.get(system, 0) for system in systems},
            "seed": seed,
            "spec": spec.as_dict(),
            "relations": list(spec.relations),
            "sources": [],
            "sample_size": None,
        },
        completion_code=secrets.token_hex(4).upper(),
        share_token=secrets.token_urlsafe(12),
    )
    session.add(campaign)
    session.flush()
    triple_ids = sorted({triple_id for _system, triple_id in outputs})
    rng = random.Random(seed)
    # A random serving order, so neither a system's nor a query's inferences come together.
    session.execute(
        insert(CampaignItem),
        [
            {
                "campaign_id": campaign.id,
                "triple_id": triple_id,
                "ratings_needed": spec.ratings_per_item,
                "ratings_done": 0,
                "leases_active": 0,
                "sort_key": rng.random(),
                "is_gold": False,
                "gold_answer": None,
            }
            for triple_id in triple_ids
        ],
    )
    session.execute(
        insert(EvaluationOutput),
        [
            {"campaign_id": campaign.id, "system": system, "triple_id": triple_id, "score": score}
            for (system, triple_id), score in sorted(outputs.items())
        ],
    )
    return campaign


register_kind(JOB_KIND)
