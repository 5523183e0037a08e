"""Student trainings as jobs: the one code path behind the page, ``POST /api/student/runs``
and ``skd student train``.

``start_training`` checks the request (the export exists and has a train split in the student
format, the arguments are usable) and records a ``student_models`` row and its queued job;
nothing is recorded for a bad request. ``run_training_job`` is the job's work, in a worker or
in the CLI's own process: it trains into a hidden folder, writes the model card, renames the
folder into place and marks the model ``ready``. A base model that cannot load, or any other
failure, fails the job with the reason and the model row with it; a cancelled job stops at its
next progress report and leaves no folder behind.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import queue
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.job_control import register_kind
from app.core.jobs import Progress, create_job
from app.core.models import Export, Job, JobState, StudentModel, StudentState, utcnow
from app.student.base import default_base
from app.student.examples import split_file
from app.student.train import StudentTrainingArgs, train_student

JOB_KIND = "student_train"


class StudentRequestError(ValueError):
    """A training request that cannot run; ``errors`` maps each field to its problem."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


@dataclass
class TrainingStart:
    model_id: int
    job_id: int
    path: Path


def export_folder(session: Session, export_id: int) -> Path:
    """The folder of a finished export; StudentRequestError naming ``export_id`` otherwise."""
    export = session.get(Export, export_id)
    if export is None:
        raise StudentRequestError({"export_id": f"there is no export {export_id}"})
    if not export.path or not Path(export.path).is_dir():
        raise StudentRequestError(
            {"export_id": f"export {export_id} has no files (still running, failed or deleted)"}
        )
    return Path(export.path)


def start_training(
    export_id: int,
    base_model: str | None = None,
    *,
    user_id: int | None = None,
    **overrides: Any,
) -> TrainingStart:
    """Check the request, then record the model row and its queued job (one transaction)."""
    settings = get_settings()
    settings.ensure_dirs()
    base = default_base(base_model or settings.student_base_model)
    with session_scope(write=True) as session:
        folder = export_folder(session, export_id)
        if not split_file(folder, "train").is_file():
            raise StudentRequestError(
                {
                    "export_id": f"export {export_id} has no student/train.jsonl: export it "
                    "with the student format and a train split"
                }
            )
        model = StudentModel(export_id=export_id, base_model=base, created_by_id=user_id)
        session.add(model)
        session.flush()
        path = student_dir(settings, model.id)
        args = StudentTrainingArgs.from_settings(path, base, **overrides)
        errors = args.problems()
        if errors:
            raise StudentRequestError(errors)
        model.args = args.as_dict()
        job = create_job(
            session,
            JOB_KIND,
            {"student_model_id": model.id, "export_id": export_id},
            created_by_id=user_id,
        )
        model.job_id = job.id
        return TrainingStart(model.id, job.id, path)


def queue_training(export_id: int, base_model: str | None = None, **kwargs: Any) -> TrainingStart:
    """``start_training`` and hand the job to a worker (the page, the API, ``--background``)."""
    from app.core.job_control import dispatch

    started = start_training(export_id, base_model, **kwargs)
    dispatch(started.job_id, queue.STUDENT_TRAIN)
    return started


def student_dir(settings: Settings, model_id: int) -> Path:
    """Where a student's model goes: under this process's data dir (not the folder recorded
    when the training was asked for: the data dir may have moved before a retry)."""
    return settings.data_dir.resolve() / "models" / f"student-{model_id}"


