"""``skd student``: train a student on an export, generate with it, evaluate it against the
teacher, and print the evaluation's table.

The same doors as the student page and ``/api/student/...``: requests are checked before any
work (a bad one stops with the field's name), and jobs run in this process with a progress bar,
or on a Celery worker with ``--background``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import fail

student_app = typer.Typer(
    help="The student: train on an export, generate, evaluate against the teacher.",
    no_args_is_help=True,
)

_FLAGS = {
    "export_id": "--export",
    "base_model": "--base",
    "student_model_ids": "--model",
    "max_steps": "--max-steps",
    "batch_size": "--batch-size",
    "learning_rate": "--learning-rate",
    "ratings_per_item": "--ratings-per-item",
    "teacher_sources": "--teacher-source",
    "reference_sources": "--reference-source",
    "num_beams": "--num-beams",
    "top_p": "--top-p",
}


def _errors(exc: Any) -> typer.Exit:
    lines = [
        f"{_FLAGS.get(name, '--' + name.replace('_', '-'))}: {message}"
        for name, message in exc.errors.items()
    ]
    return fail("\n".join(lines), 2)


def _run_or_queue(job_id: int, task_name: str, work: Any, title: str, background: bool) -> dict:
    from app.cli.common import follow
    from app.cli.console import RichProgress
    from app.core.job_control import dispatch
    from app.core.jobs import run_job

    if background:
        from app.core.queue import BrokerUnavailable

        try:
            dispatch(job_id, task_name)
        except BrokerUnavailable as exc:
            raise fail(str(exc)) from None
        return follow(job_id)
    try:
        with RichProgress(title) as bar:
            return run_job(job_id, work, extra=bar)
    except KeyboardInterrupt:
        raise fail(f"interrupted (job #{job_id})", 130) from None
    except Exception as exc:  # noqa: BLE001 - recorded on the job; say it plainly here
        raise fail(f"job #{job_id} failed: {exc}") from None


@student_app.command("train")
def train_command(
    export: Annotated[int, typer.Option("--export", help="The export to train on (its id).")],
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base causal LM: hub name (gpt2-xl) or folder; default SKD_STUDENT_BASE_MODEL, "
            "else the packaged SmolLM2-135M.",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the train split.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per example.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps (a quick look).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    bf16: Annotated[
        bool | None,
        typer.Option("--bf16/--fp32", help="Mixed precision (default: where the hardware has it)."),
    ] = None,
    background: Annotated[
        bool, typer.Option(help="Queue the job for a Celery worker and follow its progress.")
    ] = False,
) -> None:
    """Fine-tune a causal LM on an export's train split; keep the epoch with the best dev loss."""
    from app.cli.common import schema_ready
    from app.cli.console import out
    from app.core import queue
    from app.student.runs import StudentRequestError, run_training_job, start_training

    schema_ready()
    try:
        started = start_training(
            export,
            base,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            max_steps=max_steps,
            seed=seed,
            bf16=bf16,
        )
    except StudentRequestError as exc:
        raise _errors(exc) from None
    result = _run_or_queue(
        started.job_id,
        queue.STUDENT_TRAIN,
        run_training_job,
        f"student #{started.model_id}",
        background,
    )
    out.print(f"student model #{started.model_id}: {result.get('message', 'ready')}")
    for entry in result.get("dev_loss", []):
        out.print(f"  epoch {entry['epoch']:g}  dev loss {entry['loss']:.4f}")
    out.print(f"  folder: {result.get('path')}  ({result.get('wall_seconds', 0):.1f} s)")


@student_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """Student models with their export, base, state and best dev loss."""
    from rich.table import Table

    from app.cli.common import schema_ready
    from app.cli.console import out
    from app.core.db import session_scope
    from app.student.runs import list_models

    schema_ready()
    with session_scope() as session:
        rows = list_models(session, limit)
    table = Table(title="Student models", title_justify="left")
    for column in ("id", "export", "base", "state", "best dev loss", "wall time", "folder"):
        table.add_column(column)
    for row in rows:
        best = row["best_dev_loss"]
        table.add_row(
            str(row["id"]),
            str(row["export_id"]),
            row["base_model"],
            row["state"] + (f" ({row['error']})" if row["error"] else ""),
            f"{best:.4f}" if best is not None else "–",
            f"{row['wall_seconds']:.0f} s" if row["wall_seconds"] else "–",
            row["path"] or "–",
        )
    out.print(table)


