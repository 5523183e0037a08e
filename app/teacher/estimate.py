"""What a teacher run will ask of its model, before it starts: prompts, generations, the most
new tokens it can cost, and how long it should take at the pace of a finished run of the
same model.

A run against a hosted API is paid per token and a run of the packaged model on a laptop can
take an hour, so the researcher sees both numbers while filling in the form (the page), before
a script commits to a run (``POST /api/teacher/plan``) and from ``skd generate ... --dry-run``.
Nothing is written: the parameters are checked exactly as ``create_run`` checks them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.models import Job, JobState, TeacherRun, TeacherRunState
from app.corpus.relations import allowed_relations
from app.teacher.params import RunParams, check_params
from app.teacher.planning import INFERENCES, check_heads_exist, chosen_heads_count
from app.teacher.prompts import EVENTS


@dataclass
class PhasePlan:
    """One phase: ``prompts`` requests, each sampling ``n`` generations of at most
    ``max_tokens`` new tokens. ``upper_bound``: the inferences after an events phase ask about
    the events that pass its filters, at most every event generated."""

    phase: str
    prompts: int
    n: int
    max_tokens: int
    upper_bound: bool = False

    @property
    def generations(self) -> int:
        return self.prompts * self.n

    @property
    def max_new_tokens(self) -> int:
        return self.generations * self.max_tokens


@dataclass
class Pace:
    """Generations per second of a finished run with the same backend and model."""

    run_id: int
    generations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.generations / self.seconds


@dataclass
class RunPlan:
    backend: str
    model: str
    phases: list[PhasePlan]
    heads: int | None  # the events an inferences run asks about (after its limit)
    pace: Pace | None

    @property
    def generations(self) -> int:
        return sum(p.generations for p in self.phases)

    @property
    def max_new_tokens(self) -> int:
        return sum(p.max_new_tokens for p in self.phases)

    @property
    def estimated_seconds(self) -> float | None:
        return self.generations / self.pace.per_second if self.pace else None

    def as_dict(self) -> dict[str, Any]:
        """The JSON the API answers: every number the page shows."""
        return {
            "backend": self.backend,
            "model": self.model,
            "heads": self.heads,
            "phases": [
                {
                    **asdict(p),
                    "generations": p.generations,
                    "max_new_tokens": p.max_new_tokens,
                }
                for p in self.phases
            ],
            "generations": self.generations,
            "max_new_tokens": self.max_new_tokens,
            "pace": (
                {**asdict(self.pace), "per_second": self.pace.per_second} if self.pace else None
            ),
            "estimated_seconds": self.estimated_seconds,
        }


def _same_server(run: TeacherRun, params: RunParams) -> bool:
    """A server's model name says nothing of the hardware behind it: the base URL must match
    too (the backend and the model are matched by the query)."""
    if params.backend.type != "openai":
        return True
    given = ((run.params or {}).get("backend") or {}).get("base_url")
    return given == params.backend.base_url


def latest_pace(session: Session, params: RunParams, look_back: int = 20) -> Pace | None:
    """The pace of the newest succeeded run of the same model (and server): its generations
    over its job's wall time, model loading and queueing between chunks included, which is
    what the next run will pay too."""
    rows = session.execute(
        select(TeacherRun, Job)
        .join(Job, Job.id == TeacherRun.job_id)
        .where(
            TeacherRun.state == TeacherRunState.succeeded,
            TeacherRun.backend == params.backend.type,
            TeacherRun.model == params.model_label(),
            Job.state == JobState.succeeded,
        )
        .order_by(TeacherRun.id.desc())
        .limit(look_back)
    ).all()
    for run, job in rows:
        if not _same_server(run, params) or job.started_at is None or job.finished_at is None:
            continue
        counts = run.counts or {}
        phases = (counts.get(p) or {} for p in (EVENTS, INFERENCES))
        generated = sum(int(phase.get("generated", 0)) for phase in phases)
        seconds = (job.finished_at - job.started_at).total_seconds()
        if generated > 0 and seconds > 0:
            return Pace(run_id=run.id, generations=generated, seconds=seconds)
    return None


def plan_run(data: dict[str, Any]) -> RunPlan:
    """The plan of a run with parameters ``data``; ``TeacherParamsError`` as ``create_run``."""
    params = check_params(data, allowed_relations(get_settings()))
    events = params.events
    inferences = params.inferences
    with session_scope() as session:
        check_heads_exist(session, params)
        phases: list[PhasePlan] = []
        heads: int | None = None
        if params.kind == EVENTS:
            phases.append(PhasePlan(EVENTS, params.prompts, events["n"], events["max_tokens"]))
            if params.relations:
                at_most = params.prompts * events["n"]
                phases.append(
                    PhasePlan(
                        INFERENCES,
                        at_most * len(params.relations),
                        inferences["n"],
                        inferences["max_tokens"],
                        upper_bound=True,
                    )
                )
        else:
            heads = chosen_heads_count(session, params)
            phases.append(
                PhasePlan(
                    INFERENCES,
                    heads * len(params.relations),
                    inferences["n"],
                    inferences["max_tokens"],
                )
            )
        pace = latest_pace(session, params)
    return RunPlan(params.backend.type, params.model_label(), phases, heads, pace)
