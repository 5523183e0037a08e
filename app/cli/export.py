"""``skd export``: the filtered knowledge graph for student training, from a terminal.

The same door as the page and ``POST /api/exports``: options become an ``ExportParams``,
``app.export.run.start_export`` checks them (bad ones stop here, with the parameter's name,
before any work) and records the export, and the job runs in this process with a progress
bar, or on a Celery worker with ``--background``. ``skd export list`` shows past exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

export_app = typer.Typer(
    help="Export the filtered knowledge graph (TSV, JSONL, Parquet, student format + card).",
    invoke_without_command=True,
)

# CLI option -> ExportParams field, for options that can override a --params file.
_OPTION_FIELDS = {
    "version": "version",
    "threshold": "threshold",
    "target_precision": "target_precision",
    "target_recall": "target_recall",
    "kept_fraction": "kept_fraction",
    "relation": "relations",
    "source": "sources",
    "human_labels": "human_labels",
    "split": "splits",
    "split_by": "split_by",
    "seed": "seed",
    "format": "formats",
}


def fail(message: str, code: int = 1) -> typer.Exit:
    from app.cli.console import console

    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


# Parameter names that differ from the option a person typed.
_OPTION_NAMES = {"relations": "--relation", "sources": "--source", "splits": "--split"}
_OPTION_NAMES |= {"split_by": "--split-by"}
_OPTION_NAMES |= {"formats": "--format", "result": "nothing to export", "parameters": "--params"}


def _param_errors(exc: Any) -> typer.Exit:
    """Each bad parameter on its own line, named as the option a person typed."""
    lines = [
        f"{_OPTION_NAMES.get(name, '--' + name.replace('_', '-'))}: {message}"
        for name, message in exc.errors.items()
    ]
    return fail("\n".join(lines), 2)


@export_app.callback()
def export(
    ctx: typer.Context,
    version: Annotated[
        str | None,
        typer.Option(
            "--version", "--critic-version", help="Critic version id (default: the active one)."
        ),
    ] = None,
    no_critic: Annotated[
        bool,
        typer.Option(
            "--no-critic",
            help="No critic filters the export: every triple in the filters, less what "
            "--human-labels drops (accepted-only: the human-accepted ones alone).",
        ),
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(help="Keep triples scored at least this (0 to 1).")
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(help="Lowest threshold whose held-out precision reaches this."),
    ] = None,
    target_recall: Annotated[
        float | None,
        typer.Option(help="Highest threshold whose held-out recall reaches this (paper: 0.8)."),
    ] = None,
    kept_fraction: Annotated[
        float | None,
        typer.Option(help="Threshold that keeps this fraction of the scored triples asked for."),
    ] = None,
    relation: Annotated[
        list[str] | None, typer.Option("--relation", help="Only this relation (repeatable).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (repeatable).")
    ] = None,
    human_labels: Annotated[
        str | None,
        typer.Option(
            help="override (default: accepted always kept, rejected always dropped), "
            "drop-rejected, ignore, or accepted-only (only human-accepted triples)."
        ),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split", help="NAME=RATIO, repeatable (default train=0.8 val=0.1 test=0.1)."
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            "--split-by",
            help="head (default: split by head in the --split shares) or corpus (keep each "
            "triple's own imported split).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split by head (default 0).")] = None,
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format", help="atomic-tsv, jsonl, parquet, student (repeatable; default: all)."
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option("--params", help="A params.json from an earlier export; options override."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to create (its .tar.gz goes beside it). Default: data dir."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and show what would be kept; write nothing.")
    ] = False,
    background: Annotated[
        bool, typer.Option(help="Queue the job for a Celery worker and follow its progress.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Export even with a critic version no better than chance."),
    ] = False,
) -> None:
    """Export the kept triples, split by head, with a dataset card (README.md)."""
    if ctx.invoked_subcommand is not None:
        return
    from app.cli.common import follow, schema_ready
    from app.cli.console import RichProgress
    from app.cli.console import out as stdout
    from app.core.jobs import run_job
    from app.export.params import ExportParamError, ExportParams
    from app.export.run import preview_export, run_export_job, start_export

    given: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise fail(f"--params: cannot read {params_file}: {exc}", 2) from None
        if not isinstance(loaded, dict):
            raise fail(f"--params: {params_file} does not hold a JSON object", 2)
        given.update(loaded)
    options = locals()
    for option, name in _OPTION_FIELDS.items():
        value = options[option]
        if value is not None and value != []:
            given[name] = value
    if no_critic:
        given["critic"] = "none"
        if version is None:
            given.pop("version", None)  # a --params file's version gives way to --no-critic
    try:
        params = ExportParams.from_dict(given)
    except ExportParamError as exc:
        raise _param_errors(exc) from None
    schema_ready()
    try:
        if dry_run:
            plan = preview_export(params)
            stdout.print(_plan_table(plan.as_dict()))
            return
        if not force and not params.no_critic:
            from app.core.db import session_scope
            from app.critic.estimates import weak_version_error

            with session_scope() as session:
                weak = weak_version_error(session, params.version)
            if weak:
                raise fail(f"{weak}; add --force to export with it anyway", 2)
        started = start_export(params, destination=out)
    except ExportParamError as exc:
        raise _param_errors(exc) from None
    if background:
        from app.core import queue
        from app.core.job_control import dispatch

        try:
            dispatch(started.job_id, queue.EXPORT)
        except queue.BrokerUnavailable as exc:
            raise fail(f"{exc}\nnothing was written (export #{started.export_id})") from None
        result = follow(started.job_id)
    else:
        try:
            with RichProgress(f"export #{started.export_id}") as bar:
                result = run_job(started.job_id, run_export_job, extra=bar)
        except ExportParamError as exc:
            raise _param_errors(exc) from None
        except KeyboardInterrupt:
            raise fail(
                f"interrupted; nothing was written (export #{started.export_id})", 130
            ) from None
    _print_result(started.export_id, result)


def _plan_table(plan: dict[str, Any]) -> Any:
    from rich.table import Table

    counts = plan["counts"]
    estimate = plan["estimate"]
    table = Table(title="What the export would keep", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("")
    if plan["version"] is None:
        table.add_row("critic", "none: no critic filtered this export")
        table.add_row("threshold", f"none ({plan['threshold_reason']})")
        table.add_row("candidates", f"{counts['candidates']:,} (in the filters)")
    else:
        version = plan["version"]
        table.add_row("critic version", f"{version['id']} ({version['state']})")
        table.add_row("threshold", f"{plan['threshold']:.4f}: {plan['threshold_reason']}")
        table.add_row("candidates", f"{counts['candidates']:,} ({counts['scored']:,} scored)")
    table.add_row("kept", f"{counts['kept']:,}")
    table.add_row("kept by human label", f"{counts['kept_by_label']:,}")
    table.add_row("dropped by human label", f"{counts['dropped_by_label']:,}")
    from app.critic.estimates import too_few, too_few_text

    if estimate["precision"] is not None and too_few(estimate["sample"]):
        table.add_row(
            "estimated precision",
            too_few_text(estimate["sample"], estimate["sample_interval"] or estimate["interval"]),
        )
    elif estimate["precision"] is not None:
        low, high = estimate["interval"]
        table.add_row(
            "estimated precision",
            f"{estimate['precision']:.3f} (95% {low:.3f}–{high:.3f}, "
            f"{estimate['sample']:,} calibration labels)",
        )
    else:
        table.add_row("estimated precision", "no calibration labels")
    for warning in plan["warnings"]:
        table.add_row("warning", warning)
    return table


def _print_result(export_id: int, result: dict[str, Any]) -> None:
    from rich.table import Table

    from app.cli.console import out as stdout
    from app.core.db import session_scope
    from app.export.run import get_export

    with session_scope() as session:
        export = get_export(session, export_id)
    assert export is not None
    counts = export["counts"]
    table = Table(title=f"Export #{export_id}", title_justify="left")
    table.add_column("split")
    table.add_column("triples", justify="right")
    table.add_column("heads", justify="right")
    for name, n in counts["by_split"].items():
        table.add_row(name, f"{n:,}", f"{counts['heads'][name]:,}")
    table.add_section()
    table.add_row("total", f"{counts['total']:,}", f"{sum(counts['heads'].values()):,}")
    estimate = export["estimate"] or {}
    from app.critic.estimates import too_few, too_few_text

    if export["threshold"] is None:
        critic = "no critic filtered this export"
    else:
        critic = f"threshold {export['threshold']:.6g}"
    if estimate.get("precision") is not None and too_few(estimate.get("sample")):
        table.caption = f"{critic}; estimated precision: " + too_few_text(
            estimate.get("sample"), estimate.get("sample_interval")
        )
    elif estimate.get("precision") is not None:
        low, high = estimate["interval"]
        table.caption = (
            f"{critic}; estimated precision {estimate['precision']:.3f} (95% {low:.3f}–{high:.3f})"
        )
    else:
        table.caption = f"{critic}; precision not estimated"
    stdout.print(table)
    stdout.print(f"folder   {result['path']}", highlight=False)
    stdout.print(f"archive  {result['archive']}", highlight=False)
    stdout.print(f"sha256   {export['archive_sha256']}", highlight=False)
    for warning in export["warnings"]:
        stdout.print(f"[yellow]warning:[/] {warning}", highlight=False)


@export_app.command("list")
def list_command(limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20) -> None:
    """Past exports with their parameters, counts and where their files are."""
    from rich.table import Table

    from app.cli.common import schema_ready
    from app.cli.console import out as stdout
    from app.core.db import session_scope
    from app.export.run import list_exports

    schema_ready()
    with session_scope() as session:
        rows = list_exports(session, limit)
    table = Table()
    for column in ("id", "made", "state", "version", "threshold", "kept", "precision", "params"):
        table.add_column(column, justify="right" if column in ("kept", "id") else "left")
    for row in rows:
        estimate = row["estimate"] or {}
        precision = estimate.get("precision")
        total = (row["counts"] or {}).get("total")
        params = row["params"]
        filters = []
        if params.get("relations"):
            filters.append("relations " + ",".join(params["relations"]))
        if params.get("sources"):
            filters.append("sources " + ",".join(params["sources"]))
        filters.append(f"labels {params.get('human_labels')}")
        filters.append("splits " + ",".join(f"{k}={v:g}" for k, v in params["splits"].items()))
        filters.append(f"seed {params.get('seed')}")
        table.add_row(
            str(row["id"]),
            row["created_at"][:16].replace("T", " "),
            row["state"],
            "no critic" if row["no_critic"] else str(row["critic_version_id"]),
            f"{row['threshold']:.4f}" if row["threshold"] is not None else "",
            f"{total:,}" if total is not None else "",
            f"{precision:.3f}" if precision is not None else "",
            "; ".join(filters),
        )
    stdout.print(table)


@export_app.command("delete")
def delete_command(
    export_id: Annotated[int, typer.Argument(help="The export's id (see `skd export list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an export: its folder, its .tar.gz and its row (all or nothing)."""
    from app.cli.common import schema_ready
    from app.cli.console import out as stdout
    from app.core.db import session_scope
    from app.export.remove import ExportBusy, delete_export
    from app.export.run import get_export

    schema_ready()
    with session_scope() as session:
        export = get_export(session, export_id)
    if export is None:
        raise fail(f"no export {export_id} (see `skd export list`)")
    where = f" and its files in {export['path']}" if export["path"] else ""
    if not yes and not typer.confirm(f"Delete export {export_id}{where}?"):
        raise typer.Exit(1)
    try:
        deleted = delete_export(export_id)
    except (LookupError, ExportBusy) as exc:
        raise fail(str(exc)) from None
    freed = f"{deleted.freed_bytes / 1e6:,.1f} MB freed" if deleted.removed else "no files left"
    stdout.print(f"deleted export {export_id} ({freed})")
