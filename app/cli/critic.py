"""``skd critic …``: train, score, activate (or roll back), list and evaluate critic versions.

Thin doors onto ``app.critic.loop``: the same chain of jobs the web page and beat start.
By default the work runs in this process with a progress bar; ``--background`` queues it
for the Celery workers and follows the job rows instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

critic_app = typer.Typer(help="The critic: train, score, activate, list, evaluate.")


def fail(message: str, code: int = 1) -> typer.Exit:
    from app.cli.common import fail

    return fail(message, code)


def _ready() -> None:
    from app.cli.common import schema_ready

    schema_ready()


def _quiet_models() -> None:
    """Our bar shows the progress; transformers' own loading/saving bars would garble it."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.{digits}f}"


def _run_inline(job_id: int, work: Any, title: str) -> dict[str, Any]:
    from app.cli.console import RichProgress
    from app.core.jobs import run_job

    with RichProgress(title) as bar:
        return run_job(job_id, work, extra=bar)


@critic_app.command("train")
def train(
    base_model: Annotated[
        str | None,
        typer.Option(
            help="Hub name, local folder, or a preset's model name such as all-mpnet-base-v2 "
            "(default: the preset's model, see `skd critic presets`)."
        ),
    ] = None,
    background: Annotated[
        bool, typer.Option(help="Queue the chain for the Celery workers and follow it.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Retrain from the base model on every label, instead of warm-starting from "
            "the active version (forced anyway when the base model or preset changed).",
        ),
    ] = False,
) -> None:
    """Train a new version on the current labels, evaluate it, activate it if the policy
    allows, and score the corpus with it (one chain of jobs). By default it warm-starts from
    the active version's weights (new labels plus a replayed sample of the old ones)."""
    from app.cli.console import out
    from app.core.db import session_scope
    from app.critic import evaluation, loop
    from app.critic.presets import ModelMissing

    _ready()
    _quiet_models()
    try:
        with session_scope(write=True) as session:
            chain = loop.request_training(
                session, reason="skd critic train", base_model=base_model, full=full
            )
            start = loop.describe_start(session, chain.version_id)
    except (loop.TrainingInProgress, ModelMissing) as exc:
        raise fail(str(exc)) from None
    out.print(
        f"critic version {chain.version_id} ({start}): jobs #{chain.train_job_id} (train), "
        f"#{chain.evaluate_job_id} (evaluate), #{chain.score_job_id} (score)"
    )
    if background:
        from app.cli.common import follow
        from app.core.queue import BrokerUnavailable
        from app.critic.queueing import dispatch_training

        try:
            dispatch_training(chain)
        except BrokerUnavailable as exc:
            raise fail(f"{exc}; the training lock is released") from None
        for job_id in (chain.train_job_id, chain.evaluate_job_id, chain.score_job_id):
            result = follow(job_id)
            out.print(result.get("message") or f"job #{job_id} done")
        return
    try:
        trained = _run_inline(chain.train_job_id, loop.run_training, f"train #{chain.version_id}")
    except BaseException as exc:
        with session_scope(write=True) as session:
            loop.release_dead_trainings(session)  # cancels the evaluate and score jobs
        if isinstance(exc, ValueError | KeyboardInterrupt):
            message = str(exc) or "interrupted"
            raise fail(f"training failed: {message}; the active version is unchanged") from None
        raise
    out.print(trained["message"])
    decision = _run_inline(chain.evaluate_job_id, evaluation.run_evaluation, "evaluate")
    out.print(decision["message"])
    result = _score_inline(chain.score_job_id)
    out.print(result["message"])


def _score_inline(job_id: int) -> dict[str, Any]:
    from app.cli.console import RichProgress
    from app.critic import scoring_jobs

    with RichProgress(f"score #{job_id}") as bar:
        try:
            return scoring_jobs.run_scoring_inline(job_id, bar)
        except KeyboardInterrupt:
            scoring_jobs.fail_scoring(
                job_id, "interrupted; `skd critic score` resumes where it stopped"
            )
            raise fail("interrupted; run `skd critic score` to resume", 130) from None