@student_app.command("generate")
def generate_command(
    model: Annotated[int, typer.Option("--model", help="The student model's id.")],
    out_file: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    export: Annotated[
        int | None, typer.Option("--export", help="Queries from this export's split.")
    ] = None,
    split: Annotated[str, typer.Option(help="Which split of the export.")] = "test",
    queries: Annotated[
        Path | None,
        typer.Option(help="Queries from a file: JSONL (head, relation) or TSV head<TAB>relation."),
    ] = None,
    decoding: Annotated[str, typer.Option(help="greedy, beam or top-p.")] = "greedy",
    n: Annotated[int, typer.Option("-n", "--n", help="Inferences per query.")] = 1,
    num_beams: Annotated[int, typer.Option(help="Beams (beam search).")] = 5,
    top_p: Annotated[float, typer.Option(help="Nucleus mass (top-p sampling).")] = 0.9,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    batch_size: Annotated[int | None, typer.Option(help="Queries per batch.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most new tokens.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Write the model's inferences for (head, relation) queries as JSONL (query, tail, score)."""
    from app.cli.common import schema_ready
    from app.cli.console import RichProgress
    from app.cli.console import out as stdout
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.student.examples import ExampleFileError, export_queries, read_queries
    from app.student.generate import Decoding, DecodingError, generate_to_file
    from app.student.runs import StudentRequestError, export_folder, ready_model_path

    if (export is None) == (queries is None):
        raise fail("give exactly one of --export ID and --queries FILE", 2)
    settings = get_settings()
    args = Decoding(
        method=decoding,
        n=n,
        num_beams=num_beams,
        top_p=top_p,
        temperature=temperature,
        batch_size=batch_size or settings.student_generate_batch_size,
        max_new_tokens=max_new_tokens or settings.student_max_new_tokens,
        seed=seed,
    )
    problems = args.problems()
    if problems:
        raise _errors(DecodingError(problems))
    schema_ready()
    try:
        with session_scope() as session:
            path = ready_model_path(session, model)
            folder = export_folder(session, export) if export is not None else None
        wanted = export_queries(folder, split)[0] if folder else read_queries(queries)  # type: ignore[arg-type]
    except LookupError as exc:
        raise fail(f"--model: {exc}", 2) from None
    except StudentRequestError as exc:
        raise _errors(exc) from None
    except ExampleFileError as exc:
        raise fail(str(exc), 2) from None
    if limit is not None:
        wanted = wanted[:limit]
    with RichProgress(f"student #{model}") as bar:
        result = generate_to_file(path, wanted, out_file, args, bar, extra={"model": model})
    stdout.print(
        f"{result['inferences']} inferences for {result['queries']} queries -> {result['out']}"
    )


@student_app.command("evaluate")
def evaluate_command(
    export: Annotated[int, typer.Option("--export", help="Test heads from this export.")],
    model: Annotated[
        list[int] | None, typer.Option("--model", help="A student model (repeatable).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The campaign's name.")] = None,
    heads: Annotated[
        int | None, typer.Option(help="Test heads to sample (default 100; 0: all).")
    ] = 100,
    relation: Annotated[
        list[str] | None, typer.Option("--relation", help="Only this relation (repeatable).")
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="Inferences per system and query.")] = 1,
    decoding: Annotated[str, typer.Option(help="greedy, beam or top-p.")] = "greedy",
    teacher: Annotated[
        bool, typer.Option("--teacher/--no-teacher", help="Include the teacher's inferences.")
    ] = True,
    teacher_source: Annotated[
        list[str] | None,
        typer.Option("--teacher-source", help="Corpus source of the teacher (default: all)."),
    ] = None,
    reference_source: Annotated[
        list[str] | None,
        typer.Option("--reference-source", help="Corpus source of human references."),
    ] = None,
    ratings_per_item: Annotated[int, typer.Option(help="Ratings per inference.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the head sample and the order.")] = 0,
    background: Annotated[
        bool, typer.Option(help="Queue the job for a Celery worker and follow its progress.")
    ] = False,
) -> None:
    """Open a blind evaluation campaign: students vs the teacher (and humans) on test heads."""
    from app.cli.common import schema_ready
    from app.cli.console import out
    from app.core import queue
    from app.student.evaluation import (
        EvaluationSpec,
        EvaluationSpecError,
        run_evaluation_job,
        start_evaluation,
    )

    spec = EvaluationSpec(
        name=name or f"student evaluation on export {export}",
        export_id=export,
        student_model_ids=list(model or []),
        heads=heads or None,
        relations=list(relation or []),
        n=n,
        decoding=decoding,
        teacher=teacher,
        teacher_sources=list(teacher_source or []),
        reference_sources=list(reference_source or []),
        ratings_per_item=ratings_per_item,
        seed=seed,
    )
    schema_ready()
    try:
        job_id = start_evaluation(spec)
    except EvaluationSpecError as exc:
        raise _errors(exc) from None
    result = _run_or_queue(
        job_id, queue.STUDENT_EVALUATE, run_evaluation_job, "evaluation", background
    )
    from app.annotation.campaigns import share_url
    from app.core.db import session_scope
    from app.core.models import Campaign

    with session_scope() as session:
        campaign = session.get(Campaign, result["campaign_id"])
        link = share_url(campaign) if campaign else ""
    out.print(result["message"])
    out.print(f"share link: {link}")
    out.print(f"table: skd student table {result['campaign_id']}")


@student_app.command("table")
def table_command(
    campaign: Annotated[int, typer.Argument(help="The evaluation campaign's id.")],
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the CSV here.")] = None,
) -> None:
    """Acceptability per system and relation (95% Wilson), differences with a z-test, length
    and distinct-n: the paper's table, from the campaign's ratings."""
    from rich.table import Table

    from app.cli.common import schema_ready
    from app.cli.console import out
    from app.core.db import session_scope
    from app.student.table import evaluation_table, table_csv

    schema_ready()
    try:
        with session_scope() as session:
            table = evaluation_table(session, campaign)
    except (LookupError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    view = Table(title=f"Evaluation #{campaign}: {table['name']}", title_justify="left")
    columns = ["system", "queries answered", "inferences", "decided", "accepted"]
    for column in [*columns, "acceptability (95% CI)", "words", "distinct-1", "distinct-2"]:
        view.add_column(column)
    for row in table["per_system"]:
        answered = row["queries_answered"]
        view.add_row(
            row["system"],
            "–" if answered is None else f"{answered} of {row['queries']}",
            str(row["inferences"]),
            str(row["decided"]),
            str(row["accepted"]),
            _share(row),
            _num(row["mean_words"], "{:.1f}"),
            _num(row["distinct_1"], "{:.3f}"),
            _num(row["distinct_2"], "{:.3f}"),
        )
    out.print(view)
    diffs = Table(
        title="Differences (Newcombe 95% CI, two-proportion z-test)", title_justify="left"
    )
    for column in ("system", "versus", "difference (95% CI)", "p"):
        diffs.add_column(column)
    for row in table["differences"]:
        text = (
            "–"
            if row["difference"] is None
            else f"{row['difference']:+.3f} ({row['ci_low']:+.3f} to {row['ci_high']:+.3f})"
        )
        diffs.add_row(row["system"], row["versus"], text, _num(row["p_value"], "{:.4f}"))
    out.print(diffs)
    if csv_out is not None:
        csv_out.write_text(table_csv(table), encoding="utf-8")
        out.print(f"CSV -> {csv_out}")


def _share(row: dict[str, Any]) -> str:
    if row["acceptability"] is None:
        return "–"
    return f"{row['acceptability']:.3f} ({row['ci_low']:.3f}–{row['ci_high']:.3f})"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)
