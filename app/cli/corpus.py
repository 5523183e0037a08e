"""`skd import` and `skd stats`: files into the corpus, and what the corpus holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import fail, follow, schema_ready


def import_command(
    files: Annotated[
        list[Path], typer.Argument(help="Triple files (.tsv, .jsonl, .csv; .gz ok; .parquet).")
    ],
    source: Annotated[
        str | None, typer.Option(help="Source name for all files (default: each file's name).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="atomic-tsv, comet-tsv, jsonl or csv.")
    ] = None,
    background: Annotated[
        bool, typer.Option(help="Queue the job for a Celery worker and follow its progress.")
    ] = False,
) -> None:
    """Import triples into the corpus: all or nothing, duplicates dropped, a summary at the end."""
    from app.cli.console import RichProgress, import_summary_table, out
    from app.core.jobs import new_job, run_job
    from app.corpus.formats import FORMATS, CorpusFormatError
    from app.corpus.importer import run_import_job
    from app.corpus.sources import source_problem

    if format is not None and format not in FORMATS:
        raise fail(f"--format: {format!r} is not one of {', '.join(FORMATS)}", 2)
    problem = source_problem(source) if source else None
    if problem:
        raise fail(f"--source {source!r}: {problem}", 2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise fail(f"no such file: {', '.join(missing)}", 2)
    schema_ready()
    params = {
        "paths": [str(f.resolve()) for f in files],
        "names": [str(f) for f in files],
        "source": source,
        "format": format,
    }
    job_id = new_job("import", params, message="starting" if not background else "queued")
    if background:
        from app.core import queue
        from app.core.job_control import dispatch

        try:
            dispatch(job_id, queue.IMPORT_CORPUS)
        except queue.BrokerUnavailable as exc:
            raise fail(f"{exc}\nnothing was imported (job #{job_id} failed)") from None
        result = follow(job_id)
    else:
        try:
            with RichProgress(f"import #{job_id}") as bar:
                result = run_job(job_id, run_import_job, extra=bar)
        except CorpusFormatError as exc:
            raise fail(f"{exc}\nnothing was imported (job #{job_id} failed)") from None
        except KeyboardInterrupt:
            raise fail(f"interrupted; nothing was imported (job #{job_id})", 130) from None
    out.print(import_summary_table(result))


def stats_command() -> None:
    """Corpus counts by relation and by source."""
    from rich.table import Table

    from app.cli.console import out
    from app.core.db import session_scope
    from app.corpus.stats import corpus_counts

    schema_ready()
    with session_scope() as session:
        counts = corpus_counts(session)
    table = Table(title=f"{counts['triples']:,} triples", title_justify="left")
    table.add_column("relation")
    table.add_column("triples", justify="right")
    for relation, n in counts["by_relation"].items():
        table.add_row(relation, f"{n:,}")
    out.print(table)
    sources = Table(title="by source", title_justify="left")
    sources.add_column("source")
    sources.add_column("triples", justify="right")
    for source_name, n in counts["by_source"].items():
        sources.add_row(source_name, f"{n:,}")
    out.print(sources)
    out.print(
        f"imported human labels: {counts['imported_labels']:,}; ratings: {counts['ratings']:,}"
    )
