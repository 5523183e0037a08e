"""The jobs page's view of jobs: what each works on, who started it, how fast it goes.

``job_as_dict`` is a job's own numbers; this adds what a person watching many jobs needs:
a label that names the thing the job works on with that thing's own number (an export's
number, not the job's: "one number per thing"), who started it and through which door, and
the rate, time left and duration worked out from the row's timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.models import Job, JobState, User, utcnow

# Kinds whose params name a critic version (app.critic.loop) or an export (app.export.run).
CRITIC_KINDS = {"critic_train": "train", "critic_evaluate": "evaluate", "critic_score": "score"}
STATES = [state.value for state in JobState]
# What a kind's done/total count, where it is one thing: the page then says "502 triples/s".
# An import counts bytes read and rows written on one scale, an export rows and then archive
# bytes: their progress is a fraction only (a rate of "10,425,520/s" would mean nothing).
PROGRESS_UNITS = {
    "critic_train": "steps",
    "critic_evaluate": "steps",
    "critic_score": "triples",
    "teacher": "prompts",
    "student_train": "steps",
    "student_evaluate": "queries",
}


@dataclass(frozen=True)
class Subject:
    label: str  # "Export #5", "critic v3 · train", "import of a.tsv, b.tsv"
    url: str | None  # the thing's own page, when it has one


def job_subject(kind: str, params: dict[str, Any] | None) -> Subject:
    """What a job works on, named by that thing's own number."""
    params = params or {}
    if kind == "export" and params.get("export_id") is not None:
        export_id = params["export_id"]
        return Subject(f"Export #{export_id}", f"/exports/{export_id}")
    if kind in CRITIC_KINDS and params.get("version_id") is not None:
        return Subject(f"critic v{params['version_id']} · {CRITIC_KINDS[kind]}", "/critic")
    if kind == "import":
        names = [PurePath(str(name)).name for name in params.get("names") or []]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return Subject(f"import of {shown}" if shown else "import", "/")
    if kind == "teacher" and params.get("run_id") is not None:
        return Subject(f"teacher run #{params['run_id']}", f"/teacher/runs/{params['run_id']}")
    if kind == "student_train" and params.get("student_model_id") is not None:
        model_id = params["student_model_id"]
        source = f" from Export #{params['export_id']}" if params.get("export_id") else ""
        return Subject(f"student #{model_id}{source}", f"/student/runs/{model_id}")
    if kind == "backup":  # the file's name is in the job's message and result
        return Subject("database backup", None)
    # Other kinds: name the first id their params carry.
    for key, word in (("run_id", "run"), ("version_id", "version"), ("export_id", "export")):
        if params.get(key) is not None:
            return Subject(f"{kind.replace('_', ' ')} · {word} #{params[key]}", None)
    return Subject(kind.replace("_", " "), None)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return max(0.0, ((end or utcnow()) - start).total_seconds())


def timing(job: Job) -> dict[str, float | None]:
    """Duration so far (or in all), units per second (for kinds that count one thing), and
    seconds left at the rate the job goes."""
    duration = _seconds(job.started_at, job.finished_at)
    pace = job.done / duration if duration and job.done else None
    left = None
    if pace and job.total is not None and not job.state.finished:
        left = max(0, job.total - job.done) / pace
    rate = pace if job.kind in PROGRESS_UNITS else None
    waited = _seconds(job.created_at, job.started_at) if job.state == JobState.queued else None
    return {"duration_s": duration, "rate_per_s": rate, "left_s": left, "waiting_s": waited}


def who_started(username: str | None, door: str | None) -> str:
    """ "ada (web)", "cli (root)", "beat"; "–" for jobs from before this was recorded."""
    if username and door:
        return f"{username} ({door})"
    return username or door or "–"


def job_view(job: Job, username: str | None) -> dict[str, Any]:
    """A job as the jobs page shows it (the JSON API returns the same)."""
    from app.core.jobs import job_as_dict

    subject = job_subject(job.kind, job.params)
    return {
        **job_as_dict(job),
        **timing(job),
        "label": subject.label,
        "subject_url": subject.url,
        "unit": PROGRESS_UNITS.get(job.kind),
        "started_by": who_started(username, job.started_by),
        "door": job.started_by,
        "params": job.params,
    }


def list_jobs(
    session: Session,
    *,
    kind: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Jobs newest first, optionally of one kind and/or one state."""
    query = (
        select(Job, User.username)
        .outerjoin(User, User.id == Job.created_by_id)
        .order_by(Job.id.desc())
        .limit(limit)
    )
    if kind:
        query = query.where(Job.kind == kind)
    if state:
        query = query.where(Job.state == JobState(state))
    return [job_view(job, username) for job, username in session.execute(query)]


def get_job_view(session: Session, job_id: int) -> dict[str, Any] | None:
    row = session.execute(
        select(Job, User.username)
        .outerjoin(User, User.id == Job.created_by_id)
        .where(Job.id == job_id)
    ).first()
    return job_view(row[0], row[1]) if row is not None else None


def job_kinds(session: Session) -> list[str]:
    """The kinds there are jobs of (the filter's choices)."""
    return sorted(session.scalars(select(Job.kind).distinct()))


def state_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state.value: int(n) for state, n in rows}
