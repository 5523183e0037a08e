"""`skd ratings export` and `skd labels export`: what people said, raw and aggregated."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import fail, schema_ready

ratings_app = typer.Typer(help="Campaign ratings.", no_args_is_help=True)
labels_app = typer.Typer(
    help="Aggregated human labels (what the critic trains on).", no_args_is_help=True
)


def _export_format(fmt: str | None, out: Path) -> str:
    """--format, or guessed from the file name (.jsonl/.ndjson: jsonl; anything else: csv)."""
    from app.annotation.downloads import FORMATS

    if fmt is None:
        fmt = "jsonl" if out.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    if fmt not in FORMATS:
        raise fail(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}", 2)
    return fmt


def _write_export(out: Path, fmt: str, fields: list[str], rows: Iterator[dict]) -> int:
    """Write rows as FORMAT to OUT ('-': stdout); a file appears only once it is complete."""
    from app.annotation.downloads import encode

    count = 0

    def counted() -> Iterator[dict]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    if str(out) == "-":
        for chunk in encode(fmt, fields, counted()):
            sys.stdout.write(chunk)
        return count
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            for chunk in encode(fmt, fields, counted()):
                handle.write(chunk)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return count


@ratings_app.command("export")
def ratings_export(
    campaign_id: int,
    out: Annotated[Path, typer.Option("--out", help="Output file ('-' for stdout).")],
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from --out).")
    ] = None,
) -> None:
    """Every rating of a campaign, gold and excluded annotators included (and flagged)."""
    from app.annotation.rating_rows import RATING_FIELDS, iter_campaign_ratings
    from app.core.db import session_scope
    from app.core.models import Campaign

    fmt = _export_format(format, out)
    schema_ready()
    with session_scope() as session:
        if session.get(Campaign, campaign_id) is None:
            raise fail(f"no campaign {campaign_id}")
        count = _write_export(out, fmt, RATING_FIELDS, iter_campaign_ratings(session, campaign_id))
    typer.echo(f"wrote {count:,} ratings to {out}", err=True)


@labels_app.command("export")
def labels_export(
    out: Annotated[Path, typer.Option("--out", help="Output file ('-' for stdout).")],
    campaign: Annotated[
        int | None, typer.Option("--campaign", help="One campaign's items (default: all).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from --out).")
    ] = None,
) -> None:
    """The majority label of each item (ties and no usable votes: empty), see
    app.annotation.quality."""
    from app.annotation.quality import LABEL_FIELDS, iter_item_labels
    from app.core.db import session_scope
    from app.core.models import Campaign

    fmt = _export_format(format, out)
    schema_ready()
    with session_scope() as session:
        if campaign is not None and session.get(Campaign, campaign) is None:
            raise fail(f"no campaign {campaign}")
        rows = (label.as_dict() for label in iter_item_labels(session, campaign))
        count = _write_export(out, fmt, LABEL_FIELDS, rows)
    typer.echo(f"wrote {count:,} labels to {out}", err=True)


# --- processes ------------------------------------------------------------------------------