@critic_app.command("score")
def score(
    version: Annotated[
        int | None, typer.Option(help="Version id (default: the active one).")
    ] = None,
    background: Annotated[
        bool, typer.Option(help="Queue the chunks for the Celery workers and follow them.")
    ] = False,
) -> None:
    """Score every triple the version has not scored yet (resumes an interrupted run)."""
    from app.cli.console import out
    from app.core.db import session_scope
    from app.critic import scoring_jobs

    _ready()
    try:
        with session_scope(write=True) as session:
            job = scoring_jobs.request_scoring(session, version)
            job_id = job.id if job else None
    except LookupError as exc:
        raise fail(str(exc)) from None
    if job_id is None:
        raise fail("a score job for this version is already queued or running (skd jobs list)")
    _quiet_models()
    if background:
        from app.cli.common import follow
        from app.core.queue import BrokerUnavailable
        from app.critic.queueing import dispatch_scoring

        try:
            dispatch_scoring(job_id)
        except BrokerUnavailable as exc:
            raise fail(str(exc)) from None
        out.print(follow(job_id).get("message") or "done")
        return
    out.print(_score_inline(job_id)["message"])


@critic_app.command("activate")
def activate_command(version: int) -> None:
    """Make VERSION the active critic (also rolls back to an earlier version)."""
    from app.cli.console import out
    from app.core.db import session_scope
    from app.critic.registry import CriticStateError, activate
    from app.critic.score import unscored_count

    _ready()
    try:
        with session_scope(write=True) as session:
            activate(session, version)
    except (CriticStateError, LookupError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    with session_scope() as session:
        pending = unscored_count(session, version)
    out.print(f"critic version {version} is active")
    if pending:
        out.print(
            f"{pending:,} triples are not scored by it yet: `skd critic score` scores them "
            "now (beat also does it within a few minutes when workers run)"
        )


@critic_app.command("presets")
def list_presets(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The critic presets (SKD_CRITIC_PRESET): each one's model, whether it is installed here,
    how to get it, and which one is in force."""
    from rich.table import Table

    from app.cli.console import out
    from app.core.config import get_settings
    from app.critic.presets import describe

    rows = describe(get_settings())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="critic presets", title_justify="left")
    for column in ("preset", "model", "installed", "recipe", "how to get it"):
        table.add_column(column)
    for row in rows:
        recipe = ", ".join(f"{k} {v}" for k, v in row["training"].items()) or "the defaults"
        table.add_row(
            f"{row['name']}{' (in force)' if row['current'] else ''}",
            row["model"],
            "yes" if row["installed"] else "no",
            recipe,
            "" if row["installed"] else row["how_to_get"],
        )
    out.print(table)


@critic_app.command("list")
def list_versions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every version with its state and held-out metrics."""
    from rich.table import Table
    from sqlalchemy import func, select

    from app.cli.console import out
    from app.core.db import session_scope
    from app.core.models import CriticVersion, Score

    _ready()
    with session_scope() as session:
        versions = session.scalars(select(CriticVersion).order_by(CriticVersion.id)).all()
        scored = dict(
            session.execute(
                select(Score.critic_version_id, func.count()).group_by(Score.critic_version_id)
            ).all()
        )
        rows = [_version_row(v, scored.get(v.id, 0)) for v in versions]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from app.critic.describe import model_display_name

    table = Table(title="critic versions", title_justify="left")
    for column in ("id", "state", "base model", "labels", "ROC-AUC", "AP", "P@R0.8", "calib."):
        table.add_column(
            column, justify="right" if column not in ("state", "base model") else "left"
        )
    table.add_column("scored", justify="right")
    for row in rows:
        calibration = row["calibration_precision"]
        interval = row["calibration_interval"]
        table.add_row(
            str(row["id"]),
            row["state"] + (f" ({row['error'][:40]})" if row["error"] else ""),
            model_display_name(row["base_model"]),
            f"{row['train_labels']}/{row['held_out_labels']}" if row["train_labels"] else "–",
            _fmt(row["roc_auc"]) + _interval(row["intervals"].get("roc_auc")),
            _fmt(row["average_precision"]),
            _fmt(row["precision_at_recall_0.8"]),
            f"{_fmt(calibration)} [{_fmt(interval[0], 2)}, {_fmt(interval[1], 2)}]"
            if interval
            else "–",
            f"{row['scored']:,}",
        )
    out.print(table)


def _interval(pair: list[float] | None) -> str:
    """ " [low, high]" (a 95% interval) after a figure, or nothing when there is none."""
    if not pair or pair[0] is None or pair[1] is None:
        return ""
    return f" [{_fmt(pair[0])}, {_fmt(pair[1])}]"


def _version_row(version: Any, scored: int) -> dict[str, Any]:
    metrics = version.metrics or {}
    snapshot = version.label_snapshot or {}
    at_08 = next(
        (p for p in metrics.get("precision_at_recall", []) if abs(p["target_recall"] - 0.8) < 1e-9),
        None,
    )
    calibration = (metrics.get("calibration") or {}).get("at_threshold") or {}
    return {
        "id": version.id,
        "state": version.state.value,
        "base_model": version.base_model,
        "created_at": version.created_at.isoformat(),
        "train_labels": snapshot.get("train"),
        "held_out_labels": snapshot.get("held_out"),
        "roc_auc": metrics.get("roc_auc"),
        "average_precision": metrics.get("average_precision"),
        "precision_at_recall_0.8": at_08["precision"] if at_08 else None,
        # 95% bootstrap intervals over held-out heads; {} for versions trained before them.
        "intervals": metrics.get("intervals") or {},
        "threshold": version.threshold,
        "calibration_precision": calibration.get("precision"),
        "calibration_interval": (
            [calibration["low"], calibration["high"]]
            if calibration.get("low") is not None
            else None
        ),
        "scored": scored,
        "error": version.error,
    }


@critic_app.command("evaluate")
def evaluate_command(
    file: Annotated[Path, typer.Argument(help="Labelled triples: JSONL with valid, TSV/CSV.")],
    version: Annotated[
        int | None, typer.Option(help="Version id (default: the active one).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="atomic-tsv, comet-tsv, jsonl or csv.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """ROC-AUC, average precision and precision at recall 0.5–0.9 of a version on FILE."""
    from rich.table import Table

    from app.cli.console import RichProgress, out
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.core.models import CriticVersion
    from app.corpus.formats import CorpusFormatError
    from app.corpus.relations import allowed_relations
    from app.critic.evaluate_file import evaluate_file
    from app.critic.registry import active_version

    if not file.is_file():
        raise fail(f"no such file: {file}", 2)
    _ready()
    with session_scope() as session:
        chosen = (
            session.get(CriticVersion, version) if version is not None else active_version(session)
        )
        if chosen is None:
            raise fail(
                f"no critic version {version}" if version is not None else "no active critic"
            )
        if not chosen.path:
            raise fail(f"critic version {chosen.id} is {chosen.state.value}: it has no model")
        version_id, path, hyper = chosen.id, chosen.path, dict(chosen.hyperparameters or {})
    _quiet_models()
    try:
        with RichProgress(f"evaluate version {version_id}") as bar:
            result = evaluate_file(
                file,
                version_id,
                path,
                hyper,
                allowed_relations(get_settings()),
                fmt=format,
                batch_size=get_settings().critic_score_batch_size,
                progress=bar,
            )
    except (CorpusFormatError, ValueError) as exc:
        raise fail(str(exc)) from None
    metrics = result.metrics
    intervals = metrics.get("intervals") or {}
    if as_json:
        print(json.dumps({**result.__dict__, "metrics": metrics}, indent=2))
        return
    out.print(
        f"version {version_id} on {file}: {result.labelled:,} labelled triples "
        f"({metrics['acceptable']:,} acceptable); skipped {result.skipped_unlabelled:,} "
        f"unlabelled and {result.skipped_unfamiliar:,} 'too unfamiliar'"
    )
    out.print(
        f"ROC-AUC {_fmt(metrics['roc_auc'])}{_interval(intervals.get('roc_auc'))} · average "
        f"precision {_fmt(metrics['average_precision'])}"
        f"{_interval(intervals.get('average_precision'))} (95% intervals: "
        f"{intervals.get('groups', 0):,} heads resampled)"
    )
    table = Table(title="precision at recall", title_justify="left")
    for column in ("target recall", "threshold", "precision", "recall", "kept"):
        table.add_column(column, justify="right")
    for point in metrics["precision_at_recall"]:
        table.add_row(
            _fmt(point["target_recall"], 1),
            _fmt(point["threshold"], 4),
            _fmt(point["precision"]),
            _fmt(point["recall"]),
            f"{point['kept_fraction']:.1%}",
        )
    out.print(table)