def run_training_job(job_params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The job: train the model named in the params; record the outcome on its row."""
    model_id = int(job_params["student_model_id"])
    try:
        folder, export_info, args_dict = _begin(model_id)
    except BaseException as exc:
        _record_failure(model_id, exc)
        raise
    output_dir = student_dir(get_settings(), model_id)
    args = StudentTrainingArgs(**{**args_dict, "output_dir": output_dir})
    final = args.output_dir
    hidden = final.with_name(f".{final.name}.partial")
    shutil.rmtree(hidden, ignore_errors=True)
    args.output_dir = hidden
    try:
        figures = train_student(
            args, split_file(folder, "train"), split_file(folder, "val"), progress
        )
        card = model_card(model_id, export_info, args_dict, figures)
        (hidden / "README.md").write_text(card, encoding="utf-8")
        (hidden / "training.json").write_text(
            json.dumps({"export": export_info, "args": args_dict, "metrics": figures}, indent=2),
            encoding="utf-8",
        )
        if final.exists():
            shutil.rmtree(final)
        hidden.rename(final)
    except BaseException as exc:
        shutil.rmtree(hidden, ignore_errors=True)
        _record_failure(model_id, exc)
        raise
    with session_scope(write=True) as session:
        model = session.get(StudentModel, model_id)
        assert model is not None
        model.state = StudentState.ready
        model.path = str(final)
        model.metrics = figures
        model.wall_seconds = figures["wall_seconds"]
        model.finished_at = utcnow()
    best = figures["best"]
    message = f"student #{model_id} ready"
    if best:
        message += f": best dev loss {best['loss']:.4f} (epoch {best['epoch']:g})"
    return {
        "student_model_id": model_id,
        "path": str(final),
        "dev_loss": figures["dev_loss"],
        "wall_seconds": figures["wall_seconds"],
        "message": message,
    }


def _begin(model_id: int) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Mark the model training; its export's folder and facts, and its arguments."""
    with session_scope(write=True) as session:
        model = session.get(StudentModel, model_id)
        if model is None:
            raise LookupError(f"student model {model_id} does not exist")
        export_id = model.export_id
        if export_id is None:
            raise ValueError(f"student model {model_id}: its export was deleted")
        folder = export_folder(session, export_id)
        export = session.get(Export, export_id)
        assert export is not None
        export_info = {
            "id": export.id,
            "critic_version_id": export.critic_version_id,
            "threshold": export.threshold,
            "params": export.params,
            "counts": export.counts,
            "path": export.path,
        }
        model.state = StudentState.training
        model.error = None
        return folder, export_info, dict(model.args)


def _record_failure(model_id: int, exc: BaseException) -> None:
    from app.core.jobs import JobCancelled

    cancelled = isinstance(exc, JobCancelled)
    with session_scope(write=True) as session:
        model = session.get(StudentModel, model_id)
        if model is not None:
            model.state = StudentState.cancelled if cancelled else StudentState.failed
            model.error = "cancelled" if cancelled else (str(exc) or type(exc).__name__)
            model.finished_at = utcnow()


def model_card(
    model_id: int, export: dict[str, Any], args: dict[str, Any], figures: dict[str, Any]
) -> str:
    """The README of a student folder: how it was made, from what, and how well it fit."""
    base = args["base_model"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [symbolic-knowledge-distillation, commonsense, skd-studio]",
        "---",
        "",
        f"# SKD student #{model_id}",
        "",
        "A causal language model fine-tuned on a filtered commonsense knowledge graph exported "
        "by SKD Studio (Symbolic Knowledge Distillation, West et al. 2022). It reads "
        "`<head> {event} </head> <relation> {relation} </relation> [GEN]` and writes the "
        "inference after one space; cut the output at the first newline or end of sentence.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(FOLDER)",
        "tokenizer = AutoTokenizer.from_pretrained(FOLDER)",
        "```",
        "",
        "## Training data",
        "",
        f"- export #{export['id']}, "
        + (
            f"critic version {export['critic_version_id']}, threshold "
            + (f"{export['threshold']:.4f}" if export["threshold"] is not None else "none")
            if export["critic_version_id"] is not None
            else "no critic (every triple in its filters, less what the human-label rule drops)"
        ),
        f"- export parameters: `{json.dumps(export['params'], sort_keys=True)}`",
        f"- examples: {figures['train_examples']} train, {figures['val_examples']} val "
        f"({figures['skipped_examples']} skipped: no tail token within max_length)",
        "",
        "## Base model and arguments",
        "",
        f"- base model: `{base}` ({figures['parameters']:,} parameters)",
        f"- bf16 mixed precision: {'yes' if figures['bf16'] else 'no'}; "
        f"device: {figures['device']}",
        "- loss on the tail tokens only (the prompt is labelled -100); the epoch with the lowest "
        "dev loss is kept",
        "",
        "| argument | value |",
        "|---|---|",
    ]
    # None is a setting left to its default (bf16: on where the device supports it).
    lines += [
        f"| {k} | {'default' if v is None else v} |"
        for k, v in sorted(args.items())
        if k != "output_dir"
    ]
    lines += ["", "## Dev loss", "", "| epoch | step | dev loss |", "|---|---|---|"]
    best = figures.get("best")
    for entry in figures["dev_loss"]:
        mark = " (kept)" if best and entry["step"] == best["step"] else ""
        lines.append(f"| {entry['epoch']:g} | {entry['step']} | {entry['loss']:.4f}{mark} |")
    if not figures["dev_loss"]:
        lines.append("| – | – | no val split |")
    lines += [
        "",
        "## Cost",
        "",
        f"- training loss (mean over steps): {figures['train_loss']:.4f}; "
        f"steps: {figures['steps']}",
        f"- wall time: {figures['wall_seconds']:.1f} s "
        f"(trainer: {figures['train_runtime_s']:.1f} s)",
        f"- made: {utcnow().astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
    ]
    return "\n".join(lines)


def model_as_dict(model: StudentModel, job: Job | None = None) -> dict[str, Any]:
    metrics = model.metrics or {}
    best = metrics.get("best")
    return {
        "id": model.id,
        "export_id": model.export_id,
        "base_model": model.base_model,
        "state": model.state.value,
        "path": model.path,
        "args": model.args,
        "dev_loss": metrics.get("dev_loss", []),
        "best_dev_loss": best["loss"] if best else None,
        "wall_seconds": model.wall_seconds,
        "error": model.error,
        "job_id": model.job_id,
        "job_state": job.state.value if job else None,
        "created_at": model.created_at.isoformat(),
        "finished_at": model.finished_at.isoformat() if model.finished_at else None,
    }


def list_models(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.execute(
        select(StudentModel, Job)
        .outerjoin(Job, Job.id == StudentModel.job_id)
        .order_by(StudentModel.id.desc())
        .limit(limit)
    ).all()
    return [model_as_dict(model, job) for model, job in rows]


def get_model(session: Session, model_id: int) -> StudentModel:
    model = session.get(StudentModel, model_id)
    if model is None:
        raise LookupError(f"there is no student model {model_id}")
    return model


def ready_model_path(session: Session, model_id: int) -> Path:
    """The folder of a trained model; a clear error for any other state."""
    model = get_model(session, model_id)
    if model.state != StudentState.ready or not model.path or not Path(model.path).is_dir():
        raise StudentRequestError(
            {"model": f"student model {model_id} is {model.state.value}, not ready to generate"}
        )
    return Path(model.path)


# --- what a student job holds when it ends elsewhere (cancel, the stale sweep) ----------------


def _release(session: Session, ended: list[Job]) -> None:
    """A training job ended from outside (cancelled, swept): its model row ends with it."""
    for job in ended:
        model = session.scalar(select(StudentModel).where(StudentModel.job_id == job.id))
        if model is not None and model.state in (StudentState.queued, StudentState.training):
            cancelled = job.state == JobState.cancelled
            model.state = StudentState.cancelled if cancelled else StudentState.failed
            model.error = job.error or job.message
            model.finished_at = utcnow()


def _retry(job_id: int) -> int:
    """A failed or cancelled training runs again as a new model with the same arguments."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        model = session.get(StudentModel, int(job.params["student_model_id"]))
        if model is None or model.export_id is None:
            raise StudentRequestError({"model": "the model or its export is gone"})
        export_id, base = model.export_id, model.base_model
        names = set(StudentTrainingArgs.__dataclass_fields__) - {"output_dir", "base_model"}
        overrides = {k: model.args.get(k) for k in names}
    return queue_training(export_id, base, **overrides).job_id


register_kind(JOB_KIND, release=_release, retry=_retry)
